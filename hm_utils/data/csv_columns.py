"""Reading the competition's CSV files as people really save them.

The competition files often pass through Excel, LibreOffice, pandas or a text
editor before they reach this series. :func:`read_csv` reads one of them into
a typed :class:`polars.DataFrame` with polars' multi-threaded streaming CSV
reader (one pass, no Python loop over rows) and, when that strict read fails
or leaves a required value empty, looks at the file again to say exactly what
is wrong (:func:`diagnose`): it either reads the file with the repair stated
in a :class:`DataWarning` (with counts), or raises a ``ValueError`` that names
the file, the line (1-based, the header is line 1), the column and the value,
and what to do. Nothing is dropped or changed silently. The file-level part
(encoding, separator, header, line ends) is :mod:`hm_utils.data.csv_files`'s.

=========================================  =========================================================
the file has                               what happens
=========================================  =========================================================
UTF-8 byte-order mark (Excel "CSV UTF-8")  read as is
UTF-16, with or without BOM (Excel         converted to a temporary UTF-8 copy; ``DataWarning``
"Unicode Text", usually tab-separated)
Windows-1252 bytes (Excel "CSV (Comma      converted likewise; ``DataWarning`` with the first line and
delimited)"), no UTF-8 multi-byte text     the count of lines holding such characters
non-UTF-8 bytes mixed with UTF-8 text, or  ``ValueError`` naming the line
bytes that are not Windows-1252 either
an Excel workbook renamed ``.csv``         ``ValueError``: save it as "CSV UTF-8"
Windows (CRLF) line endings                read as is
old Mac (CR only) line endings             converted copy; ``DataWarning``
``;``, tab or ``|`` separators             detected from the header; ``DataWarning``
decimal commas (``0,0508``, with ``;``)    read as decimal points; ``DataWarning`` with the count
quoted fields or header, quoted newlines   read as is; an empty quoted field ``""`` is an empty value
extra or reordered columns                 columns are taken by name; extra ones are ignored
a missing or duplicated column             ``ValueError`` naming it (and a same-name-other-case match)
spaces around header names                 stripped
blank lines, separator-only rows           skipped; ``DataWarning`` with count and first line, unless
                                           they only trail the file (a trailing empty line)
spaces around numbers, dates and ids       stripped; ``DataWarning`` with the count
whole numbers written ``108775015.0``      read as ``108775015``; ``DataWarning`` with the count
numbers in scientific notation             ``ValueError`` (a spreadsheet rounded them)
ids without leading zeros                  fine for numbers (``108775015`` is article ``0108775015``)
dates with a 00:00:00 time                 the date is kept; ``DataWarning`` with the count
dates with another time of day             ``ValueError`` (the data is daily; a shifted time zone?)
other date spellings (``9/22/2020``,       read when exactly one common format fits every value;
``22.09.2020``, ``2020/09/22`` ...)        ``DataWarning``; ``ValueError`` when none or several fit
a wrong number of fields on a line         ``ValueError``: ``malformed line N``
an empty required value, a bad value       ``ValueError`` naming line, column and value
identical rows                             kept (in the transactions they are real purchases)
=========================================  =========================================================
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl

from hm_utils.data.csv_files import SEPARATOR_NAMES, CsvFile, NotUtf8, is_utf8_error, sniff, utf8_source, windows_1252


class DataWarning(UserWarning):
    """Input data had something wrong that the loader handled (and says how)."""


# ------------------------------------------------------------------ columns --
_DTYPES = {"int32": pl.Int32, "int8": pl.Int8, "float32": pl.Float32, "date": pl.Date,
           "string": pl.String, "hex64": pl.String}
_INT_RANGE = {"int32": (-(2 ** 31), 2 ** 31 - 1), "int8": (-128, 127)}
HEX64 = r"^[0-9a-f]{64}$"


@dataclass(frozen=True)
class Column:
    """One column to read: ``kind`` is ``int32`` / ``int8`` / ``float32`` / ``date`` / ``string`` /
    ``hex64`` (a 64-digit lowercase hex id, read as a string); ``nonnull``: every data row needs a
    value; ``required``: the header must have the column (an absent optional column is left out)."""
    name: str
    kind: str = "string"
    nonnull: bool = False
    required: bool = True

    def __post_init__(self):
        if self.kind not in _DTYPES:
            raise ValueError(f"unknown column kind {self.kind!r}; one of {', '.join(_DTYPES)}")


def require_header(file_name: str, path: Path | str, header: list[str], columns: list[Column]) -> None:
    """``ValueError`` naming the file (``file_name`` and ``path``) and every required column of
    ``columns`` that its ``header`` lacks, with a rename hint for a same-name-other-case column."""
    missing = [c.name for c in columns if c.required and c.name not in header]
    if not missing:
        return
    hint = [f"{h!r} for {m!r}" for m in missing for h in header if h.lower() == m.lower()]
    raise ValueError(f"{file_name} ({path}) is missing required column(s) {', '.join(missing)}; found "
                     f"{', '.join(header)}" + (f" (rename {', '.join(hint)})" if hint else ""))


# -------------------------------------------------------------------- read --
def _scan(src: Path, csvf: CsvFile, dtypes: dict | None = None) -> pl.LazyFrame:
    """Lazy scan with the stripped header names; every column a string unless ``dtypes`` says."""
    return pl.scan_csv(src, separator=csvf.separator, new_columns=csvf.header, infer_schema=False,
                       schema_overrides=dtypes or {}, raise_if_empty=False)


def _empty_to_null(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr != "").then(expr)


def strict_frame(src: Path, csvf: CsvFile, columns: list[Column]) -> pl.LazyFrame:
    """The strict typed read: numbers parsed by the CSV reader, dates as ISO ``YYYY-MM-DD`` only."""
    dtypes = {c.name: _DTYPES[c.kind] for c in columns if c.kind in ("int32", "int8", "float32")}
    exprs = []
    for c in columns:
        col = pl.col(c.name)
        if c.kind == "date":
            col = col.str.to_date("%Y-%m-%d")
        elif c.kind == "string":  # a hex64 id "" fails its check instead (and 31.8 M ids are not copied)
            col = _empty_to_null(col)
        exprs.append(col.alias(c.name))
    lf = _scan(src, csvf, dtypes)
    if csvf.trailing_blank:
        exprs.append(pl.all_horizontal([pl.col(c.name).is_null() for c in columns]).alias("_blank"))
    return lf.select(exprs)


def read_csv(path: Path | str, columns: list[Column],
             finish: Callable[[pl.LazyFrame], pl.LazyFrame] | None = None,
             suspect: Callable[[pl.DataFrame], bool] | None = None) -> pl.DataFrame:
    """Read ``columns`` of the CSV file ``path`` (in file order) as a typed polars DataFrame.

    Types: ``int32``/``int8`` -> Int32/Int8, ``float32`` -> Float32, ``date`` -> Date,
    ``string``/``hex64`` -> String (an empty value is null). Optional columns absent from the
    header are left out. ``finish`` (LazyFrame -> LazyFrame) runs inside the same streaming query
    before the rows are collected (e.g. to map ids to keys, so that their strings are never all
    held); it must keep the columns it does not replace. ``suspect`` (collected frame -> bool)
    says when the strict read's result needs every value checked anyway (e.g. ids that mapped
    to no key: malformed, or merely unknown?); ``hex64`` columns still in the frame are checked.

    Everything the module docstring lists is handled here: a repair comes with a
    :class:`DataWarning` stating it and its count; anything else raises ``ValueError`` naming the
    file, the line and what to do.
    """
    csvf = sniff(path)
    require_header(csvf.name, csvf.path, csvf.header, columns)
    present = [c for c in columns if c.name in csvf.header]
    try:
        return _read(csvf, present, finish, suspect)
    except NotUtf8:
        return _read(windows_1252(csvf), present, finish, suspect)


def _clean(df: pl.DataFrame, columns: list[Column], suspect) -> bool:
    """Whether the strict read's frame needs no further check."""
    for c in columns:
        if c.name not in df.columns:
            continue
        if c.nonnull and df[c.name].null_count():
            return False
        if c.kind == "hex64" and not df[c.name].drop_nulls().str.contains(HEX64).all():
            return False
    return not (suspect and suspect(df))


