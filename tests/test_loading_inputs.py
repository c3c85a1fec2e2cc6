"""Input files as people really save them (issue 13): each case is the real-data excerpt
``../shared/hm_sample`` rewritten the way a spreadsheet, editor or script would save it, into
``tmp_path``. Each case either loads to exactly the tables of the clean excerpt (with a
``DataWarning`` stating every change and its count) or stops with an error naming the file and
the line.
"""
from __future__ import annotations

import codecs
import csv
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from hm_utils.core import config as C
from hm_utils.data.csv_columns import DataWarning
from hm_utils.data.loading import read_articles_csv, read_customers_csv, read_transactions_csv

FILES = (C.ARTICLES_CSV, C.CUSTOMERS_CSV, C.TRANSACTIONS_CSV)


# ------------------------------------------------------------------ helpers --
def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a clean CSV, every value a string ('' when empty)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]], sep: str = ",", newline: str = "\n",
               encoding: str = "utf-8", quoting: int = csv.QUOTE_MINIMAL) -> None:
    with open(path, "w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh, delimiter=sep, lineterminator=newline, quoting=quoting)
        writer.writerow(header)
        writer.writerows(rows)


def load(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """(articles, customers, transactions, DataWarning messages) as the loader reads ``folder``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arts = read_articles_csv(folder)
        cust = read_customers_csv(folder)
        tx = read_transactions_csv(folder, cust, arts, progress=False).to_pandas()
    return arts, cust, tx, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


@pytest.fixture(scope="module")
def clean(hm_sample):
    arts, cust, tx, messages = load(hm_sample)
    assert messages == []
    assert (len(arts), len(cust), len(tx)) == (1000, 4946, 5000)
    return arts, cust, tx


@pytest.fixture
def copy(hm_sample, tmp_path):
    """A writable copy of the excerpt's three CSV files."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in FILES:
        shutil.copyfile(hm_sample / name, folder / name)
    return folder


def assert_same(folder: Path, clean) -> list[str]:
    """The tables loaded from ``folder`` equal the clean ones exactly; returns the warnings."""
    arts, cust, tx, messages = load(folder)
    pd.testing.assert_frame_equal(arts, clean[0])
    pd.testing.assert_frame_equal(cust, clean[1])
    pd.testing.assert_frame_equal(tx, clean[2])
    return messages


def rewrite(folder: Path, name: str, change=None, **fmt) -> None:
    """Rewrite ``folder/name`` with ``change(header, rows)`` applied and the CSV format ``fmt``."""
    header, rows = read_rows(folder / name)
    if change:
        header, rows = change(header, rows)
    write_rows(folder / name, header, rows, **fmt)


def set_value(name_of_column: str, row: int, value: str):
    def change(header, rows):
        rows[row][header.index(name_of_column)] = value
        return header, rows
    return change


# ---------------------------------------------------- encodings and layout --
def test_utf8_byte_order_mark_is_read_as_is(copy, clean):
    for name in FILES:
        rewrite(copy, name, encoding="utf-8-sig")
        assert (copy / name).read_bytes()[:3] == codecs.BOM_UTF8
    assert assert_same(copy, clean) == []


def test_utf16_unicode_text_from_excel_is_converted_with_warning(copy, clean):
    # Excel's "Unicode Text": UTF-16 little-endian with a BOM, tab-separated, CRLF
    for name in FILES:
        rewrite(copy, name, sep="\t", newline="\r\n", encoding="utf-16")
        assert (copy / name).read_bytes()[:2] == codecs.BOM_UTF16_LE
    messages = assert_same(copy, clean)
    for name in FILES:
        assert any(m.startswith(name) and "UTF-16" in m for m in messages), messages
        assert any(m.startswith(name) and "tabs" in m for m in messages), messages


def test_utf16_without_bom_is_detected(copy, clean):
    rewrite(copy, C.ARTICLES_CSV, encoding="utf-16-le")
    messages = assert_same(copy, clean)
    assert any("articles.csv" in m and "UTF-16" in m for m in messages)


def test_windows_1252_from_excel_is_converted_with_counted_warning(copy, clean):
    text = (copy / C.ARTICLES_CSV).read_text(encoding="utf-8")
    lines = text.split("\n")
    accented = [i for i, line in enumerate(lines, 1) if not line.isascii()]
    assert len(accented) > 10  # the excerpt has ®, é, ’ ... (all in Windows-1252)
    (copy / C.ARTICLES_CSV).write_bytes(text.replace("\n", "\r\n").encode("cp1252"))
    messages = assert_same(copy, clean)
    note = [m for m in messages if "Windows-1252" in m]
    assert len(note) == 1 and note[0].startswith("articles.csv")
    assert f"{len(accented)} line(s)" in note[0] and f"line {accented[0]}" in note[0]


def test_mixed_encodings_name_the_line(copy):
    text = (copy / C.ARTICLES_CSV).read_text(encoding="utf-8")
    lines = text.split("\n")
    accented = [i for i, line in enumerate(lines) if not line.isascii()]
    bad = accented[1]  # 0-based index: the second accented line is written in Windows-1252, the rest in UTF-8
    raw = b"\n".join(line.encode("cp1252" if i == bad else "utf-8") for i, line in enumerate(lines))
    (copy / C.ARTICLES_CSV).write_bytes(raw)
    with pytest.raises(ValueError, match=rf"articles\.csv: line {bad + 1} is not UTF-8.*mixes two encodings"):
        read_articles_csv(copy)


def test_excel_workbook_saved_as_csv_is_refused(copy):
    (copy / C.CUSTOMERS_CSV).write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    with pytest.raises(ValueError, match=r"customers\.csv.*Excel workbook.*CSV UTF-8"):
        read_customers_csv(copy)


def test_windows_line_endings_are_read_as_is(copy, clean):
    for name in FILES:
        rewrite(copy, name, newline="\r\n")
    assert assert_same(copy, clean) == []


def test_old_mac_line_endings_are_converted_with_warning(copy, clean):
    rewrite(copy, C.TRANSACTIONS_CSV, newline="\r")
    messages = assert_same(copy, clean)
    assert any(m.startswith("transactions_train.csv") and "CR only" in m for m in messages)


def test_every_field_quoted_and_empty_values_as_quotes(copy, clean):
    for name in FILES:
        rewrite(copy, name, quoting=csv.QUOTE_ALL)
    assert '""' in (copy / C.CUSTOMERS_CSV).read_text()  # missing FN / Active written as ""
    assert assert_same(copy, clean) == []


def test_extra_and_reordered_columns(copy, clean):
    def shuffle(header, rows):
        order = list(reversed(range(len(header))))
        return (["note"] + [header[i] for i in order],
                [[f"kept, {n}"] + [r[i] for i in order] for n, r in enumerate(rows)])
    for name in FILES:
        rewrite(copy, name, shuffle)
    assert assert_same(copy, clean) == []


def test_spaces_around_header_names(copy, clean):
    rewrite(copy, C.TRANSACTIONS_CSV, lambda h, r: ([f" {c} " for c in h], r))
    assert assert_same(copy, clean) == []


def test_semicolons_and_decimal_commas_from_european_excel(copy, clean):
    def comma(header, rows):
        i = header.index(C.PRICE)
        for r in rows:
            r[i] = r[i].replace(".", ",")
        return header, rows
    rewrite(copy, C.TRANSACTIONS_CSV, comma, sep=";")
    messages = assert_same(copy, clean)
    assert any("semicolons" in m for m in messages)
    assert any("5,000 price value(s) have a decimal comma" in m for m in messages), messages


def test_missing_column_with_other_case_gets_a_rename_hint(copy):
    rewrite(copy, C.TRANSACTIONS_CSV, lambda h, r: ([c if c != "article_id" else "Article_ID" for c in h], r))
    with pytest.raises(ValueError, match=r"transactions_train\.csv.*missing required column.*article_id.*"
                                         r"rename 'Article_ID' for 'article_id'"):
        read_transactions_csv(copy, read_customers_csv(copy), progress=False)


def test_duplicated_column_is_refused(copy):
    rewrite(copy, C.TRANSACTIONS_CSV, lambda h, r: (h + ["price"], [x + ["0.5"] for x in r]))
    with pytest.raises(ValueError, match=r"transactions_train\.csv.*'price' appears twice.*columns 4 and 5"):
        read_transactions_csv(copy, read_customers_csv(copy), progress=False)


# ------------------------------------------------------------- blank lines --
def test_trailing_empty_lines_are_skipped_quietly(copy, clean):
    for name in FILES:
        with open(copy / name, "a") as fh:
            fh.write("\n\n")
    assert assert_same(copy, clean) == []


def test_blank_and_separator_only_lines_inside_are_skipped_with_warning(copy, clean):
    lines = (copy / C.TRANSACTIONS_CSV).read_text().split("\n")
    lines.insert(101, "")        # becomes line 102
    lines.insert(2001, ",,,")    # becomes line 2002
    (copy / C.TRANSACTIONS_CSV).write_text("\n".join(lines))
    messages = assert_same(copy, clean)
    assert any("transactions_train.csv: 2 blank line(s)" in m and "line 102" in m for m in messages), messages


# ------------------------------------------------------------------- dates --
def test_dates_with_a_midnight_time_keep_the_date_with_counted_warning(copy, clean):
    rewrite(copy, C.TRANSACTIONS_CSV, lambda h, r: (h, [[x[0] + " 00:00:00"] + x[1:] for x in r]))
    messages = assert_same(copy, clean)
    assert any("5,000 t_dat value(s) have a 00:00:00 time" in m for m in messages), messages


def test_date_with_a_time_of_day_names_the_line(copy):
    rewrite(copy, C.TRANSACTIONS_CSV, set_value("t_dat", 41, "2019-05-06 13:45:00"))
    with pytest.raises(ValueError, match=r"transactions_train\.csv: t_dat '2019-05-06 13:45:00' on line 43 has a "
                                         r"time of day"):
        read_transactions_csv(copy, read_customers_csv(copy), progress=False)


@pytest.mark.parametrize("fmt, name", [("%m/%d/%Y", "M/D/YYYY"), ("%d.%m.%Y", "D.M.YYYY"),
                                       ("%Y/%m/%d", "YYYY/MM/DD")])
def test_other_date_spellings_are_read_with_warning(copy, clean, fmt, name):
    def respell(header, rows):
        for r in rows:
            d = pd.Timestamp(r[0])
            r[0] = d.strftime(fmt).replace("/0", "/").lstrip("0") if fmt == "%m/%d/%Y" else d.strftime(fmt)
        return header, rows
    rewrite(copy, C.TRANSACTIONS_CSV, respell)
    messages = assert_same(copy, clean)
    assert any(f"5,000 t_dat value(s) are written as {name}" in m for m in messages), messages


def test_ambiguous_day_month_order_is_refused(copy):
    def only_early_days(header, rows):
        rows = [r for r in rows if int(r[0][8:10]) <= 12]
        for r in rows:
            r[0] = pd.Timestamp(r[0]).strftime("%d/%m/%Y")
        return header, rows
    rewrite(copy, C.TRANSACTIONS_CSV, only_early_days)
    with pytest.raises(ValueError, match=r"transactions_train\.csv: t_dat '\d\d/\d\d/\d{4}' on line 2: .*"
                                         r"D/M/YYYY or M/D/YYYY|M/D/YYYY or D/M/YYYY"):
        read_transactions_csv(copy, read_customers_csv(copy), progress=False)


def test_unreadable_date_names_the_line(copy):
    rewrite(copy, C.TRANSACTIONS_CSV, set_value("t_dat", 9, "2020-13-45"))
    with pytest.raises(ValueError, match=r"transactions_train\.csv: t_dat '2020-13-45' on line 11 is not a date"):
        read_transactions_csv(copy, read_customers_csv(copy), progress=False)


# --------------------------------------------------------------------- ids --
def test_article_ids_without_leading_zeros_are_the_same_articles(copy, clean):
    for name in (C.ARTICLES_CSV, C.TRANSACTIONS_CSV):
        def strip_zeros(header, rows):
            for col in ("article_id", "product_code"):
                if col in header:
                    for r in rows:
                        r[header.index(col)] = str(int(r[header.index(col)]))
            return header, rows
        rewrite(copy, name, strip_zeros)
    assert (copy / C.TRANSACTIONS_CSV).read_text().split("\n")[1].split(",")[2][0] != "0"
    assert assert_same(copy, clean) == []


def test_article_ids_written_as_decimals_are_read_with_warning(copy, clean):
    rewrite(copy, C.TRANSACTIONS_CSV, lambda h, r: (h, [x[:2] + [str(int(x[2])) + ".0"] + x[3:] for x in r]))
    messages = assert_same(copy, clean)
    assert any("5,000 article_id value(s) were written as decimals" in m for m in messages), messages


def test_article_id_in_scientific_notation_names_the_line(copy):
    rewrite(copy, C.TRANSACTIONS_CSV, set_value("article_id", 99, "6.40677E+08"))
    with pytest.raises(ValueError, match=r"transactions_train\.csv: article_id '6\.40677E\+08' on line 101 is in "
                                         r"scientific notation"):
        read_transactions_csv(copy, read_customers_csv(copy), read_articles_csv(copy), progress=False)


def test_spaces_around_values_are_removed_with_counted_warning(copy, clean):
    def pad(header, rows):
        for r in rows[:7]:
            r[1], r[2] = f" {r[1]}", f"{r[2]} "
        return header, rows
    rewrite(copy, C.TRANSACTIONS_CSV, pad)
    messages = assert_same(copy, clean)
    assert any("7 customer_id value(s) had spaces around them" in m for m in messages), messages
    assert any("7 article_id value(s) had spaces around them" in m for m in messages), messages


@pytest.mark.parametrize("damage", [lambda cid: cid.lstrip("0") or cid[1:], lambda cid: cid[:40], str.upper])
def test_damaged_customer_id_in_transactions_names_the_line(copy, damage):
    header, rows = read_rows(copy / C.TRANSACTIONS_CSV)
    k = next(i for i, r in enumerate(rows) if r[1] != damage(r[1]))
    rows[k][1] = damage(rows[k][1])
    write_rows(copy / C.TRANSACTIONS_CSV, header, rows)
    with pytest.raises(ValueError, match=rf"transactions_train\.csv: customer_id '{rows[k][1]}' on line {k + 2} is "
                                         rf"not a customer id of 64 lowercase hex digits"):
        read_transactions_csv(copy, read_customers_csv(copy), progress=False)


def test_damaged_customer_id_in_customers_names_the_line(copy):
    header, rows = read_rows(copy / C.CUSTOMERS_CSV)
    k = next(i for i, r in enumerate(rows) if r[0].startswith("0"))
    rows[k][0] = rows[k][0].lstrip("0")
    write_rows(copy / C.CUSTOMERS_CSV, header, rows)
    with pytest.raises(ValueError, match=rf"customers\.csv: customer_id '{rows[k][0]}' on line {k + 2} is not"):
        read_customers_csv(copy)


# ------------------------------------------------------------ bad rows --
def test_short_line_is_malformed_with_its_number(copy):
    lines = (copy / C.TRANSACTIONS_CSV).read_text().split("\n")
    lines[250] = ",".join(lines[250].split(",")[:2])  # line 251 keeps 2 of its 4 fields
    (copy / C.TRANSACTIONS_CSV).write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"transactions_train\.csv: malformed line 251: expected 4 fields.*got 2"):
        read_transactions_csv(copy, read_customers_csv(copy), progress=False)


def test_empty_required_value_names_line_and_column(copy):
    rewrite(copy, C.TRANSACTIONS_CSV, set_value("price", 3, ""))
    with pytest.raises(ValueError, match=r"transactions_train\.csv: line 5 has no price"):
        read_transactions_csv(copy, read_customers_csv(copy), progress=False)


def test_identical_transaction_rows_are_all_kept(copy, clean):
    header, rows = read_rows(copy / C.TRANSACTIONS_CSV)
    twice, thrice = rows[10], rows[20]
    rows = rows[:11] + [list(twice)] + rows[11:21] + [list(thrice), list(thrice)] + rows[21:]
    write_rows(copy / C.TRANSACTIONS_CSV, header, rows)
    arts, cust, tx, messages = load(copy)
    assert messages == []
    assert len(tx) == len(clean[2]) + 3
    key = [C.T_DAT, C.CUSTOMER_KEY, C.ARTICLE_ID, C.PRICE]
    counts = tx.groupby(key).size()
    base = clean[2].groupby(key).size()
    row_twice = tuple(clean[2].loc[10, key])
    row_thrice = tuple(clean[2].loc[20, key])
    assert counts[row_twice] == base[row_twice] + 1
    assert counts[row_thrice] == base[row_thrice] + 2
    # the rows stay in file order: the copy follows its original
    pd.testing.assert_frame_equal(tx.iloc[11].to_frame().T.reset_index(drop=True),
                                  clean[2].iloc[10].to_frame().T.reset_index(drop=True))


def test_line_numbers_count_line_ends_inside_quoted_values(copy, clean):
    header, rows = read_rows(copy / C.ARTICLES_CSV)
    d = header.index("detail_desc")
    rows[0][d] = "First line of the description.\nSecond line.\r\nThird line."  # record 1 spans lines 2-4
    write_rows(copy / C.ARTICLES_CSV, header, rows)
    arts = read_articles_csv(copy)
    assert arts["detail_desc"].iloc[0] == rows[0][d]
    rows[5][header.index("product_code")] = "07x1"  # record 6: line 7, plus the 2 extra lines of record 1
    write_rows(copy / C.ARTICLES_CSV, header, rows)
    with pytest.raises(ValueError, match=r"articles\.csv: product_code '07x1' on line 9 is not a whole number"):
        read_articles_csv(copy)
