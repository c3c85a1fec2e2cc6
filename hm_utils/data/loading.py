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

They are read back by the readers in :mod:`hm_utils.core.workdir` (``load_articles`` ...).

The CSV files are read by :func:`hm_utils.data.csv_columns.read_csv` (polars' streaming
reader), which also copes with the ways people save these files (byte-order
marks, UTF-16 and Windows-1252, CRLF, quoting, extra or reordered columns,
blank lines, other date spellings ...): each repair is stated in a
:class:`DataWarning` with its count; anything it cannot read safely stops with a
``ValueError`` naming the file and the line. Identical transaction rows are
kept: in this data they are real purchases of two of one article on one day.

Ids stay exact: ``article_id`` is read as a number whether written
``0108775015`` or ``108775015`` and written back zero-padded to 10 digits by
:func:`hm_utils.core.config.format_article_id`; ``customer_id`` stays the 64-hex
string in ``customers.parquet`` and is replaced by the int32 ``customer_key``
in the transactions (31.8 million rows of 64-byte strings would need about
2 GB; the key needs 127 MB). The key is joined on inside polars' streaming
query, so those strings are never all held in memory; :meth:`CustomerLookup.scan`
reads the customers' ids inside that same query too (nothing of ``customers.csv``
is held before or after it), which is how :func:`prepare_data` converts them.

Bad input: a missing file is a ``FileNotFoundError`` naming the file and the
expected layout; a missing column is a ``ValueError`` naming the column and the
file; a malformed CSV line or value is a ``ValueError`` with its line number.
Transactions naming an article missing from ``articles.csv`` or a customer
missing from ``customers.csv`` are **dropped with a warning giving the count**
(nothing downstream can describe, embed or submit for them); a customer id that
is not 64 hex digits while those of ``customers.csv`` are is an error.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from hm_utils.core import config as C
from hm_utils.core.storage import write_json, write_parquet
from hm_utils.data.csv_columns import HEX64, Column, DataWarning, read_csv, require_header, strict_frame
from hm_utils.data.csv_files import sniff
from hm_utils.synthetic.generate import ensure_synthetic

__all__ = ["CustomerLookup", "read_articles_csv", "read_customers_csv", "read_transactions_csv",
           "find_images", "resolve_data_source", "prepare_data"]

# ------------------------------------------------------------------ schemas --
ARTICLE_STRING_COLUMNS = [c for c in C.ARTICLE_COLUMNS if c not in C.ARTICLE_INT_COLUMNS + [C.ARTICLE_ID]]
ARTICLE_SPEC = [Column(c, "int32", nonnull=True) if c not in ARTICLE_STRING_COLUMNS else Column(c, "string")
                for c in C.ARTICLE_COLUMNS]
CUSTOMER_SPEC = [
    Column(C.CUSTOMER_ID, "string", nonnull=True), Column("FN", "float32"), Column("Active", "float32"),
    Column("club_member_status"), Column("fashion_news_frequency"), Column("age", "float32"), Column("postal_code"),
]
CUSTOMER_SPEC_NAMES = [c.name for c in CUSTOMER_SPEC]
TRANSACTION_SPEC = [
    Column(C.T_DAT, "date", nonnull=True), Column(C.CUSTOMER_ID, "string", nonnull=True),
    Column(C.ARTICLE_ID, "int32", nonnull=True), Column(C.PRICE, "float32", nonnull=True),
    Column(C.SALES_CHANNEL_ID, "int8", required=False),
]
TRANSACTIONS_SCHEMA = pa.schema([
    (C.T_DAT, pa.date32()), (C.CUSTOMER_KEY, pa.int32()), (C.ARTICLE_ID, pa.int32()),
    (C.PRICE, pa.float32()), (C.SALES_CHANNEL_ID, pa.int8()),
])
LAYOUT_HINT = (f"expected the competition layout: {', '.join(C.COMPETITION_FILES)} "
               f"and {C.IMAGES_DIR}/0XX/0XXXXXXXXX.jpg")


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


