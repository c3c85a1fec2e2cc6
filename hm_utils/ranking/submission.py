"""The competition's submission file: build it, write it atomically, validate it.

Format (``submission.csv``)::

    customer_id,prediction
    00000dbacae5abe5e23885899a1fa44253a17956c6d1c3d25f88aa139fdfc657,0706016001 0706016002 ...

one row for every customer of ``customers.csv``; ``prediction`` is 12
space-separated 10-digit zero-padded article ids. Formatting and parsing are
vectorized through fixed-width byte arrays (every id is exactly 10 ASCII
digits), so 1.37 million rows take seconds, not minutes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.checks import require_columns
from hm_utils.core.config import ARTICLE_ID, CUSTOMER_ID, CUSTOMER_KEY, PREDICTION, SUBMISSION_K
from hm_utils.core.lists import PAD, fill_with_popular
from hm_utils.core.metrics import as_prediction_matrix
from hm_utils.core.storage import atomic_path

ID_DIGITS = 10
_ROW_BYTES = SUBMISSION_K * (ID_DIGITS + 1) - 1  # 12 ids + 11 spaces = 131


def format_predictions(matrix) -> pd.Series:
    """int matrix [n, 12] of article ids (0 <= id < 10**10) -> str Series [n] of
    ``"0XXXXXXXXX 0XXXXXXXXX ..."`` (131 characters each). The digits are written
    into one uint8 buffer and wrapped as an Arrow string array without a copy."""
    mat = np.asarray(matrix, dtype=np.int64)
    if mat.ndim != 2 or mat.shape[1] != SUBMISSION_K:
        raise ValueError(f"prediction matrix must be [n, {SUBMISSION_K}]; got shape {mat.shape}")
    if mat.size and (mat.min() < 0 or mat.max() >= 10 ** ID_DIGITS):
        r = int(np.argmax(((mat < 0) | (mat >= 10 ** ID_DIGITS)).any(axis=1)))
        raise ValueError(f"prediction row {r} holds an id that is not a 10-digit article id: {mat[r].tolist()}")
    n = mat.shape[0]
    buf = np.full((n, SUBMISSION_K, ID_DIGITS + 1), ord(" "), dtype=np.uint8)
    rest = mat.copy()
    for p in range(ID_DIGITS - 1, -1, -1):
        buf[:, :, p] = (rest % 10 + ord("0")).astype(np.uint8)
        rest //= 10
    flat = np.ascontiguousarray(buf.reshape(n, -1)[:, :_ROW_BYTES]).reshape(-1)
    offsets = np.arange(n + 1, dtype=np.int64) * _ROW_BYTES
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(flat))
    return pd.Series(arr.to_pandas(), name=PREDICTION)


def _as_arrow_strings(strings) -> pa.LargeStringArray:
    arr = pa.array(pd.Series(strings, dtype="str").to_numpy(dtype=object)) if not isinstance(strings, pd.Series) \
        else pa.array(strings.astype("str"))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.large_string())


def parse_predictions(strings) -> np.ndarray:
    """Inverse of :func:`format_predictions`: int64 [n, 12] from well-formed strings
    (exactly 12 ten-digit ids separated by single spaces; check with the validator first)."""
    arr = _as_arrow_strings(strings)
    n = len(arr)
    if n == 0:
        return np.zeros((0, SUBMISSION_K), np.int64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + n + 1]
    if (np.diff(offsets) != _ROW_BYTES).any():
        r = int(np.argmax(np.diff(offsets) != _ROW_BYTES))
        raise ValueError(f"prediction {r} is not {_ROW_BYTES} characters long: {arr[r].as_py()!r}")
    rows = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[0] + n * _ROW_BYTES].reshape(n, -1)
    out = np.zeros((n, SUBMISSION_K), np.int64)
    for p in range(ID_DIGITS):  # digit p of id j sits in column j * 11 + p
        out *= 10
        out += rows[:, p::ID_DIGITS + 1] - ord("0")
    return out


def make_submission(customers: pd.DataFrame, predictions, popular, customer_keys=None,
                    k: int = SUBMISSION_K) -> pd.DataFrame:
    """One submission row per customer of ``customers``.

    Inputs: ``customers`` with ``customer_key`` and ``customer_id`` (all of
    customers.csv); ``predictions``: int matrix [n, <=12] with
    ``customer_keys`` [n] (or any form :func:`hm_utils.core.metrics.as_prediction_matrix`
    accepts); ``popular``: int [>=12] article ids used for customers without a
    prediction and to complete short or repeated lists to 12 distinct ids.
    Output: DataFrame ``customer_id`` (str), ``prediction`` (str), in the
    order of ``customers``.
    """
    require_columns(customers, (CUSTOMER_KEY, CUSTOMER_ID), "customers frame")
    keys, mat = as_prediction_matrix(predictions, customer_keys, k)
    all_keys = customers[CUSTOMER_KEY].to_numpy(np.int64)
    full = np.full((len(all_keys), k), PAD, np.int64)
    if len(keys):
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        pos = np.searchsorted(sk, all_keys)
        pos_c = np.minimum(pos, len(sk) - 1)
        found = sk[pos_c] == all_keys
        full[found] = mat[order[pos_c[found]]]
    popular = np.asarray(popular, np.int64)
    filled = fill_with_popular(full, popular, k)
    if (filled == PAD).any():
        raise ValueError(f"the fallback list has only {len(sorted_unique(popular))} distinct articles; "
                         f"{k} are needed to complete every customer's list")
    return pd.DataFrame({CUSTOMER_ID: customers[CUSTOMER_ID].astype("str").reset_index(drop=True),
                         PREDICTION: format_predictions(filled)})


def write_submission(df: pd.DataFrame, path) -> Path:
    """Write a submission frame to ``path`` atomically (temporary name, then rename):
    the header ``customer_id,prediction`` and one unquoted line per row (Arrow's CSV writer)."""
    table = pa.table({CUSTOMER_ID: pa.array(df[CUSTOMER_ID].astype("str")),
                      PREDICTION: pa.array(df[PREDICTION].astype("str"))})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(f"{CUSTOMER_ID},{PREDICTION}\n".encode())
            pacsv.write_csv(table, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    return Path(path)


def read_submission(path) -> pd.DataFrame:
    """The submission CSV at ``path`` as a DataFrame of two str columns ``customer_id``,
    ``prediction`` (nothing checked but that Arrow can read it; a file Arrow cannot read is
    a ValueError naming it). The one reader of submission files: :func:`validate_submission`
    and :func:`read_submission_predictions` both go through it."""
    try:
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={CUSTOMER_ID: pa.string(), PREDICTION: pa.string()}, strings_can_be_null=False))
    except pa.ArrowInvalid as err:
        raise ValueError(f"{path}: not a readable submission CSV: {err}") from None
    return table.to_pandas()


