"""The original DDSM for the kernel's sourcing: what to download, from where, where it goes, and a download.

The DDSM (University of South Florida; public, no login) is published as case folders
``cases/<normals|benigns|cancers|benign_without_callbacks>/<volume>/case<NNNN>/`` on the university's FTP
server, each with its ``.ics`` header, four ``.LJPEG`` images and an ``.OVERLAY`` per view with findings
(:mod:`.readers.ddsm`). No checksums are published: a download or a user's copy is pinned at first use
(:mod:`medrepro.provenance.pinning`), and every later run stops on any change. :func:`check_layout` says which
case folder or file is missing. Registered as ``DDSM``.
"""

from __future__ import annotations

import ftplib
import logging
from pathlib import Path
from urllib.parse import urlparse

from medrepro.data import sourcing
from medrepro.data.sourcing import Dataset, Source, instructions, register
from medrepro.errors import DataError
from medrepro.studies.mammo_tissue.readers import ddsm

log = logging.getLogger(__name__)

NAME = "DDSM"
SITE = "http://www.eng.usf.edu/cvprg/mammography/database.html"
FTP_CASES = "ftp://figment.csee.usf.edu/pub/DDSM/cases"
ACCESS = "public, no login (University of South Florida); cite Heath et al. 2001"

SOURCES = (Source(
    what="DDSM case folders (normals, benigns, cancers, benign_without_callbacks; about 2,620 cases)",
    urls=(SITE, FTP_CASES),
    access=ACCESS,
    automatic=True,
    put_under=".",
    expect="cases/<normals|benigns|cancers|benign_without_callbacks>/<volume>/case<NNNN>/ with the case's "
           "<letter>-<NNNN>-1.ics, its four <letter>_<NNNN>_1.<VIEW>.LJPEG and an .OVERLAY per view with findings",
),)


def check_layout(raw_root: str | Path) -> dict:
    """Every case folder complete (its header, each view's image, each announced overlay); counts."""
    raw_root = Path(raw_root)
    if not (raw_root / "cases").is_dir():
        raise DataError(raw_root / "cases", "DDSM case folders not found. " + instructions(NAME, raw_root))
    folders = ddsm.case_folders(raw_root)
    if not folders:
        raise DataError(raw_root / "cases", "holds no case folder (cases/<type>/<volume>/case<NNNN>/). "
                        + instructions(NAME, raw_root))
    views = [view for folder in folders for view in ddsm.read_case(folder)]
    return {"cases": len(folders), "images": len(views), "overlays": sum(v.overlay is not None for v in views)}


def _listing(ftp: ftplib.FTP, path: str) -> list[str]:
    return sorted(name.rsplit("/", 1)[-1] for name in ftp.nlst(path))


def download(raw_root: str | Path, case_types: tuple[str, ...] = ddsm.CASE_TYPES) -> Path:
    """Every case folder of ``case_types`` from the DDSM's FTP server into ``raw_root`` (the download step writes
    through a temporary folder, so a broken download leaves nothing); each file's sha256 becomes part of the pin
    when the obtain step first verifies the copy."""
    raw_root = Path(raw_root)
    url = urlparse(FTP_CASES)
    try:
        ftp = ftplib.FTP(url.hostname, timeout=120)
        ftp.login()
    except (OSError, ftplib.Error) as exc:
        raise DataError(FTP_CASES, f"cannot reach the DDSM's FTP server: {exc}. " + instructions(NAME, raw_root)) \
            from exc
    with ftp:
        for case_type in case_types:
            for volume in _listing(ftp, f"{url.path}/{case_type}"):
                for case in _listing(ftp, f"{url.path}/{case_type}/{volume}"):
                    folder = f"{case_type}/{volume}/{case}"
                    for name in _listing(ftp, f"{url.path}/{folder}"):
                        sourcing.download(f"{FTP_CASES}/{folder}/{name}", raw_root / "cases" / folder / name)
                    log.info("downloaded %s", folder)
    return raw_root


register(Dataset(name=NAME, sources=SOURCES, check_layout=check_layout, download=download))
