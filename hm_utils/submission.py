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

from .config import ARTICLE_ID, CUSTOMER_ID, CUSTOMER_KEY, PREDICTION, SUBMISSION_K
from .metrics import PAD, as_prediction_matrix
from .ranking import fill_with_popular
from .storage import write_csv

ID_DIGITS = 10
_ROW_BYTES = SUBMISSION_K * (ID_DIGITS + 1) - 1  # 12 ids + 11 spaces = 131


def format_predictions(matrix) -> np.ndarray:
    """int matrix [n, 12] of article ids (0 <= id < 10**10) -> object array [n] of
    ``"0XXXXXXXXX 0XXXXXXXXX ..."`` strings (131 characters each)."""
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
    flat = np.ascontiguousarray(buf.reshape(n, -1)[:, :_ROW_BYTES])
    return flat.view(f"S{_ROW_BYTES}").ravel().astype(str).astype(object)


def parse_predictions(strings) -> np.ndarray:
    """Inverse of :func:`format_predictions` for well-formed strings: int64 [n, 12]."""
    arr = np.asarray(pd.Series(strings).astype(str).to_numpy().astype(f"S{_ROW_BYTES}"))
    b = arr.view(np.uint8).reshape(len(arr), _ROW_BYTES)
    b = np.concatenate([b, np.full((len(arr), 1), ord(" "), np.uint8)], axis=1).reshape(len(arr), SUBMISSION_K, -1)
    digits = b[:, :, :ID_DIGITS].astype(np.int64) - ord("0")
    return (digits * (10 ** np.arange(ID_DIGITS - 1, -1, -1, dtype=np.int64))).sum(axis=2)


def make_submission(customers: pd.DataFrame, predictions, popular, customer_keys=None,
                    k: int = SUBMISSION_K) -> pd.DataFrame:
    """One submission row per customer of ``customers``.

    Inputs: ``customers`` with ``customer_key`` and ``customer_id`` (all of
    customers.csv); ``predictions``: int matrix [n, <=12] with
    ``customer_keys`` [n] (or any form :func:`hm_utils.metrics.as_prediction_matrix`
    accepts); ``popular``: int [>=12] article ids used for customers without a
    prediction and to complete short or repeated lists to 12 distinct ids.
    Output: DataFrame ``customer_id`` (str), ``prediction`` (str), in the
    order of ``customers``.
    """
    for c in (CUSTOMER_KEY, CUSTOMER_ID):
        if c not in customers.columns:
            raise ValueError(f"customers frame is missing column {c!r}; has {list(customers.columns)}")
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
        raise ValueError(f"the fallback list has only {len(np.unique(popular))} distinct articles; "
                         f"{k} are needed to complete every customer's list")
    return pd.DataFrame({CUSTOMER_ID: customers[CUSTOMER_ID].astype(str).to_numpy(),
                         PREDICTION: format_predictions(filled)})


def write_submission(df: pd.DataFrame, path) -> Path:
    """Write a submission frame to ``path`` atomically (temporary name, then rename)."""
    return write_csv(df[[CUSTOMER_ID, PREDICTION]], path)


def _fail(row: int, customer, what: str, where: str):
    raise ValueError(f"{where}: row {row} (customer {customer}): {what}")


def validate_submission(submission, customers: pd.DataFrame, articles: pd.DataFrame | None = None,
                        distinct: bool = True) -> None:
    """Check a submission; raise ValueError describing the first bad row.

    ``submission``: a path to the CSV or a DataFrame. ``customers``: the
    customers (column ``customer_id``); ``articles`` (optional, column
    ``article_id``): every predicted id must be one of them. Checked, in this
    order: the two columns; each row's customer is known and appears once;
    the prediction is exactly 12 ids of 10 digits separated by single spaces;
    (``distinct``) no id twice in a row; (``articles``) every id is a known
    article; finally, no customer of ``customers`` is missing. Rows are
    numbered from 1 as data lines of the file (the header is line 0).
    """
    where = str(submission) if not isinstance(submission, pd.DataFrame) else "submission"
    if isinstance(submission, pd.DataFrame):
        df = submission
    else:
        df = pd.read_csv(submission, dtype=str, keep_default_na=False)
    if list(df.columns) != [CUSTOMER_ID, PREDICTION]:
        raise ValueError(f"{where}: columns must be {[CUSTOMER_ID, PREDICTION]}; found {list(df.columns)}")
    cust = df[CUSTOMER_ID].astype(str)
    pred = df[PREDICTION].astype(str)
    known_customers = pd.Index(customers[CUSTOMER_ID].astype(str))
    unknown = ~cust.isin(known_customers).to_numpy()
    dup = cust.duplicated().to_numpy()
    pattern = rf"[0-9]{{{ID_DIGITS}}}( [0-9]{{{ID_DIGITS}}}){{{SUBMISSION_K - 1}}}"
    bad_format = ~pred.str.fullmatch(pattern).fillna(False).to_numpy(bool)
    problems = unknown | dup | bad_format
    repeated = np.zeros(len(df), bool)
    unknown_article = np.zeros(len(df), bool)
    ids = None
    ok_rows = np.nonzero(~bad_format)[0]
    if len(ok_rows):
        ids = parse_predictions(pred.to_numpy()[ok_rows])
        if distinct:
            from .ranking import first_in_row
            repeated[ok_rows] = ~first_in_row(ids).all(axis=1)
        if articles is not None:
            known_art = np.unique(articles[ARTICLE_ID].to_numpy(np.int64))
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
        miss = row_ids[~np.isin(row_ids, np.unique(articles[ARTICLE_ID].to_numpy(np.int64)))]
        _fail(r + 1, c, f"unknown article {int(miss[0]):010d} (not in articles.csv)", where)
    missing = ~known_customers.isin(cust)
    if missing.any():
        raise ValueError(f"{where}: {int(missing.sum())} customers of customers.csv have no row, "
                         f"e.g. {known_customers[np.argmax(missing)]}")
