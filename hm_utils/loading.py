"""Loading the competition files and converting them to compact parquet.

Inputs are the competition's own files (``articles.csv``, ``customers.csv``,
``transactions_train.csv``, ``images/0XX/0XXXXXXXXX.jpg``); a parquet copy of a
table (``articles.parquet`` ...) beside the CSV is read instead when present.
Outputs, written by :func:`prepare_data` into the work directory:

=====================  =====================================================
``articles.parquet``   the 25 article columns; ids and codes int32
``customers.parquet``  ``customer_key`` int32 (file order) + the 7 columns
``transactions.parquet`` ``t_dat`` date32, ``customer_key`` int32,
                       ``article_id`` int32, ``price`` float32,
                       ``sales_channel_id`` int8 (null when the source has none)
``images.parquet``     ``article_id`` int32, ``path`` (relative), ``has_image``
``data_source.json``   where the data came from
=====================  =====================================================

Ids stay exact: ``article_id`` is read as a number whether written
``0108775015`` or ``108775015`` and written back zero-padded to 10 digits by
:func:`hm_utils.config.format_article_id`; ``customer_id`` stays the 64-hex
string in ``customers.parquet`` and is replaced by the int32 ``customer_key``
in the transactions (31.8 million rows of 64-byte strings would need about
2 GB; the key needs 127 MB).

Bad input: a missing file is a ``FileNotFoundError`` naming the file and the
expected layout; a missing column is a ``ValueError`` naming the column and the
file; a malformed CSV line is a ``ValueError`` with its line number.
Transactions naming an article missing from ``articles.csv`` or a customer
missing from ``customers.csv`` are **dropped with a warning giving the count**
(nothing downstream can describe, embed or submit for them).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from . import config as C
from .storage import read_json, require_file, write_json, write_parquet

# ------------------------------------------------------------------ schemas --
ARTICLE_STRING_COLUMNS = [c for c in C.ARTICLE_COLUMNS if c not in C.ARTICLE_INT_COLUMNS + [C.ARTICLE_ID]]
ARTICLE_TYPES = {C.ARTICLE_ID: pa.int32(), **{c: pa.int32() for c in C.ARTICLE_INT_COLUMNS},
                 **{c: pa.string() for c in ARTICLE_STRING_COLUMNS}}
CUSTOMER_TYPES = {
    C.CUSTOMER_ID: pa.string(), "FN": pa.float32(), "Active": pa.float32(),
    "club_member_status": pa.string(), "fashion_news_frequency": pa.string(),
    "age": pa.float32(), "postal_code": pa.string(),
}
TRANSACTION_CSV_TYPES = {
    C.T_DAT: pa.date32(), C.CUSTOMER_ID: pa.string(), C.ARTICLE_ID: pa.int32(),
    C.PRICE: pa.float32(), C.SALES_CHANNEL_ID: pa.int8(),
}
TRANSACTIONS_SCHEMA = pa.schema([
    (C.T_DAT, pa.date32()), (C.CUSTOMER_KEY, pa.int32()), (C.ARTICLE_ID, pa.int32()),
    (C.PRICE, pa.float32()), (C.SALES_CHANNEL_ID, pa.int8()),
])
LAYOUT_HINT = (f"expected the competition layout: {', '.join(C.COMPETITION_FILES)} "
               f"and {C.IMAGES_DIR}/0XX/0XXXXXXXXX.jpg")


class DataWarning(UserWarning):
    """Input data had something wrong that the loader handled (and says how)."""


# ------------------------------------------------------------- raw readers --
def _source_file(data_dir: Path | str, csv_name: str) -> Path:
    """The parquet copy of ``csv_name`` when present, else the CSV; error naming it when neither exists."""
    data_dir = Path(data_dir)
    pq_path = data_dir / csv_name.replace(".csv", ".parquet")
    if pq_path.is_file():
        return pq_path
    path = data_dir / csv_name
    if not path.is_file():
        raise FileNotFoundError(f"{csv_name} not found in {data_dir}; {LAYOUT_HINT}")
    return path


def _csv_header(path: Path) -> list[str]:
    with open(path, "r", encoding="utf-8", newline="") as fh:
        first = fh.readline().rstrip("\r\n")
    if not first:
        raise ValueError(f"{path} is empty (no header line)")
    return [h.strip().strip('"') for h in first.split(",")]


def _check_columns(path: Path, present: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in present]
    if missing:
        raise ValueError(f"{path.name} ({path}) is missing required column(s) {', '.join(missing)}; "
                         f"found {', '.join(present)}")


def _line_of(path: Path, text: str) -> int | None:
    """1-based line number of the first line of ``path`` containing ``text`` (slow path, errors only)."""
    with open(path, "r", encoding="utf-8", errors="replace") as fh:
        for i, line in enumerate(fh, 1):
            if text in line:
                return i
    return None


def _convert_options(column_types: dict, include: list[str]) -> pacsv.ConvertOptions:
    """Explicit types for the ``include`` columns; empty unquoted fields read as null."""
    return pacsv.ConvertOptions(column_types={k: v for k, v in column_types.items() if k in include},
                                include_columns=include, strings_can_be_null=True, quoted_strings_can_be_null=False)


def _read_csv_stream(path: Path, column_types: dict, include: list[str], block_size: int = 64 << 20):
    """Yield record batches of a CSV with explicit types; ValueError with the line number of a malformed line."""
    bad: list = []

    def on_invalid(row):
        bad.append(row)
        return "error"

    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block_size),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid, newlines_in_values=True),
            convert_options=_convert_options(column_types, include),
        )
        for batch in reader:
            yield batch
    except pa.ArrowInvalid as exc:
        if bad:
            row = bad[0]
            line = row.number or _line_of(path, row.text)
            raise ValueError(f"{path.name}: malformed line {line}: expected {row.expected_columns} fields, "
                             f"got {row.actual_columns}: {row.text[:120]!r}") from None
        msg = str(exc)
        detail = ""
        if "invalid value '" in msg:
            value = msg.split("invalid value '", 1)[1].split("'", 1)[0]
            line = _line_of(path, value)
            detail = f" (first at line {line})" if line else ""
        raise ValueError(f"{path.name}: cannot read the file: {msg}{detail}") from None


def _read_csv_whole(path: Path, column_types: dict, include: list[str]) -> pa.Table:
    """Multi-threaded read of a whole CSV with explicit types; errors as in :func:`_read_csv_stream`."""
    try:
        return pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(block_size=64 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=_convert_options(column_types, include))
    except pa.ArrowInvalid:
        # re-read single-threaded to name the line (slow path, errors only)
        for _ in _read_csv_stream(path, column_types, include):
            pass
        raise


def _read_table(path: Path, column_types: dict, required: list[str], optional: list[str] = ()) -> pa.Table:
    """Read a CSV (or parquet copy) with explicit types, keeping required + present optional columns."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        present = table.column_names
        _check_columns(path, present, required)
        keep = [c for c in list(required) + list(optional) if c in present]
        table = table.select(keep)
        cols = []
        for name in keep:
            col = table.column(name)
            target = column_types[name]
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                if pa.types.is_integer(target):
                    col = pc.cast(col, pa.int64())
                elif pa.types.is_date(target):
                    col = pc.cast(pc.strptime(col, format="%Y-%m-%d", unit="s"), pa.date32())
            if pa.types.is_timestamp(col.type) and pa.types.is_date(target):
                col = pc.cast(col, pa.date32())
            cols.append(pc.cast(col, target))
        return pa.table(dict(zip(keep, cols)))
    present = _csv_header(path)
    _check_columns(path, present, required)
    keep = [c for c in present if c in set(required) | set(optional)]
    batches = list(_read_csv_stream(path, column_types, keep))
    schema = pa.schema([(c, column_types[c]) for c in keep])
    return pa.Table.from_batches(batches, schema=schema) if batches else schema.empty_table()


