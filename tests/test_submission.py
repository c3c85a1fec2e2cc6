"""Submission building, formatting, atomic writing and validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hm_utils.ranking.submission import (format_predictions, make_submission, parse_predictions,
                                         read_submission_predictions, validate_submission, write_submission)

POPULAR = np.arange(500, 512)


def customers(n=3):
    return pd.DataFrame({"customer_key": np.arange(n, dtype=np.int32),
                         "customer_id": [f"{i:064x}" for i in range(n)]})


def test_format_and_parse_round_trip_with_leading_zeros():
    mat = np.array([[108775015 + i for i in range(12)]])
    s = format_predictions(mat)
    assert s[0].startswith("0108775015 0108775016 ") and len(s[0]) == 131
    assert parse_predictions(s).tolist() == mat.tolist()
    with pytest.raises(ValueError, match="row 0"):
        format_predictions(np.array([[-1] * 12]))


def test_make_submission_covers_every_customer_and_fills_from_popular():
    # customer 1 has a 2-article list with a repeat; customer 0 nothing; customer 2 a full list
    keys = np.array([2, 1])
    mat = np.array([list(range(1, 13)), [7, 7, -1] + [-1] * 9])
    sub = make_submission(customers(), mat, POPULAR, customer_keys=keys)
    assert sub.columns.tolist() == ["customer_id", "prediction"] and len(sub) == 3
    rows = parse_predictions(sub["prediction"])
    assert rows[0].tolist() == POPULAR.tolist()                 # no history -> popular
    assert rows[1].tolist() == [7] + POPULAR[:11].tolist()      # 7 once, then 11 popular
    assert rows[2].tolist() == list(range(1, 13))
    validate_submission(sub, customers())


def test_write_submission_is_atomic_and_validates(tmp_path):
    path = tmp_path / "submission.csv"
    sub = make_submission(customers(), np.zeros((0, 12), int), POPULAR, customer_keys=np.zeros(0, int))
    write_submission(sub, path)
    assert not list(tmp_path.glob(".*tmp*"))
    validate_submission(path, customers(), articles=pd.DataFrame({"article_id": POPULAR}))
    text = path.read_text().splitlines()
    assert text[0] == "customer_id,prediction" and text[1].split(",")[1].split()[0] == "0000000500"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.loc[1, "prediction"].rsplit(" ", 1)[0], r"row 2 .*11 predictions instead of 12"),
    (lambda d: d.loc[1, "prediction"].replace("0000000501", "501"), r"row 2 .*bad article id format '501'"),
    (lambda d: d.loc[1, "prediction"].replace("0000000501", "0000000500"), r"row 2 .*0000000500 predicted more than once"),
    (lambda d: d.loc[1, "prediction"].replace("0000000501", "0000009999"), r"row 2 .*unknown article 0000009999"),
])
def test_validator_reports_the_first_bad_row(mutate, message):
    sub = make_submission(customers(), np.zeros((0, 12), int), POPULAR, customer_keys=np.zeros(0, int))
    sub.loc[1, "prediction"] = mutate(sub)
    with pytest.raises(ValueError, match=message):
        validate_submission(sub, customers(), articles=pd.DataFrame({"article_id": POPULAR}))


def test_validator_catches_duplicate_unknown_and_missing_customers():
    sub = make_submission(customers(), np.zeros((0, 12), int), POPULAR, customer_keys=np.zeros(0, int))
    dup = pd.concat([sub, sub.iloc[[0]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"row 4 .*duplicate customer \(first seen in row 1\)"):
        validate_submission(dup, customers())
    with pytest.raises(ValueError, match=r"row 1 .*not in customers.csv"):
        validate_submission(sub, customers().iloc[1:])
    with pytest.raises(ValueError, match="1 customers of customers.csv have no row"):
        validate_submission(sub.iloc[:2], customers())
    with pytest.raises(ValueError, match="columns must be"):
        validate_submission(sub.rename(columns={"prediction": "pred"}), customers())


def test_read_submission_predictions_partial_file_repeats_allowed_bad_rows_named(tmp_path):
    # customers 2 and 0 (customer 1 missing: allowed for an input list); customer 0 repeats 501
    sub = make_submission(customers(), np.zeros((0, 12), int), POPULAR, customer_keys=np.zeros(0, int))
    sub = sub.iloc[[2, 0]].reset_index(drop=True)
    sub.loc[1, "prediction"] = sub.loc[1, "prediction"].replace("0000000500", "0000000501")
    path = write_submission(sub, tmp_path / "s.csv")
    keys, mat = read_submission_predictions(path, customers())
    assert keys.tolist() == [2, 0] and mat.dtype == np.int64
    assert mat[0].tolist() == POPULAR.tolist() and mat[1].tolist() == [501, 501] + POPULAR[2:].tolist()
    with pytest.raises(ValueError, match=r"s.csv: row 1 .*not in customers.csv"):
        read_submission_predictions(path, customers().iloc[:2])
    bad = sub.copy()
    bad.loc[0, "prediction"] = bad.loc[0, "prediction"][:-1]
    write_submission(bad, tmp_path / "bad.csv")
    with pytest.raises(ValueError, match=r"bad.csv: row 1 .*bad article id format '000000051'"):
        read_submission_predictions(tmp_path / "bad.csv", customers())


def test_fallback_too_short_is_an_error():
    with pytest.raises(ValueError, match="fallback list has only 3"):
        make_submission(customers(), np.zeros((0, 12), int), [1, 2, 3], customer_keys=np.zeros(0, int))


def test_real_excerpt_gets_a_valid_submission_for_every_customer(hm_sample, tmp_path):
    from hm_utils.data.loading import read_articles_csv, read_customers_csv, read_transactions_csv
    from hm_utils.ranking.rankers import RepurchaseRanker

    arts = read_articles_csv(hm_sample)
    cust = read_customers_csv(hm_sample)
    tx = read_transactions_csv(hm_sample, cust, arts, progress=False).to_pandas()
    assert len(cust) == 4946
    r = RepurchaseRanker().fit(tx)
    keys = cust["customer_key"].to_numpy()
    sub = make_submission(cust, r.predict(keys), r.popular_, customer_keys=keys)
    path = write_submission(sub, tmp_path / "submission.csv")
    validate_submission(path, cust, arts)
    assert len(pd.read_csv(path)) == 4946