def _read(csvf: CsvFile, columns: list[Column], finish, suspect) -> pl.DataFrame:
    for note in csvf.notes:
        warnings.warn(f"{csvf.name}: {note}", DataWarning, stacklevel=4)
    finish = finish or (lambda lf: lf)
    with utf8_source(csvf) as src:
        failure = None
        try:
            df = finish(strict_frame(src, csvf, columns)).collect()
            if "_blank" in df.columns:  # blank lines are allowed at the end of the file only
                k = csvf.trailing_blank
                blank = df["_blank"]
                if blank.sum() == k and k <= df.height and blank.tail(k).all():
                    df = df.head(df.height - k)
                df = df.drop("_blank")  # any other blank rows leave nulls for the check below
            if _clean(df, columns, suspect):
                return df
        except pl.exceptions.PolarsError as exc:
            if is_utf8_error(exc) and csvf.encoding in ("utf-8", "utf-8-sig"):
                raise NotUtf8() from None
            failure = exc
        repairs = _diagnose(src, csvf, columns)
        for message in repairs.warnings:
            warnings.warn(f"{csvf.name}: {message}", DataWarning, stacklevel=4)
        try:
            df = finish(_repaired_frame(src, csvf, columns, repairs)).collect()
        except pl.exceptions.PolarsError as exc:
            raise ValueError(f"{csvf.name}: cannot read the file: {failure or exc}") from None
        lost = [c.name for c in columns
                if c.name in df.columns and df[c.name].null_count() > repairs.nulls.get(c.name, 0)]
        if lost:  # values the check passed but the repaired read could not parse: never silently null
            raise ValueError(f"{csvf.name}: values of {', '.join(lost)} could not be read; please report this file")
        return df