def read_articles_csv(data_dir: Path | str) -> pd.DataFrame:
    """``articles.csv`` -> DataFrame of the 25 columns (ids and codes int32, names str).

    ``index_code`` (a letter) stays a string. Duplicate article ids are an error.
    """
    path = _source_file(data_dir, C.ARTICLES_CSV)
    table = _read_table(path, ARTICLE_TYPES, C.ARTICLE_COLUMNS)
    df = table.select(C.ARTICLE_COLUMNS).to_pandas()
    dup = df[C.ARTICLE_ID].duplicated()
    if dup.any():
        raise ValueError(f"{path.name}: article_id {C.format_article_id(df.loc[dup, C.ARTICLE_ID].iloc[0])} "
                         f"appears more than once ({int(dup.sum())} duplicates)")
    return df


def read_customers_csv(data_dir: Path | str) -> pd.DataFrame:
    """``customers.csv`` -> DataFrame with ``customer_key`` int32 (0..n-1 in file order) first.

    Duplicate customer ids are dropped (first kept) with a warning.
    """
    path = _source_file(data_dir, C.CUSTOMERS_CSV)
    table = _read_table(path, CUSTOMER_TYPES, C.CUSTOMER_COLUMNS)
    df = table.select(C.CUSTOMER_COLUMNS).to_pandas()
    dup = df[C.CUSTOMER_ID].duplicated()
    if dup.any():
        warnings.warn(f"{path.name}: {int(dup.sum())} duplicate customer_id rows dropped (first kept)", DataWarning,
                      stacklevel=2)
        df = df[~dup].reset_index(drop=True)
    df.insert(0, C.CUSTOMER_KEY, np.arange(len(df), dtype=np.int32))
    return df


