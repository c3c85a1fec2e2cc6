"""Loading and converting the competition files: exact ids, dtypes, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hm_utils.core import config as C
from hm_utils.core.workdir import load_articles, load_customers, load_images, load_transactions
from hm_utils.data.csv_columns import DataWarning
from hm_utils.data.loading import (find_images, prepare_data, read_articles_csv, read_customers_csv,
                                   read_transactions_csv)

HEX = "0123456789abcdef"


def _cid(i: int) -> str:
    return (HEX[i % 16] * 64)


def write_mini(folder: Path, transactions: str | None = None, drop_article_column: str | None = None) -> Path:
    """A 3-article, 3-customer dataset in the competition layout, written by hand."""
    folder.mkdir(parents=True, exist_ok=True)
    header = list(C.ARTICLE_COLUMNS)
    rows = []
    for aid, code, group in [("0108775015", "0108775", "Garment Upper body"),
                             ("0108775044", "0108775", "Garment Upper body"),
                             ("0110065001", "0110065", "Underwear")]:
        row = {c: "1" for c in header}
        row.update(article_id=aid, product_code=code, product_group_name=group, prod_name="Strap top",
                   index_code="A", detail_desc='"Jersey top, with narrow straps."')
        for c in C.ARTICLE_COLUMNS:
            if c.endswith("_name") and c not in ("product_group_name",):
                row[c] = "Name"
        rows.append(",".join(row[c] for c in header))
    if drop_article_column:
        i = header.index(drop_article_column)
        header.pop(i)
        rows = [",".join(r.split(",")[:i] + r.split(",")[i + 1:]) for r in rows]
    (folder / "articles.csv").write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")
    cust = ["customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code"]
    for i in range(3):
        cust.append(f"{_cid(i)},1.0,,ACTIVE,NONE,{30 + i}.0,{_cid(9)}")
    (folder / "customers.csv").write_text("\n".join(cust) + "\n")
    if transactions is None:
        transactions = (
            "t_dat,customer_id,article_id,price,sales_channel_id\n"
            f"2020-09-01,{_cid(0)},0108775015,0.0508,2\n"
            f"2020-09-02,{_cid(0)},108775044,0.0254,1\n"   # no leading zero: same article as 0108775044
            f"2020-09-03,{_cid(1)},0110065001,0.0169,2\n"
        )
    (folder / "transactions_train.csv").write_text(transactions)
    img = folder / "images" / "010"
    img.mkdir(parents=True, exist_ok=True)
    (img / "0108775015.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    return folder


def test_hm_sample_reads_exactly(hm_sample, tmp_path):
    summary = prepare_data(hm_sample, tmp_path)
    assert (summary["n_articles"], summary["n_customers"], summary["n_transactions"], summary["n_images"]) == \
        (1000, 4946, 5000, 100)
    assert summary["has_sales_channel"] is False  # the excerpt has no sales_channel_id column
    tx = load_transactions(tmp_path)
    assert list(tx.columns) == [C.T_DAT, C.CUSTOMER_KEY, C.ARTICLE_ID, C.PRICE, C.SALES_CHANNEL_ID]
    assert tx[C.SALES_CHANNEL_ID].isna().all()
    assert str(tx[C.T_DAT].dtype).startswith("datetime64")
    assert tx[C.CUSTOMER_KEY].dtype == np.int32 and tx[C.ARTICLE_ID].dtype == np.int32
    assert tx[C.PRICE].dtype == np.float32
    # ids round-trip: every article id in the CSV comes back zero-padded identically
    raw = pd.read_csv(hm_sample / "articles.csv", dtype=str)[C.ARTICLE_ID]
    arts = load_articles(tmp_path)
    assert [C.format_article_id(a) for a in arts[C.ARTICLE_ID]] == raw.tolist()
    cust = load_customers(tmp_path)
    raw_c = pd.read_csv(hm_sample / "customers.csv", dtype=str)[C.CUSTOMER_ID]
    assert cust[C.CUSTOMER_ID].tolist() == raw_c.tolist()
    assert cust[C.CUSTOMER_KEY].tolist() == list(range(4946))
    images = load_images(tmp_path)
    assert images[C.HAS_IMAGE].sum() == 100
    assert all(Path(p).is_file() for p in images.loc[images[C.HAS_IMAGE], "abs_path"])
    assert images[C.IMAGE_PATH].str.fullmatch(r"images/0\d\d/0\d{9}\.jpg").all()


def test_leading_zeros_and_dtypes(tmp_path):
    d = write_mini(tmp_path / "data")
    arts = read_articles_csv(d)
    assert arts[C.ARTICLE_ID].tolist() == [108775015, 108775044, 110065001]
    assert arts[C.PRODUCT_CODE].tolist() == [108775, 108775, 110065]
    assert arts["detail_desc"].iloc[0] == "Jersey top, with narrow straps."
    cust = read_customers_csv(d)
    tx = read_transactions_csv(d, cust, arts, progress=False).to_pandas()
    # '108775044' (no leading zero) is the same article as '0108775044'
    assert tx[C.ARTICLE_ID].tolist() == [108775015, 108775044, 110065001]
    assert tx[C.CUSTOMER_KEY].tolist() == [0, 0, 1]
    assert tx[C.SALES_CHANNEL_ID].tolist() == [2, 1, 2]
    assert C.format_article_id(tx[C.ARTICLE_ID].iloc[1]) == "0108775044"


def test_missing_file_names_file_and_layout(tmp_path):
    d = write_mini(tmp_path / "data")
    (d / "customers.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"customers\.csv.*competition layout"):
        prepare_data(d, tmp_path / "work")


def test_missing_column_names_column_and_file(tmp_path):
    d = write_mini(tmp_path / "data", drop_article_column="colour_group_code")
    with pytest.raises(ValueError, match=r"articles\.csv.*colour_group_code"):
        read_articles_csv(d)
    d2 = write_mini(tmp_path / "data2", transactions="t_dat,customer_id,price\n2020-09-01,x,0.1\n")
    with pytest.raises(ValueError, match=r"transactions_train\.csv.*article_id"):
        prepare_data(d2, tmp_path / "work")


def test_unknown_articles_and_customers_are_dropped_with_counted_warning(tmp_path):
    tx = ("t_dat,customer_id,article_id,price,sales_channel_id\n"
          f"2020-09-01,{_cid(0)},0108775015,0.05,2\n"
          f"2020-09-01,{_cid(0)},0999999001,0.05,2\n"
          f"2020-09-01,{_cid(1)},0999999002,0.05,2\n"
          f"2020-09-02,{'f' * 63 + 'e'},0108775015,0.05,1\n")
    d = write_mini(tmp_path / "data", transactions=tx)
    with pytest.warns(DataWarning) as record:
        summary = prepare_data(d, tmp_path / "work", progress=False)
    messages = " | ".join(str(w.message) for w in record)
    assert "2 transaction rows name an article_id missing" in messages
    assert "1 transaction rows name a customer_id missing" in messages
    assert summary["n_transactions"] == 1
    assert len(summary["warnings"]) == 2


def test_malformed_line_gives_line_number(tmp_path):
    tx = ("t_dat,customer_id,article_id,price,sales_channel_id\n"
          f"2020-09-01,{_cid(0)},0108775015,0.05,2\n"
          f"2020-09-01,{_cid(0)},0108775015,0.05,2,EXTRA\n")
    d = write_mini(tmp_path / "data", transactions=tx)
    with pytest.raises(ValueError, match=r"transactions_train\.csv: malformed line 3"):
        prepare_data(d, tmp_path / "work", progress=False)


def test_bad_value_is_reported(tmp_path):
    tx = ("t_dat,customer_id,article_id,price,sales_channel_id\n"
          f"2020-09-01,{_cid(0)},0108775015,0.05,2\n"
          f"2020-09-01,{_cid(0)},ABC,0.05,2\n")
    d = write_mini(tmp_path / "data", transactions=tx)
    with pytest.raises(ValueError, match=r"transactions_train\.csv.*ABC.*line 3"):
        prepare_data(d, tmp_path / "work", progress=False)


def test_failed_run_leaves_earlier_outputs_intact(tmp_path):
    d = write_mini(tmp_path / "data")
    work = tmp_path / "work"
    prepare_data(d, work, progress=False)
    before = {p.name: p.read_bytes() for p in work.glob("*.parquet")}
    (d / "transactions_train.csv").write_text("t_dat,customer_id,article_id,price\n2020-09-01,x,1,0.1,EXTRA\n")
    with pytest.raises(ValueError):
        prepare_data(d, work, progress=False)
    after = {p.name: p.read_bytes() for p in work.glob("*.parquet")}
    assert before == after
    assert not list(work.glob(".*tmp*"))  # no temporary leftovers


def test_parquet_copy_is_read(tmp_path):
    d = write_mini(tmp_path / "data")
    raw = pd.read_csv(d / "transactions_train.csv", dtype=str)
    raw.to_parquet(d / "transactions_train.parquet")
    (d / "transactions_train.csv").unlink()
    cust = read_customers_csv(d)
    tx = read_transactions_csv(d, cust, read_articles_csv(d), progress=False).to_pandas()
    assert tx[C.ARTICLE_ID].tolist() == [108775015, 108775044, 110065001]
    assert str(tx[C.T_DAT].iloc[0]) == "2020-09-01"


def test_find_images_flags_presence(tmp_path):
    d = write_mini(tmp_path / "data")
    img = find_images(d, [108775015, 108775044])
    assert img[C.HAS_IMAGE].tolist() == [True, False]
    assert img[C.IMAGE_PATH].tolist() == ["images/010/0108775015.jpg", "images/010/0108775044.jpg"]


def test_customer_lookup_fast_path_matches_hash_lookup():
    import pyarrow as pa

    from hm_utils.data.loading import CustomerLookup
    rng = np.random.default_rng(0)
    ids = ["".join(rng.choice(list(HEX), 64)) for _ in range(500)]
    customers = pd.DataFrame({C.CUSTOMER_KEY: np.arange(500, dtype=np.int32), C.CUSTOMER_ID: ids})
    lookup = CustomerLookup(customers)
    assert lookup.competition_ids
    twin = ids[7][:16] + ("0" if ids[7][16] != "0" else "1") + ids[7][17:]  # same 64-bit prefix, other id
    query = [ids[3], ids[499], twin, "f" * 64, ids[0]]
    got = lookup(pa.array(query)).to_pylist()
    assert got == [3, 499, None, None, 0]
    # a non-hex id format falls back to the hash lookup with the same answers
    odd = pd.DataFrame({C.CUSTOMER_KEY: np.arange(3, dtype=np.int32), C.CUSTOMER_ID: ["a", "bb", "c-c"]})
    slow = CustomerLookup(odd)
    assert not slow.competition_ids
    assert slow(pa.array(["c-c", "zz", "a"])).to_pylist() == [2, None, 0]


def test_outputs_get_normal_file_mode(tmp_path):
    import os
    d = write_mini(tmp_path / "data")
    prepare_data(d, tmp_path / "work", progress=False)
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(tmp_path / "work" / "articles.parquet").st_mode & 0o777) == (0o666 & ~mask)


def test_customer_keys_point_back_to_the_exact_ids(hm_sample):
    cust = read_customers_csv(hm_sample)
    tx = read_transactions_csv(hm_sample, cust, read_articles_csv(hm_sample), progress=False).to_pandas()
    raw = pd.read_csv(hm_sample / "transactions_train.csv", dtype=str)
    assert len(tx) == len(raw) == 5000
    # every row's key is the row (file order) of its customer in customers.csv, rows in file order
    assert cust[C.CUSTOMER_ID].to_numpy()[tx[C.CUSTOMER_KEY].to_numpy()].tolist() == raw[C.CUSTOMER_ID].tolist()
    assert [C.format_article_id(a) for a in tx[C.ARTICLE_ID]] == raw[C.ARTICLE_ID].tolist()
    assert np.allclose(tx[C.PRICE].to_numpy(), raw[C.PRICE].astype(float).to_numpy(), rtol=1e-6)


def test_customer_lookup_keeps_given_keys_and_order():
    import pyarrow as pa

    from hm_utils.data.loading import CustomerLookup
    customers = pd.DataFrame({C.CUSTOMER_KEY: np.array([10, 20, 30], dtype=np.int32),
                              C.CUSTOMER_ID: [_cid(1), _cid(2), _cid(3)]})
    lookup = CustomerLookup(customers)
    got = lookup(pa.array([_cid(3), _cid(1), _cid(9), _cid(3), _cid(2)]))
    assert got.type == pa.int32()
    assert got.to_pylist() == [30, 10, None, 30, 20]
    dup = pd.DataFrame({C.CUSTOMER_KEY: np.arange(2, dtype=np.int32), C.CUSTOMER_ID: [_cid(1), _cid(1)]})
    with pytest.raises(ValueError, match="appears more than once"):
        CustomerLookup(dup)


def test_parquet_copy_with_timestamps_and_missing_column(tmp_path):
    d = write_mini(tmp_path / "data")
    raw = pd.read_csv(d / "transactions_train.csv", dtype={"article_id": str, "customer_id": str})
    raw["t_dat"] = pd.to_datetime(raw["t_dat"])  # a tool that saved datetimes
    raw.to_parquet(d / "transactions_train.parquet")
    cust, arts = read_customers_csv(d), read_articles_csv(d)
    tx = read_transactions_csv(d, cust, arts, progress=False).to_pandas()
    assert [str(x) for x in tx[C.T_DAT]] == ["2020-09-01", "2020-09-02", "2020-09-03"]
    assert tx[C.ARTICLE_ID].tolist() == [108775015, 108775044, 110065001]
    raw.drop(columns=["price"]).to_parquet(d / "transactions_train.parquet")
    with pytest.raises(ValueError, match=r"transactions_train\.parquet.*missing required column.*price"):
        read_transactions_csv(d, cust, arts, progress=False)


def test_empty_quoted_values_are_missing_like_empty_ones(tmp_path):
    d = write_mini(tmp_path / "data")
    text = (d / "customers.csv").read_text().replace(",ACTIVE,", ',"",', 1)  # first customer: status ""
    (d / "customers.csv").write_text(text)
    cust = read_customers_csv(d)
    assert cust["club_member_status"].isna().tolist() == [True, False, False]
    assert cust["Active"].isna().all()  # written empty, unquoted


def test_duplicate_customers_are_dropped_with_count_and_keys_stay_dense(tmp_path):
    d = write_mini(tmp_path / "data")
    lines = (d / "customers.csv").read_text().splitlines()
    (d / "customers.csv").write_text("\n".join(lines + [lines[1].replace("30.0", "99.0"), lines[2]]) + "\n")
    with pytest.warns(DataWarning, match=r"customers\.csv: 2 duplicate customer_id rows dropped \(first kept\)"):
        cust = read_customers_csv(d)
    assert cust[C.CUSTOMER_KEY].tolist() == [0, 1, 2]
    assert cust[C.CUSTOMER_ID].tolist() == [_cid(0), _cid(1), _cid(2)]
    assert cust["age"].tolist() == [30.0, 31.0, 32.0]  # the first row of customer 0 is kept, not the 99.0 one
