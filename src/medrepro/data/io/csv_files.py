"""Reading a CSV file that a rule wrote: a missing or unreadable file is one ``DataError`` naming it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medrepro.errors import DataError


def read_csv_file(path: str | Path, missing: str, **read_csv_options) -> pd.DataFrame:
    """``pd.read_csv(path, **read_csv_options)``; ``missing`` says what to do when the file is not there."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, missing)
    try:
        return pd.read_csv(path, **read_csv_options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot be read as CSV ({error})") from error