def _parquet_frame(path: Path, spec: list[Column]) -> pl.LazyFrame:
    """A parquet copy of a table with the ``spec`` types (strings such as ``0108775015`` or
    ``2020-09-22`` converted; timestamps cut to dates); ValueError naming a missing column."""
    lf = pl.scan_parquet(path)
    schema = lf.collect_schema()
    require_header(path.name, path, schema.names(), spec)
    exprs = []
    for c in spec:
        if c.name not in schema:
            continue
        col, dtype = pl.col(c.name), schema[c.name]
        target = {"int32": pl.Int32, "int8": pl.Int8, "float32": pl.Float32, "date": pl.Date}.get(c.kind, pl.String)
        if dtype == pl.String and c.kind in ("int32", "int8"):
            col = col.cast(pl.Int64)
        elif dtype == pl.String and c.kind == "date":
            col = col.str.to_date("%Y-%m-%d")
        elif isinstance(dtype, pl.Datetime) and c.kind == "date":
            col = col.dt.date()
        exprs.append(col.cast(target).alias(c.name))
    return lf.select(exprs)


def _read_source(path: Path, spec: list[Column], finish=None, suspect=None) -> pl.DataFrame:
    """The table at ``path`` (CSV via :func:`read_csv`, or its parquet copy) as a typed polars frame."""
    if path.suffix != ".parquet":
        return read_csv(path, spec, finish=finish, suspect=suspect)
    try:
        lf = _parquet_frame(path, spec)
        df = (finish(lf) if finish else lf).collect()
    except pl.exceptions.PolarsError as exc:
        raise ValueError(f"{path.name}: cannot read the file: {exc}") from None
    for c in spec:
        if c.nonnull and c.name in df.columns and df[c.name].null_count():
            row = int(df[c.name].is_null().arg_true()[0])
            raise ValueError(f"{path.name}: {df[c.name].null_count():,} rows have no {c.name} (first: row {row})")
    return df


def _to_pandas(df: pl.DataFrame) -> pd.DataFrame:
    """Column by column (each polars column released once converted), so the peak holds one extra column."""
    arrays = {}
    for name in df.columns:
        arrays[name] = df.get_column(name).to_arrow()
        df = df.drop(name)
    return pa.table(arrays).to_pandas()


def read_articles_csv(data_dir: Path | str) -> pd.DataFrame:
    """``articles.csv`` -> DataFrame of the 25 columns (ids and codes int32, names str).

    ``index_code`` (a letter) stays a string. Duplicate article ids are an error.
    """
    path = _source_file(data_dir, C.ARTICLES_CSV)
    df = _to_pandas(_read_source(path, ARTICLE_SPEC))
    dup = df[C.ARTICLE_ID].duplicated()
    if dup.any():
        raise ValueError(f"{path.name}: article_id {C.format_article_id(df.loc[dup, C.ARTICLE_ID].iloc[0])} "
                         f"appears more than once ({int(dup.sum())} duplicates)")
    return df


def read_customers_csv(data_dir: Path | str) -> pd.DataFrame:
    """``customers.csv`` -> DataFrame with ``customer_key`` int32 (0..n-1 in file order) first.

    Then ``customer_id`` (str), FN, Active, age (float32) and the other columns (str).
    When some ids have the competition's form (64 lowercase hex digits) every one must:
    a ``ValueError`` names the line of one that does not. Duplicate customer ids are
    dropped (first kept) with a warning.
    """
    path = _source_file(data_dir, C.CUSTOMERS_CSV)
    frame = _read_source(path, CUSTOMER_SPEC)
    n_hex = int(frame[C.CUSTOMER_ID].str.contains(HEX64).sum())
    if 0 < n_hex < frame.height and path.suffix != ".parquet":  # all must be, then: name the lines of the others
        spec = [Column(C.CUSTOMER_ID, "hex64", nonnull=True)] + CUSTOMER_SPEC[1:]
        frame = read_csv(path, spec)
    first = frame[C.CUSTOMER_ID].is_first_distinct()
    if not first.all():
        warnings.warn(f"{path.name}: {int((~first).sum())} duplicate customer_id rows dropped (first kept)",
                      DataWarning, stacklevel=2)
        frame = frame.filter(first)
    frame = frame.with_columns(pl.int_range(frame.height, dtype=pl.Int32).alias(C.CUSTOMER_KEY))
    return _to_pandas(frame.select(C.CUSTOMER_KEY, *CUSTOMER_SPEC_NAMES))