_HEX_NIBBLE = np.full(256, 255, dtype=np.uint8)
_HEX_NIBBLE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)
_HEX_NIBBLE[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16, dtype=np.uint8)


def _fixed_width_bytes(arr: pa.Array, width: int) -> np.ndarray | None:
    """The strings of ``arr`` as a uint8 matrix [n, width] (zero copy) when every one is exactly
    ``width`` bytes and none is null; else None."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if arr.null_count or not pa.types.is_string(arr.type):
        return None
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
    if n == 0 or not np.all(np.diff(offsets) == width):
        return None
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    return data[offsets[0]:offsets[0] + n * width].reshape(n, width)


def _hex_prefix64(rows: np.ndarray) -> np.ndarray | None:
    """First 16 hex digits of each row of a uint8 matrix as uint64; None if any is not hex."""
    nib = _HEX_NIBBLE[rows[:, :16]]
    if (nib == 255).any():
        return None
    out = np.zeros(len(rows), dtype=np.uint64)
    for j in range(16):
        out = (out << np.uint64(4)) | nib[:, j].astype(np.uint64)
    return out


class CustomerLookup:
    """Maps ``customer_id`` strings to ``customer_key`` (int32, null when unknown).

    Built once from ``customers``. Competition ids are 64 hex digits: their first
    16 digits (a uint64) are looked up in a hash index built once, and the match
    is confirmed on all 64 bytes; per 64 MB block that is ~10x faster than a hash
    set rebuilt by ``pyarrow.compute.index_in`` for every block. Any other id
    format falls back to ``index_in``.
    """

    def __init__(self, customers: pd.DataFrame):
        self.ids = pa.array(customers[C.CUSTOMER_ID].astype(str).to_numpy(), type=pa.string())
        self.keys = customers[C.CUSTOMER_KEY].to_numpy(np.int32)
        self._rows = _fixed_width_bytes(self.ids, 64)
        prefix = _hex_prefix64(self._rows) if self._rows is not None else None
        self._fast = prefix is not None and len(np.unique(prefix)) == len(prefix)
        if self._fast:
            self._index = pd.Index(prefix)  # its hash table is built on first use and kept
            self._words = np.ascontiguousarray(self._rows).view(np.uint64)  # [n, 8]

    def __call__(self, values: pa.Array) -> pa.Array:
        values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        rows = _fixed_width_bytes(values, 64) if self._fast else None
        prefix = _hex_prefix64(rows) if rows is not None else None
        if prefix is None:
            idx = pc.index_in(values, value_set=self.ids)
            return pc.take(pa.array(self.keys), idx)
        pos = self._index.get_indexer(prefix)  # -1 where the prefix is unknown
        found = pos >= 0
        cand = np.where(found, pos, 0)
        found &= (self._words[cand] == np.ascontiguousarray(rows).view(np.uint64)).all(axis=1)  # all 64 bytes
        return pa.array(self.keys[cand], mask=~found)


def read_transactions_csv(data_dir: Path | str, customers: pd.DataFrame, articles: pd.DataFrame | None = None,
                          progress: bool = True) -> pa.Table:
    """``transactions_train.csv`` -> compact Arrow table (``TRANSACTIONS_SCHEMA``).

    The file is streamed in 64 MB blocks; each block's ``customer_id`` strings are
    replaced by ``customer_key`` (int32, from ``customers``) at once, so the
    64-byte strings are never all held in memory. ``sales_channel_id`` is
    optional (null when absent). Rows naming a customer not in ``customers`` or
    an article not in ``articles`` (when given) are dropped with a
    :class:`DataWarning` giving the counts.
    """
    from tqdm.auto import tqdm

    path = _source_file(data_dir, C.TRANSACTIONS_CSV)
    lookup = CustomerLookup(customers)
    article_set = pa.array(articles[C.ARTICLE_ID].to_numpy(np.int32)) if articles is not None else None
    if path.suffix == ".parquet":
        src = _read_table(path, TRANSACTION_CSV_TYPES, C.TRANSACTION_REQUIRED, [C.SALES_CHANNEL_ID])
        batches = src.to_batches(max_chunksize=1 << 20)
        has_channel = C.SALES_CHANNEL_ID in src.column_names
    else:
        present = _csv_header(path)
        _check_columns(path, present, C.TRANSACTION_REQUIRED)
        has_channel = C.SALES_CHANNEL_ID in present
        keep = [c for c in C.TRANSACTION_COLUMNS if c in present]
        # one multi-threaded read (about 2.5x faster than the streaming reader on 2 cores);
        # its 64-byte id strings are converted and released block by block below
        batches = _read_csv_whole(path, TRANSACTION_CSV_TYPES, keep).to_batches()
    parts, unknown_customers, unknown_articles = [], 0, 0
    bar = tqdm(desc=f"reading {path.name}", unit=" rows", unit_scale=True, disable=not progress)
    for batch in batches:
        keys = lookup(batch.column(C.CUSTOMER_ID))
        ok = pc.is_valid(keys)
        unknown_customers += keys.null_count
        aid = batch.column(C.ARTICLE_ID)
        if article_set is not None:
            known = pc.is_in(aid, value_set=article_set)
            unknown_articles += pc.sum(pc.and_(ok, pc.invert(known))).as_py() or 0
            ok = pc.and_(ok, known)
        channel = batch.column(C.SALES_CHANNEL_ID) if has_channel else pa.nulls(len(batch), pa.int8())
        part = pa.table([batch.column(C.T_DAT), keys, aid, batch.column(C.PRICE), channel], schema=TRANSACTIONS_SCHEMA)
        parts.append(part.filter(ok))
        bar.update(len(batch))
    bar.close()
    if unknown_customers:
        warnings.warn(f"{path.name}: {unknown_customers:,} transaction rows name a customer_id missing from "
                      f"{C.CUSTOMERS_CSV}; they were dropped", DataWarning, stacklevel=2)
    if unknown_articles:
        warnings.warn(f"{path.name}: {unknown_articles:,} transaction rows name an article_id missing from "
                      f"{C.ARTICLES_CSV}; they were dropped", DataWarning, stacklevel=2)
    table = pa.concat_tables(parts) if parts else TRANSACTIONS_SCHEMA.empty_table()
    return table.combine_chunks()


def find_images(data_dir: Path | str, article_ids) -> pd.DataFrame:
    """Image index: DataFrame(article_id int32, path str, has_image bool), one row per article.

    ``path`` is the competition path ``images/0XX/0XXXXXXXXX.jpg`` relative to
    ``data_dir``; ``has_image`` says whether that file exists. The folder is
    listed once (``os.scandir``), not stat-ed per article.
    """
    data_dir = Path(data_dir)
    ids = np.asarray(article_ids, dtype=np.int32)
    found: set[str] = set()
    root = data_dir / C.IMAGES_DIR
    if root.is_dir():
        for sub in os.scandir(root):
            if sub.is_dir():
                found.update(f"{C.IMAGES_DIR}/{sub.name}/{e.name}" for e in os.scandir(sub.path)
                             if e.name.endswith(".jpg"))
    paths = [C.image_relpath(a) for a in ids]
    return pd.DataFrame({C.ARTICLE_ID: ids, C.IMAGE_PATH: pd.array(paths, dtype="str"),
                         C.HAS_IMAGE: np.fromiter((p in found for p in paths), dtype=bool, count=len(paths))})


# ------------------------------------------------------------ data source --
def resolve_data_source(data_dir: str | Path | None, profile: str = C.DEFAULT_PROFILE, seed: int = 42,
                        synthetic_images: bool = True) -> tuple[Path, str]:
    """Where the data comes from, in DESIGN.md's order; returns (folder, source name).

    source is ``given`` (argument or ``$HM_DATA_DIR``), ``kaggle``, ``checkout``
    or ``synthetic`` (generated on first use for ``profile`` and ``seed``).
    """
    given = data_dir not in (None, "") or bool(os.environ.get(C.DATA_DIR_ENV))
    found = C.find_data_dir(data_dir)
    if found is not None:
        if given:
            return found, "given"
        return found, "kaggle" if found == C.KAGGLE_INPUT else "checkout"
    from .synthetic import ensure_synthetic
    return Path(ensure_synthetic(profile, seed, images=synthetic_images)), "synthetic"


# ------------------------------------------------------------- conversion --
def prepare_data(data_dir: str | Path, work_dir: str | Path, source: str = "given", progress: bool = True) -> dict:
    """Convert the competition files in ``data_dir`` to compact parquet in ``work_dir``.

    Writes articles/customers/transactions/images parquet files (each atomically,
    so a failure leaves earlier outputs intact) and ``data_source.json``.
    Returns a summary dict: row counts, images found, date range, warnings.
    """
    data_dir, work_dir = Path(data_dir).resolve(), Path(work_dir)
    articles = read_articles_csv(data_dir)
    customers = read_customers_csv(data_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        transactions = read_transactions_csv(data_dir, customers, articles, progress=progress)
    for w in caught:  # re-emit so the notebook shows them; keep the data ones for the summary
        warnings.warn(w.message, w.category, stacklevel=2)
    caught = [w for w in caught if issubclass(w.category, DataWarning)]
    images = find_images(data_dir, articles[C.ARTICLE_ID])
    write_parquet(articles, work_dir / C.ARTICLES_PARQUET)
    write_parquet(customers, work_dir / C.CUSTOMERS_PARQUET)
    write_parquet(transactions, work_dir / C.TRANSACTIONS_PARQUET, row_group_size=1 << 20)
    write_parquet(images, work_dir / C.IMAGES_PARQUET)
    dates = transactions.column(C.T_DAT)
    summary = {
        "data_dir": str(data_dir), "source": source,
        "n_articles": len(articles), "n_customers": len(customers), "n_transactions": transactions.num_rows,
        "n_images": int(images[C.HAS_IMAGE].sum()),
        "has_sales_channel": bool(transactions.column(C.SALES_CHANNEL_ID).null_count < transactions.num_rows),
        "first_date": str(pc.min(dates).as_py()) if transactions.num_rows else None,
        "last_date": str(pc.max(dates).as_py()) if transactions.num_rows else None,
        "warnings": [str(w.message) for w in caught],
    }
    write_json(summary, work_dir / C.DATA_SOURCE_JSON)
    return summary


# ------------------------------------------------------- work-dir readers --
def load_articles(work_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``articles.parquet`` from notebook 01 as a DataFrame."""
    return pd.read_parquet(require_file(Path(work_dir) / C.ARTICLES_PARQUET, "01_data_preparation"), columns=columns)


