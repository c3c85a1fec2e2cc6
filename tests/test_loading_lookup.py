"""CustomerLookup.scan: the keys of read_customers_csv, read lazily from the customers' file."""
from __future__ import annotations

import warnings

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from hm_utils.core import config as C
from hm_utils.core.workdir import load_customers, load_transactions
from hm_utils.data.csv_columns import DataWarning
from hm_utils.data.loading import CustomerLookup, prepare_data, read_customers_csv, read_transactions_csv
from tests.test_loading import _cid, write_mini

IDS = [_cid(3), _cid(0), _cid(9), _cid(2), _cid(1), "f" * 63 + "e"]  # the last one is in no customers file


def _keys(lookup: CustomerLookup) -> list:
    return lookup(pa.array(IDS)).to_pylist()


def _customer_lines(d) -> list[str]:
    return (d / "customers.csv").read_text().splitlines()


def test_scan_holds_no_ids_and_gives_the_keys_of_read_customers_csv(tmp_path):
    d = write_mini(tmp_path / "data")
    lines = _customer_lines(d)  # customers 0, 1, 2; add 3 then 0 again (dropped: first kept)
    (d / "customers.csv").write_text("\n".join(lines + [lines[1].replace(_cid(0), _cid(3)), lines[1]]) + "\n")
    with pytest.warns(DataWarning, match=r"customers\.csv: 1 duplicate customer_id rows dropped \(first kept\)"):
        lookup = CustomerLookup.scan(d)
    assert isinstance(lookup.frame, pl.LazyFrame)  # nothing of the file is held
    assert lookup.competition_ids
    assert _keys(lookup) == [3, 0, None, 2, 1, None]  # worked out by hand: file order, duplicate skipped
    with pytest.warns(DataWarning):
        assert _keys(CustomerLookup(read_customers_csv(d))) == [3, 0, None, 2, 1, None]


def test_scan_of_a_parquet_copy(tmp_path):
    d = write_mini(tmp_path / "data")
    pd.read_csv(d / "customers.csv", dtype=str).iloc[::-1].to_parquet(d / "customers.parquet")
    (d / "customers.csv").unlink()
    lookup = CustomerLookup.scan(d)
    assert isinstance(lookup.frame, pl.LazyFrame)
    assert _keys(lookup) == [None, 2, None, 0, 1, None]  # rows reversed: customer 2 is row 0


def test_scan_falls_back_to_the_full_read_with_its_warnings_and_errors(tmp_path):
    d = write_mini(tmp_path / "data")
    lines = _customer_lines(d)
    (d / "customers.csv").write_text("\n".join(line.replace(",", ";") for line in lines) + "\n")
    with pytest.warns(DataWarning, match="separated by"):
        lookup = CustomerLookup.scan(d)
    assert isinstance(lookup.frame, pl.DataFrame)  # read by read_customers_csv
    assert _keys(lookup) == [None, 0, None, 2, 1, None]
    # an id that is not 64 hex digits among ones that are: read_customers_csv's error, naming the line
    (d / "customers.csv").write_text("\n".join(lines[:3] + [lines[3].replace(_cid(2), "abc")]) + "\n")
    with pytest.raises(ValueError, match=r"customers\.csv: customer_id 'abc' on line 4"):
        read_customers_csv(d)
    with pytest.raises(ValueError, match=r"customers\.csv: customer_id 'abc' on line 4"):
        CustomerLookup.scan(d)
    # an empty id: the same error as read_customers_csv
    (d / "customers.csv").write_text("\n".join(lines[:2] + ["," + lines[2].split(",", 1)[1]]) + "\n")
    with pytest.raises(ValueError) as full:
        read_customers_csv(d)
    with pytest.raises(ValueError) as scanned:
        CustomerLookup.scan(d)
    assert str(scanned.value) == str(full.value) and "line 3" in str(full.value)


def test_scan_of_other_id_forms(tmp_path):
    d = write_mini(tmp_path / "data")
    (d / "customers.csv").write_text("customer_id,FN,Active,club_member_status,fashion_news_frequency,age,"
                                     "postal_code\nC-7,,,,,,\nC-3,,,,,,\n")
    lookup = CustomerLookup.scan(d)
    assert isinstance(lookup.frame, pl.LazyFrame) and not lookup.competition_ids
    assert lookup(pa.array(["C-3", "C-9", "C-7"])).to_pylist() == [1, None, 0]


def test_transactions_through_scan_equal_those_through_the_customers_table(hm_sample):
    by_table = read_transactions_csv(hm_sample, read_customers_csv(hm_sample), progress=False)
    by_scan = read_transactions_csv(hm_sample, CustomerLookup.scan(hm_sample), progress=False)
    assert by_scan.schema == by_table.schema
    assert by_scan.num_rows == by_table.num_rows == 5000
    assert by_scan.equals(by_table)


def test_prepare_data_keys_match_customers_parquet_with_duplicates(tmp_path):
    tx = ("t_dat,customer_id,article_id,price,sales_channel_id\n"
          f"2020-09-01,{_cid(3)},0108775015,0.05,2\n"
          f"2020-09-02,{_cid(1)},0108775044,0.05,1\n")
    d = write_mini(tmp_path / "data", transactions=tx)
    lines = _customer_lines(d)
    (d / "customers.csv").write_text("\n".join(lines[:2] + [lines[1], lines[1].replace(_cid(0), _cid(3))]
                                               + lines[2:]) + "\n")  # ids 0, 0 (dropped), 3, 1, 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        summary = prepare_data(d, tmp_path / "work", progress=False)
    dup = [w for w in caught if "duplicate customer_id" in str(w.message)]
    assert len(dup) == 1  # said once, by read_customers_csv
    assert summary["warnings"] == []  # the summary keeps the transactions' warnings, as before
    cust = load_customers(tmp_path / "work")
    trans = load_transactions(tmp_path / "work")
    assert cust[C.CUSTOMER_ID].tolist() == [_cid(0), _cid(3), _cid(1), _cid(2)]
    assert trans[C.CUSTOMER_KEY].tolist() == [1, 2]
    assert cust[C.CUSTOMER_ID].to_numpy()[trans[C.CUSTOMER_KEY].to_numpy()].tolist() == [_cid(3), _cid(1)]
