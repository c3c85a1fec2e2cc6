"""The one column check for tables handed between modules.

Every module that needs some columns of a table calls :func:`require_columns`,
so a missing column is always the same exception, :class:`MissingColumnError`,
with the same message: the table, the missing columns and the columns it has.
(Reading a file checks its header with :func:`hm_utils.data.csv_columns.require_header`,
which also names the file and suggests a rename for a same-name-other-case column.)
"""
from __future__ import annotations

from typing import Iterable

__all__ = ["MissingColumnError", "require_columns"]


class MissingColumnError(KeyError, ValueError):
    """A table lacks a column the caller needs.

    Both a ``KeyError`` (a column is looked up by name, as pandas raises) and a
    ``ValueError`` (the argument has the wrong content), so code written against
    either keeps working; its text is the plain message (``KeyError`` alone would
    print it quoted).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def require_columns(df, columns: Iterable[str], what: str) -> None:
    """Raise :class:`MissingColumnError` when ``df`` lacks any of ``columns``; return None otherwise.

    ``df``: anything with a ``columns`` attribute (pandas or polars DataFrame) or an
    iterable of column names (a polars schema, a list). ``what`` names the table in the
    message, e.g. ``"transactions"``. Message: ``"<what> is missing column(s) ['a', 'b'];
    has ['x', 'y']"`` (missing columns in the order asked for).
    """
    have = list(df.columns) if hasattr(df, "columns") else list(df)
    present = set(have)
    missing = [c for c in columns if c not in present]
    if missing:
        raise MissingColumnError(f"{what} is missing column(s) {missing}; has {have}")