def read_submission_predictions(path, customers: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A submission CSV as prediction rows keyed by ``customer_key`` (from ``customers``).

    Read with :func:`read_submission` and checked row by row as :func:`validate_submission`
    does (known customers, each once, 12 ten-digit ids), except that a row may repeat an id
    and customers may be missing (an input list for ensembling need not be complete).
    Output: ``(customer_keys int64 [n], matrix int64 [n, 12])`` in the file's row order.
    """
    df = read_submission(path)
    _check_rows(df, customers, None, distinct=False, complete=False, where=str(path))
    known = pd.Index(customers[CUSTOMER_ID].astype("str"))
    keys = customers[CUSTOMER_KEY].to_numpy(np.int64)[known.get_indexer(df[CUSTOMER_ID].astype("str"))]
    return keys, parse_predictions(df[PREDICTION])


def _fail(row: int, customer, what: str, where: str):
    raise ValueError(f"{where}: row {row} (customer {customer}): {what}")


def validate_submission(submission, customers: pd.DataFrame, articles: pd.DataFrame | None = None,
                        distinct: bool = True) -> None:
    """Check a submission; raise ValueError describing the first bad row.

    ``submission``: a path to the CSV (read by :func:`read_submission`) or a DataFrame.
    ``customers``: the customers (column ``customer_id``); ``articles`` (optional, column
    ``article_id``): every predicted id must be one of them. Checked, in this
    order: the two columns; each row's customer is known and appears once;
    the prediction is exactly 12 ids of 10 digits separated by single spaces;
    (``distinct``) no id twice in a row; (``articles``) every id is a known
    article; finally, no customer of ``customers`` is missing. Rows are
    numbered from 1 as data lines of the file (the header is line 0).
    """
    where = str(submission) if not isinstance(submission, pd.DataFrame) else "submission"
    df = submission if isinstance(submission, pd.DataFrame) else read_submission(submission)
    _check_rows(df, customers, articles, distinct, complete=True, where=where)


def _check_rows(df: pd.DataFrame, customers: pd.DataFrame, articles: pd.DataFrame | None, distinct: bool,
                complete: bool, where: str) -> None:
    """The checks of :func:`validate_submission`; ``complete``: every customer must have a row."""
    if list(df.columns) != [CUSTOMER_ID, PREDICTION]:
        raise ValueError(f"{where}: columns must be {[CUSTOMER_ID, PREDICTION]}; found {list(df.columns)}")
    cust = df[CUSTOMER_ID].astype("str").reset_index(drop=True)
    pred = df[PREDICTION].astype("str").reset_index(drop=True)
    cust_pa, pred_pa = _as_arrow_strings(cust), _as_arrow_strings(pred)
    known_pa = _as_arrow_strings(customers[CUSTOMER_ID].astype("str"))
    unknown = ~pc.is_in(cust_pa, value_set=known_pa).to_numpy(zero_copy_only=False)
    dup = cust.duplicated().to_numpy()
    pattern = rf"^[0-9]{{{ID_DIGITS}}}( [0-9]{{{ID_DIGITS}}}){{{SUBMISSION_K - 1}}}$"
    bad_format = ~pc.match_substring_regex(pred_pa, pattern).to_numpy(zero_copy_only=False)
    problems = unknown | dup | bad_format
    repeated = np.zeros(len(df), bool)
    unknown_article = np.zeros(len(df), bool)
    ids = None
    ok_rows = np.nonzero(~bad_format)[0]
    if len(ok_rows):
        ids = parse_predictions(pred.iloc[ok_rows])
        if distinct:
            from hm_utils.core.lists import first_in_row
            repeated[ok_rows] = ~first_in_row(ids).all(axis=1)
        if articles is not None:
            known_art = sorted_unique(articles[ARTICLE_ID].to_numpy(np.int64))
            unknown_article[ok_rows] = ~np.isin(ids, known_art).all(axis=1)
    problems |= repeated | unknown_article
    if problems.any():
        r = int(np.argmax(problems))
        c = cust.iloc[r]
        if unknown[r]:
            _fail(r + 1, c, "customer_id is not in customers.csv", where)
        if dup[r]:
            first = int(np.argmax((cust == c).to_numpy())) + 1
            _fail(r + 1, c, f"duplicate customer (first seen in row {first})", where)
        if bad_format[r]:
            tokens = pred.iloc[r].split(" ")
            if len(tokens) != SUBMISSION_K:
                _fail(r + 1, c, f"{len(tokens)} predictions instead of {SUBMISSION_K}: {pred.iloc[r]!r}", where)
            badtok = next((t for t in tokens if not (len(t) == ID_DIGITS and t.isdigit())), pred.iloc[r])
            _fail(r + 1, c, f"bad article id format {badtok!r} (need {ID_DIGITS} digits, single spaces)", where)
        row_ids = ids[np.searchsorted(ok_rows, r)]
        if repeated[r]:
            vals, cnt = np.unique(row_ids, return_counts=True)
            _fail(r + 1, c, f"article {int(vals[cnt > 1][0]):010d} predicted more than once", where)
        miss = row_ids[~np.isin(row_ids, sorted_unique(articles[ARTICLE_ID].to_numpy(np.int64)))]
        _fail(r + 1, c, f"unknown article {int(miss[0]):010d} (not in articles.csv)", where)
    missing = ~pc.is_in(known_pa, value_set=cust_pa).to_numpy(zero_copy_only=False) if complete else None
    if complete and missing.any():
        raise ValueError(f"{where}: {int(missing.sum())} customers of customers.csv have no row, "
                         f"e.g. {known_pa[int(np.argmax(missing))].as_py()}")