class CustomerLookup:
    """Maps ``customer_id`` strings to ``customer_key`` (int32, null when unknown).

    Built from ``customers`` (``customer_key`` int32, ``customer_id`` str; ids unique
    and not null) as a two-column polars frame, or by :meth:`scan` from the
    customers' file as a lazy scan of it; a lookup is polars' own left join of the
    ids on it, order kept, which runs inside the streaming query that reads the
    transactions (its hash table holds the 1.37 M ids once; a polars ``Enum`` cast
    was as fast but built a 0.33 GB map). ``competition_ids`` says whether every id
    has the competition's form (64 lowercase hex digits); then ids in the
    transactions must have it too.
    """

    def __init__(self, customers: pd.DataFrame):
        ids = pl.from_arrow(pa.array(customers[C.CUSTOMER_ID], type=pa.large_string()))
        if ids.null_count():
            raise ValueError("customers: customer_id is empty on some rows")
        if ids.is_duplicated().any():
            raise ValueError(f"customers: customer_id {ids.filter(ids.is_duplicated())[0]!r} appears more than once")
        self.frame: pl.DataFrame | pl.LazyFrame = pl.DataFrame(
            {C.CUSTOMER_ID: ids, C.CUSTOMER_KEY: customers[C.CUSTOMER_KEY].to_numpy(np.int32)})
        self.competition_ids = len(ids) > 0 and bool(ids.str.contains(HEX64).all())

    @classmethod
    def scan(cls, data_dir: Path | str) -> "CustomerLookup":
        """The lookup of the customers' file in ``data_dir`` (``customers.csv`` or its parquet copy) with
        the keys :func:`read_customers_csv` gives (0..n-1 in file order, duplicate ids dropped, first
        kept, with the same :class:`DataWarning`), holding no id: ``frame`` is a lazy scan of the
        ``customer_id`` column, read again inside the query it is joined to.

        One streaming pass over that column checks it first (row count, empty ids, ids of the
        competition's form, distinct ids: counted on 64-bit hashes of the ids, and on the ids themselves
        only when two hashes are equal). A file that needs more than the plain typed read (not
        UTF-8, CR line ends, another separator, blank lines at its end, an empty or malformed id, a
        mix of hex and other ids) goes through :func:`read_customers_csv` instead, with its repairs,
        warnings and errors, and the lookup holds its ids. The other columns are not read here:
        :func:`read_customers_csv` checks them.
        """
        path = _source_file(data_dir, C.CUSTOMERS_CSV)
        spec = [Column(C.CUSTOMER_ID, "hex64", nonnull=True)]  # read as is: "" is counted as empty below
        lf = None
        if path.suffix == ".parquet":
            lf = _parquet_frame(path, spec)
        else:
            csvf = sniff(path)
            if not (csvf.needs_copy or csvf.notes or csvf.trailing_blank):
                require_header(csvf.name, csvf.path, csvf.header, spec)
                lf = strict_frame(path, csvf, spec)
        stats = None
        if lf is not None:
            ids = pl.col(C.CUSTOMER_ID)
            try:
                stats = lf.select(n=pl.len(), empty=ids.null_count() + (ids.str.len_bytes() == 0).sum(),
                                  hex=ids.str.contains(HEX64).sum(),
                                  distinct=ids.hash(0).n_unique()).collect().row(0, named=True)
                if stats["distinct"] < stats["n"]:  # equal hashes: duplicate ids, or a hash collision
                    stats["distinct"] = lf.select(ids.n_unique()).collect().item()
            except pl.exceptions.PolarsError:  # e.g. not UTF-8 or a malformed line: the full read says what
                stats = None
        if stats is None or stats["empty"] or 0 < stats["hex"] < stats["n"]:
            return cls(read_customers_csv(data_dir))
        if stats["distinct"] < stats["n"]:
            warnings.warn(f"{path.name}: {stats['n'] - stats['distinct']} duplicate customer_id rows dropped "
                          f"(first kept)", DataWarning, stacklevel=2)
            lf = lf.filter(pl.col(C.CUSTOMER_ID).is_first_distinct())
        self = cls.__new__(cls)
        self.frame = lf.with_row_index(C.CUSTOMER_KEY).select(C.CUSTOMER_ID, pl.col(C.CUSTOMER_KEY).cast(pl.Int32))
        self.competition_ids = stats["n"] > 0 and stats["hex"] == stats["n"]
        return self

    def join(self, lf: pl.LazyFrame, column: str = C.CUSTOMER_ID) -> pl.LazyFrame:
        """``lf`` with its string column ``column`` replaced by ``customer_key`` (Int32, null when unknown),
        rows in their order."""
        right = self.frame.lazy()
        if column != C.CUSTOMER_ID:
            right = right.rename({C.CUSTOMER_ID: column})
        return lf.join(right, on=column, how="left", maintain_order="left").drop(column)

    def __call__(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Keys (int32 Arrow array, null where unknown) of an Arrow array of ids."""
        frame = pl.DataFrame({"id": pl.from_arrow(values).cast(pl.String)}).lazy()
        return self.join(frame, "id").collect().to_series().to_arrow().cast(pa.int32())


def read_transactions_csv(data_dir: Path | str, customers: pd.DataFrame | CustomerLookup,
                          articles: pd.DataFrame | None = None, progress: bool = True) -> pa.Table:
    """``transactions_train.csv`` -> compact Arrow table (``TRANSACTIONS_SCHEMA``).

    One streaming polars query reads the file, replaces each ``customer_id``
    by its ``customer_key`` (int32, from ``customers``: the table of
    :func:`read_customers_csv`, or a :class:`CustomerLookup`, e.g.
    ``CustomerLookup.scan(data_dir)``, which holds no id) and checks
    ``article_id`` against ``articles`` (when given), so the 64-byte id
    strings are never all held. ``sales_channel_id`` is optional (null when
    absent). Rows naming a customer not in ``customers`` or an article not in
    ``articles`` are dropped with a :class:`DataWarning` giving the counts;
    identical rows are kept. ``progress`` is accepted for compatibility: the
    read is one polars query, with no loop to show.
    """
    path = _source_file(data_dir, C.TRANSACTIONS_CSV)
    lookup = customers if isinstance(customers, CustomerLookup) else CustomerLookup(customers)
    known = pl.Series(articles[C.ARTICLE_ID].to_numpy(np.int32)) if articles is not None else None
    spec = [Column(C.CUSTOMER_ID, "hex64", nonnull=True) if c.name == C.CUSTOMER_ID and lookup.competition_ids
            else c for c in TRANSACTION_SPEC]

    def finish(lf: pl.LazyFrame) -> pl.LazyFrame:
        lf = lookup.join(lf)
        if known is not None:
            lf = lf.with_columns(pl.col(C.ARTICLE_ID).is_in(known.implode()).alias("_known_article"))
        return lf

    # an id that maps to no key may be a malformed one: then the whole file is checked (and named)
    df = _read_source(path, spec, finish=finish, suspect=lambda d: d[C.CUSTOMER_KEY].null_count() > 0)
    ok = df[C.CUSTOMER_KEY].is_not_null()
    unknown_customers = int(df.height - ok.sum())
    unknown_articles = 0
    if known is not None:
        unknown_articles = int((ok & ~df["_known_article"]).sum())
        ok = ok & df["_known_article"]
        df = df.drop("_known_article")
    if unknown_customers:
        warnings.warn(f"{path.name}: {unknown_customers:,} transaction rows name a customer_id missing from "
                      f"{C.CUSTOMERS_CSV}; they were dropped", DataWarning, stacklevel=2)
    if unknown_articles:
        warnings.warn(f"{path.name}: {unknown_articles:,} transaction rows name an article_id missing from "
                      f"{C.ARTICLES_CSV}; they were dropped", DataWarning, stacklevel=2)
    if unknown_customers or unknown_articles:
        df = df.filter(ok)
    if C.SALES_CHANNEL_ID not in df.columns:
        df = df.with_columns(pl.lit(None, pl.Int8).alias(C.SALES_CHANNEL_ID))
    df = df.select(TRANSACTIONS_SCHEMA.names)
    return df.to_arrow().cast(TRANSACTIONS_SCHEMA)


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
    return Path(ensure_synthetic(profile, seed, images=synthetic_images)), "synthetic"


# ------------------------------------------------------------- conversion --
def is_synthetic_set(data_dir: str | Path) -> bool:
    """True when ``data_dir`` is a set made by :mod:`hm_utils.synthetic` (it holds the generator's ground
    truth), False for the competition files or an excerpt of them."""
    return (Path(data_dir) / C.GROUND_TRUTH_DIR).is_dir()


def prepare_data(data_dir: str | Path, work_dir: str | Path, source: str = "given", progress: bool = True) -> dict:
    """Convert the competition files in ``data_dir`` to compact parquet in ``work_dir``.

    Writes articles/customers/transactions/images parquet files (each atomically,
    so a failure leaves earlier outputs intact) and ``data_source.json``.
    Returns a summary dict: row counts, images found, date range, warnings.
    """
    data_dir, work_dir = Path(data_dir).resolve(), Path(work_dir)
    articles = read_articles_csv(data_dir)
    customers = read_customers_csv(data_dir)
    with warnings.catch_warnings():  # read_customers_csv has stated them
        warnings.simplefilter("ignore", DataWarning)
        lookup = CustomerLookup.scan(data_dir)  # the same keys, no second copy of the ids
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        transactions = read_transactions_csv(data_dir, lookup, articles, progress=progress)
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