# --------------------------------------------------------------- diagnosis --
_MIDNIGHT = r"^(0?0:00(:00(\.0+)?)?|12:00(:00)?\s*[aA][mM])$"
_DATE_FORMATS = {  # strftime format -> how a person would call it
    "%Y-%m-%d": "YYYY-MM-DD", "%Y/%m/%d": "YYYY/MM/DD", "%Y.%m.%d": "YYYY.MM.DD", "%Y%m%d": "YYYYMMDD",
    "%m/%d/%Y": "M/D/YYYY", "%d/%m/%Y": "D/M/YYYY", "%d.%m.%Y": "D.M.YYYY", "%d-%m-%Y": "D-M-YYYY",
    "%m-%d-%Y": "M-D-YYYY", "%m/%d/%y": "M/D/YY", "%d/%m/%y": "D/M/YY", "%d.%m.%y": "D.M.YY",
}
_SCIENTIFIC = r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$"
_WHOLE_DECIMAL = r"^[+-]?\d+\.0*$"
_DECIMAL_COMMA = r"^[+-]?\d*,\d+$"


@dataclass
class Repairs:
    """What :func:`diagnose` found readable after a repair: per column, the repairs to apply."""
    strip: set = field(default_factory=set)          # columns whose values had spaces around them
    whole_decimal: set = field(default_factory=set)  # int columns with values like 123.0
    decimal_comma: set = field(default_factory=set)  # float columns with values like 0,5
    date_format: dict = field(default_factory=dict)  # date column -> strftime format of the date part
    blank_rows: int = 0
    nulls: dict = field(default_factory=dict)        # column -> empty values on data rows (allowed ones)
    warnings: list = field(default_factory=list)



