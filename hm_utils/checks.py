"""The one column check for tables handed between modules.

Every module that needs some columns of a table calls :func:`require_columns`,
so a missing column is always the same exception (``ValueError``) with the same
message: the table, the missing columns and the columns it has. (Reading a file
checks its header with :func:`hm_utils.csv_inputs.require_header`, which also
names the file and suggests a rename for a same-name-other-case column.)
"""
from __future__ import annotations

from typing import Iterable

__all__ = ["require_columns"]


def require_columns(df, columns: Iterable[str], what: str) -> None:
    """Raise ``ValueError`` when ``df`` lacks any of ``columns``; return None otherwise.

    ``df``: anything with a ``columns`` attribute (pandas or polars DataFrame) or an
    iterable of column names (a polars schema, a list). ``what`` names the table in the
    message, e.g. ``"transactions"``. Message: ``"<what> is missing column(s) ['a', 'b'];
    has ['x', 'y']"`` (missing columns in the order asked for).
    """
    have = list(df.columns) if hasattr(df, "columns") else list(df)
    present = set(have)
    missing = [c for c in columns if c not in present]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; has {have}")
