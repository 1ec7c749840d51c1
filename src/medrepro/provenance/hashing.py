"""File digests, computed once per file version within a process.

Checksum verification, checkpoint identity and provenance records all hash the
same files; a job that verifies a dataset and then records it as its input
would otherwise read every file twice. The memo is keyed by the resolved path
with its size and modification time, so a rewritten file is hashed again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1 << 20
_memo: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    resolved = os.path.realpath(path)
    stat = os.stat(resolved)
    key = (resolved, stat.st_size, stat.st_mtime_ns)
    if key not in _memo:
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            for block in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(block)
        _memo[key] = digest.hexdigest()
    return _memo[key]