def _date_parts(s: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(date part, time part or null) of a stripped date string such as ``2020-09-22 00:00:00``."""
    return s.str.extract(r"^([^ T]+)", 1), s.str.extract(r"^[^ T]+[ T]\s*(.+)$", 1)


def _date_expr(s: pl.Expr, fmt: str) -> pl.Expr:
    """Date of a stripped string with date part in ``fmt`` and no time or a midnight time; null otherwise."""
    date_part, time_part = _date_parts(s)
    return pl.when(time_part.is_null() | time_part.str.contains(_MIDNIGHT)).then(date_part.str.to_date(fmt,
                                                                                                strict=False))


def _pick_date_format(values: list[str]) -> tuple[str | None, str | None]:
    """(format, problem): the one format of ``_DATE_FORMATS`` that reads every date part of
    ``values`` (a sample of distinct stripped values), or None and why not."""
    parts = pl.Series(values, dtype=pl.String).str.extract(r"^([^ T]+)", 1).drop_nulls().unique()
    if parts.len() == 0:
        return "%Y-%m-%d", None
    fits = {f: parts.str.to_date(f, strict=False) for f in _DATE_FORMATS}
    full = [f for f, d in fits.items() if d.null_count() == 0]
    if not full:
        best = max(fits, key=lambda f: parts.len() - fits[f].null_count())
        return best, None  # the rows it cannot read are reported as bad dates
    distinct = {tuple(fits[f].to_list()) for f in full}
    if len(distinct) > 1:
        example = next(v for v, *ds in zip(parts.to_list(), *[fits[f].to_list() for f in full]) if len(set(ds)) > 1)
        names = " or ".join(_DATE_FORMATS[f] for f in full)
        return None, (f"its dates can be read as {names} (e.g. {example!r}); write them as YYYY-MM-DD and run "
                      f"again")
    return full[0], None


def _has_quotes(src: Path) -> bool:
    """Whether the file has a double quote anywhere (else no value can hold a line end)."""
    import mmap
    with open(src, "rb") as fh:
        if fh.seek(0, 2) == 0:
            return False
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return mm.find(b'"') >= 0


def _line_expr(names: list[str], quoted: bool) -> pl.Expr:
    """1-based line of each row: the row number plus the header plus the line ends inside quoted values."""
    line = pl.col("_row").cast(pl.Int64) + 2
    if quoted:
        inner = pl.sum_horizontal([pl.col(n).str.count_matches("\n", literal=True).fill_null(0) for n in names])
        line = line + inner.cum_sum() - inner
    return line.alias("_line")


def _raw_line(src: Path, line: int) -> str:
    with open(src, "r", encoding="utf-8", errors="replace", newline="") as fh:
        for i, text in enumerate(fh, 1):
            if i == line:
                return text.rstrip("\r\n")
    return ""


def diagnose(path: Path | str, columns: list[Column]) -> Repairs:
    """Check every value of ``columns`` in the CSV file ``path`` (see :func:`read_csv`).

    Returns the :class:`Repairs` the file needs (empty when none) or raises ``ValueError`` naming
    the file, the line, the column, the value and what to do.
    """
    csvf = sniff(path)
    require_header(csvf.name, csvf.path, csvf.header, columns)
    present = [c for c in columns if c.name in csvf.header]
    try:
        with utf8_source(csvf) as src:
            return _diagnose(src, csvf, present)
    except pl.exceptions.ComputeError as exc:
        if not is_utf8_error(exc):
            raise
    csvf = windows_1252(csvf)
    with utf8_source(csvf) as src:
        return _diagnose(src, csvf, present)


def _is_empty(v: pl.Expr) -> pl.Expr:
    return v.is_null() | v.str.contains(r"^\s*$")


def _exact(c: Column, v: pl.Expr) -> pl.Expr:
    """True where the string value ``v`` reads as ``c.kind`` as it is (what the strict read accepts)."""
    if c.kind in ("int32", "int8"):
        return v.cast(_DTYPES[c.kind], strict=False).is_not_null()
    if c.kind == "float32":
        return v.cast(pl.Float32, strict=False).is_not_null()
    if c.kind == "date":
        return v.str.to_date("%Y-%m-%d", strict=False).is_not_null()
    if c.kind == "hex64":
        return v.str.contains(HEX64)
    return pl.lit(True)


def _classify(c: Column, v: pl.Expr, csvf: CsvFile, fmt: str) -> list[tuple[str, pl.Expr]]:
    """(problem, flag) pairs for the values of ``c`` that do not read as they are."""
    s = v.str.strip_chars()
    if c.kind in ("int32", "int8"):
        lo, hi = _INT_RANGE[c.kind]
        as_int = s.cast(pl.Int64, strict=False)
        in_range = as_int.is_between(lo, hi)
        whole_dec = s.str.contains(_WHOLE_DECIMAL)
        scientific = s.str.contains(_SCIENTIFIC)
        return [("spaces", (v != s) & (in_range | whole_dec)), ("whole_decimal", as_int.is_null() & whole_dec),
                ("scientific", scientific), ("range", as_int.is_not_null() & ~in_range),
                ("not_int", as_int.is_null() & ~whole_dec & ~scientific)]
    if c.kind == "float32":
        ok = s.cast(pl.Float32, strict=False).is_not_null()
        comma = s.str.contains(_DECIMAL_COMMA) if csvf.separator != "," else pl.lit(False)
        return [("spaces", (v != s) & (ok | comma)), ("decimal_comma", ~ok & comma), ("not_float", ~ok & ~comma)]
    if c.kind == "hex64":
        ok = s.str.contains(HEX64)
        return [("spaces", (v != s) & ok), ("not_hex64", ~ok)]
    date_part, time_part = _date_parts(s)
    midnight = time_part.str.contains(_MIDNIGHT)
    parsed = date_part.str.to_date(fmt, strict=False)
    timed = parsed.is_not_null() & time_part.is_not_null()
    return [("spaces", (v != s) & parsed.is_not_null()),
            ("date_format", parsed.is_not_null() & date_part.str.to_date("%Y-%m-%d", strict=False).is_null()),
            ("midnight", timed & midnight), ("time_of_day", timed & ~midnight), ("not_date", parsed.is_null())]


def _diagnose(src: Path, csvf: CsvFile, columns: list[Column]) -> Repairs:
    """Two passes over the file read as strings: (1) counts of what fails the strict read (empty
    required values, extra fields, values that do not read as they are); (2) only over the rows
    with such values, what each is (a repairable spelling or an error), with examples."""
    names = csvf.header + ["_extra"]
    lf = pl.scan_csv(src, separator=csvf.separator, has_header=False, skip_rows=1,
                     schema={n: pl.String for n in names}, missing_columns="insert", truncate_ragged_lines=True,
                     row_index_name="_row", raise_if_empty=False)
    blank = pl.all_horizontal([_is_empty(pl.col(n)) for n in names])
    lf = lf.with_columns(_line_expr(names, _has_quotes(src)), blank.alias("_blank"))
    live = ~pl.col("_blank")
    typed = [c for c in columns if c.kind != "string"]
    first = {("malformed", "_extra"): live & pl.col("_extra").is_not_null()}
    for c in columns:
        v = pl.col(c.name)
        if c.nonnull:
            first[("empty", c.name)] = live & _is_empty(v)
    for c in typed:
        v = pl.col(c.name)
        first[("odd", c.name)] = live & ~_is_empty(v) & ~_exact(c, v)
        if c.kind == "date":  # to tell a file with one odd spelling from one that mixes two
            first[("exact", c.name)] = live & ~_is_empty(v) & _exact(c, v)
    for c in columns:
        first[("null", c.name)] = live & _is_empty(pl.col(c.name))
    last_data_row = pl.col("_row").filter(live).max()
    inner_blank = pl.col("_blank") & (pl.col("_row") < last_data_row)
    counts = lf.select([f.sum().alias("|".join(k)) for k, f in first.items()]
                       + [pl.col("_blank").sum().alias("blank"), inner_blank.sum().alias("inner_blank"),
                          pl.col("_line").filter(inner_blank).min().alias("first_blank")]).collect().row(0, named=True)
    repairs = Repairs(nulls={c.name: counts[f"null|{c.name}"] for c in columns})
    checks = {k: f for k, f in first.items() if k[0] in ("malformed", "empty") and counts["|".join(k)]}
    odd_columns = [c for c in typed if counts[f"odd|{c.name}"]]
    for c in odd_columns:
        v = pl.col(c.name)
        fmt = "%Y-%m-%d"
        if c.kind == "date":
            odd = first[("odd", c.name)]
            values = lf.filter(odd).select(v.str.strip_chars().alias("v")).unique().head(5000).collect()["v"]
            fmt, problem = _pick_date_format(values.to_list())
            if problem:
                row = lf.filter(odd).select("_line", v).head(1).collect().row(0)
                raise ValueError(f"{csvf.name}: {c.name} {row[1]!r} on line {row[0]}: {problem}")
            if fmt != "%Y-%m-%d" and counts[f"exact|{c.name}"]:
                iso = lf.filter(first[("exact", c.name)]).select("_line", v).head(1).collect().row(0)
                row = lf.filter(odd).select("_line", v).head(1).collect().row(0)
                raise ValueError(f"{csvf.name}: {c.name} mixes spellings: {iso[1]!r} on line {iso[0]} is YYYY-MM-DD "
                                 f"but {row[1]!r} on line {row[0]} is {_DATE_FORMATS[fmt]}; write every date as "
                                 f"YYYY-MM-DD and run again")
            repairs.date_format[c.name] = fmt
        for key, flag in _classify(c, v, csvf, fmt):
            checks[(key, c.name)] = first[("odd", c.name)] & flag
    if odd_columns:  # second pass, over the rows with odd values only
        rows = lf.filter(pl.any_horizontal([first[("odd", c.name)] for c in odd_columns]))
        counts.update(rows.select([f.sum().alias("|".join(k)) for k, f in checks.items()
                                   if k[0] not in ("malformed", "empty")]).collect().row(0, named=True))
    found = [(key, col, flag, counts["|".join((key, col))]) for (key, col), flag in checks.items()
             if counts["|".join((key, col))]]
    if not found and not counts["blank"]:
        return repairs
    flags = {f"{key}|{col}": flag for key, col, flag, _ in found}
    value_columns = list(dict.fromkeys(col for _, col, _, _ in found))
    sample = (lf.filter(pl.any_horizontal(list(flags.values())))
              .select("_line", *[f.alias(k) for k, f in flags.items()],
                      *[pl.col(c).alias(f"v|{c}") for c in value_columns])
              .head(10_000).collect()) if flags else None

    def examples(key: str, col: str, flag: pl.Expr, n: int = 3) -> list[tuple[int, str]]:
        got = [] if sample is None else sample.filter(pl.col(f"{key}|{col}")).select("_line", f"v|{col}").head(n).rows()
        return got or lf.filter(flag).select("_line", pl.col(col)).head(n).collect().rows()

    errors = []
    for key, col, flag, count in found:
        if key not in _FATAL:
            continue
        ex = examples(key, col, flag)
        line, val = ex[0]
        more = f" ({count:,} rows like this; also line(s) {', '.join(str(x[0]) for x in ex[1:])})" if count > 1 else ""
        if key in ("malformed", "empty"):
            raw = _raw_line(src, line)
            got = len(next(csv.reader([raw], delimiter=csvf.separator), []))
            if key == "malformed" or got != len(csvf.header):
                errors.append(f"malformed line {line}: expected {len(csvf.header)} fields (the header's), got "
                              f"{got}: {raw[:120]!r}{more}. Every line needs one value per header column; quote "
                              f"values that contain a {SEPARATOR_NAMES[csvf.separator][:-1]}")
                continue
        errors.append(_FATAL[key].format(col=col, val=val, line=line) + more)
    if errors:
        errors = list(dict.fromkeys(errors))  # a short line leaves several columns empty: say it once
        raise ValueError(f"{csvf.name}: " + f"\n{csvf.name}: ".join(errors))
    for key, col, flag, count in found:
        line, val = examples(key, col, flag, 1)[0]
        if key == "spaces":
            repairs.strip.add(col)
        elif key == "whole_decimal":
            repairs.whole_decimal.add(col)
        elif key == "decimal_comma":
            repairs.decimal_comma.add(col)
        fmt = repairs.date_format.get(col, "%Y-%m-%d")
        repairs.warnings.append(_REPAIRED[key].format(col=col, val=val, line=line, count=count,
                                                      fmt=_DATE_FORMATS.get(fmt, fmt)))
    repairs.blank_rows = int(counts["blank"])
    if counts["inner_blank"]:
        repairs.warnings.append(f"{counts['inner_blank']:,} blank line(s) (no values, or separators only) were "
                                f"skipped, the first is line {counts['first_blank']}")
    return repairs


_FATAL = {
    "malformed": "malformed line {line}",
    "empty": "line {line} has no {col}; every row needs one",
    "scientific": ("{col} {val!r} on line {line} is in scientific notation: a spreadsheet rounded it and the "
                   "exact id is lost; format the column as text (or a number with 0 decimals) and export again"),
    "range": "{col} {val!r} on line {line} is out of range",
    "not_int": "{col} {val!r} on line {line} is not a whole number; fix the value and run again",
    "not_float": "{col} {val!r} on line {line} is not a number; fix the value and run again",
    "not_hex64": ("{col} {val!r} on line {line} is not a customer id of 64 lowercase hex digits as in the "
                  "competition's files (were leading zeros lost, letters changed or the id cut?); copy the "
                  "ids exactly and run again"),
    "time_of_day": ("{col} {val!r} on line {line} has a time of day; the data is daily, so a time other than "
                    "00:00:00 may mean a shifted time zone: write the date alone (YYYY-MM-DD) and run again"),
    "not_date": "{col} {val!r} on line {line} is not a date; write dates as YYYY-MM-DD and run again",
}
_REPAIRED = {
    "spaces": "{count:,} {col} value(s) had spaces around them, which were removed (first: {val!r} on line {line})",
    "whole_decimal": ("{count:,} {col} value(s) were written as decimals, read as whole numbers (first: {val!r} on "
                      "line {line})"),
    "decimal_comma": ("{count:,} {col} value(s) have a decimal comma, read as a decimal point (first: {val!r} on "
                      "line {line})"),
    "date_format": "{count:,} {col} value(s) are written as {fmt} (first: {val!r} on line {line}); read as dates",
    "midnight": ("{count:,} {col} value(s) have a 00:00:00 time, which was dropped: the date is kept (first: "
                 "{val!r} on line {line})"),
}


def _repaired_frame(src: Path, csvf: CsvFile, columns: list[Column], repairs: Repairs) -> pl.LazyFrame:
    """All columns as strings, blank rows dropped, each column parsed with its repairs (strictly)."""
    lf = _scan(src, csvf)
    if repairs.blank_rows:
        lf = lf.filter(~pl.all_horizontal([_is_empty(pl.col(n)) for n in csvf.header]))
    exprs = []
    for c in columns:
        v = pl.col(c.name)
        if c.name in repairs.strip:
            v = v.str.strip_chars()
        if c.kind in ("int32", "int8"):
            if c.name in repairs.whole_decimal:
                v = v.str.replace(r"\.0*$", "")
            v = v.cast(pl.Int64).cast(_DTYPES[c.kind])
        elif c.kind == "float32":
            if c.name in repairs.decimal_comma:
                v = v.str.replace(",", ".", literal=True)
            v = v.cast(pl.Float32)
        elif c.kind == "date":
            fmt = repairs.date_format.get(c.name, "%Y-%m-%d")
            parsed = _date_expr(v.str.strip_chars(), fmt)
            v = pl.when(v.is_null()).then(None).otherwise(parsed).cast(pl.Date)
        else:
            v = _empty_to_null(v)
        exprs.append(v.alias(c.name))
    return lf.select(exprs)
