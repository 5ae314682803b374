"""Reading user files for the command line: one place for the checks every command needs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from anning_lib.errors import AnningError


def read_csv_text(path: Path, option: str, error: type[AnningError]) -> pd.DataFrame:
    """Every cell of a CSV as text (empty cells stay empty strings; parsing is the caller's, which names the
    column and line of a bad value); ``error(option: ...)`` when the file is missing or cannot be read."""
    if not path.is_file():
        raise error(f"{option}: file not found: {path}")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as err:
        raise error(f"{option}: cannot read {path}: {err}") from None
