"""Safe writing: every output goes to a temporary name in its folder and is
renamed into place only when complete, so a failed run never leaves a
half-written file and never destroys the previous good one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    ``suffix`` defaults to the target's own suffix (some writers, Keras among
    them, insist on a particular extension).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():  # mkstemp creates 0600; give the file the mode a plain open() would
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet(df: pd.DataFrame | pa.Table, path: str | Path, **kwargs) -> Path:
    """Write a DataFrame or Arrow table to parquet atomically (zstd). Returns the path."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=kwargs.pop("compression", "zstd"), **kwargs)
    return Path(path)


def write_csv(df: pd.DataFrame, path: str | Path, **kwargs) -> Path:
    """Write a DataFrame to CSV atomically (no index). Returns the path."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, **kwargs)
    return Path(path)


def write_json(obj, path: str | Path) -> Path:
    """Write JSON (indented, keys sorted) atomically. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return Path(path)


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def _json_default(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, (pd.Timestamp,)):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def require_file(path: str | Path, made_by: str | None = None) -> Path:
    """Return ``path`` if it exists, else FileNotFoundError naming it and the notebook that makes it."""
    path = Path(path)
    if not path.exists():
        hint = f" (written by {made_by}; run it first)" if made_by else ""
        raise FileNotFoundError(f"{path} not found{hint}")
    return path