def load_customers(work_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``customers.parquet`` from notebook 01 (``customer_key`` int32 + the 7 columns)."""
    return pd.read_parquet(require_file(Path(work_dir) / C.CUSTOMERS_PARQUET, "01_data_preparation"), columns=columns)


def load_transactions(work_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``transactions.parquet`` from notebook 01: ``t_dat`` datetime64, ``customer_key`` int32,
    ``article_id`` int32, ``price`` float32, ``sales_channel_id`` Int8 (nullable)."""
    path = require_file(Path(work_dir) / C.TRANSACTIONS_PARQUET, "01_data_preparation")
    table = pq.read_table(path, columns=columns)
    return table.to_pandas(date_as_object=False, types_mapper={pa.int8(): pd.Int8Dtype()}.get)


def load_data_source(work_dir: str | Path) -> dict:
    """``data_source.json`` written by notebook 01 (data_dir, source, counts)."""
    return read_json(require_file(Path(work_dir) / C.DATA_SOURCE_JSON, "01_data_preparation"))


def load_images(work_dir: str | Path) -> pd.DataFrame:
    """``images.parquet`` from notebook 01 plus ``abs_path`` (str): the image file's absolute path."""
    images = pd.read_parquet(require_file(Path(work_dir) / C.IMAGES_PARQUET, "01_data_preparation"))
    root = Path(load_data_source(work_dir)["data_dir"])
    images["abs_path"] = [str(root / p) for p in images[C.IMAGE_PATH]]
    return images
