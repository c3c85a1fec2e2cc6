"""Tests of hm_utils.synthetic.generate: the competition layout exactly, determinism, the
learnable structure (taste, repurchases, baskets, variants) and safe generation."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hm_utils.core import config as C
from hm_utils.synthetic import generate as S
from hm_utils.synthetic.catalogue import (INDEX_GROUPS, INDEXES, N_TASTE, PRICE_SCALE, categorical,
                                          topk_without_replacement)
from hm_utils.synthetic.generate import ensure_synthetic, generate_synthetic, is_complete, load_ground_truth
from hm_utils.synthetic.images import render_article_image
from hm_utils.synthetic.transactions import day_weights

TINY = dict(n_articles=300, n_customers=400, n_transactions=8_000, image_size=(96, 64))
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny-profile sizes with images, generated once for this module."""
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "tiny", seed=42, progress=False, **TINY)


@pytest.fixture(scope="module")
def frames(tiny):
    """(articles, customers, transactions, taste) read as strings, exactly as written."""
    a = pd.read_csv(tiny / C.ARTICLES_CSV, dtype=str, keep_default_na=False)
    c = pd.read_csv(tiny / C.CUSTOMERS_CSV, dtype=str, keep_default_na=False)
    t = pd.read_csv(tiny / C.TRANSACTIONS_CSV, dtype=str, keep_default_na=False)
    return a, c, t, load_ground_truth(tiny)


def _header(path: Path) -> list[str]:
    with open(path) as f:
        return f.readline().rstrip("\n").split(",")


# ------------------------------------------------------------------ layout --
def test_headers_equal_config_constants(tiny):
    assert _header(tiny / C.ARTICLES_CSV) == C.ARTICLE_COLUMNS
    assert _header(tiny / C.CUSTOMERS_CSV) == C.CUSTOMER_COLUMNS
    assert _header(tiny / C.TRANSACTIONS_CSV) == C.TRANSACTION_COLUMNS
    assert len(C.ARTICLE_COLUMNS) == 25 and len(C.CUSTOMER_COLUMNS) == 7 and len(C.TRANSACTION_COLUMNS) == 5


def test_headers_equal_the_real_files(tiny, hm_sample):
    assert _header(tiny / C.ARTICLES_CSV) == _header(hm_sample / C.ARTICLES_CSV)
    assert _header(tiny / C.CUSTOMERS_CSV) == _header(hm_sample / C.CUSTOMERS_CSV)
    real_tx = _header(hm_sample / C.TRANSACTIONS_CSV)
    # the excerpt drops sales_channel_id; the competition file has it last
    assert _header(tiny / C.TRANSACTIONS_CSV)[: len(real_tx)] == real_tx


def test_only_competition_files_at_top_level(tiny):
    top = sorted(p.name for p in tiny.iterdir() if not p.name.startswith("."))
    assert top == sorted(C.COMPETITION_FILES + [C.IMAGES_DIR, C.GROUND_TRUTH_DIR])


def test_sizes_and_sorting(frames):
    a, c, t, taste = frames
    assert (len(a), len(c), len(t), len(taste)) == (300, 400, 8_000, 400)
    assert a["article_id"].is_monotonic_increasing and a["article_id"].is_unique
    assert c["customer_id"].is_monotonic_increasing and c["customer_id"].is_unique
    assert t["t_dat"].is_monotonic_increasing
    assert list(taste["customer_id"]) == list(c["customer_id"])


def test_article_ids_are_product_code_plus_variant(frames, tiny):
    a = frames[0]
    assert a["article_id"].str.fullmatch(r"0\d{9}").all()
    assert a["product_code"].str.fullmatch(r"0\d{6}").all()
    assert (a["article_id"].str[:7] == a["product_code"]).all()
    assert (a["article_id"].str[7:].astype(int) >= 1).all()
    # raw text: no quotes around the ids, leading zero kept (as in the real 0108775015)
    second = (tiny / C.ARTICLES_CSV).read_text().splitlines()[1]
    assert re.match(r"^0\d{9},0\d{6},", second)
    lines = (tiny / C.TRANSACTIONS_CSV).read_text().splitlines()
    assert lines[0] == "t_dat,customer_id,article_id,price,sales_channel_id"
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2},[0-9a-f]{64},0\d{9},0\.\d+,[12]", line) for line in lines[1:])


def test_variants_share_product_and_differ_in_colour(frames):
    a = frames[0]
    per_product = a.groupby("product_code").agg(n=("article_id", "size"), names=("prod_name", "nunique"),
                                               types=("product_type_no", "nunique"),
                                               colours=("colour_group_code", "nunique"))
    assert (per_product["names"] == 1).all() and (per_product["types"] == 1).all()
    assert (per_product["colours"] == per_product["n"]).all()
    assert (per_product["n"] > 1).sum() >= 20  # several colours of one product exist


def test_article_codes_are_consistent(frames):
    a = frames[0]
    for no, name in (("product_type_no", "product_type_name"), ("colour_group_code", "colour_group_name"),
                     ("graphical_appearance_no", "graphical_appearance_name"), ("index_code", "index_name"),
                     ("index_group_no", "index_group_name"), ("department_no", "department_name"),
                     ("garment_group_no", "garment_group_name")):
        assert (a.groupby(no)[name].nunique() == 1).all(), no
    assert set(a["index_group_name"]) <= {"Ladieswear", "Menswear", "Baby/Children", "Sport", "Divided"}
    assert a["index_code"].isin(list(INDEXES)).all()
    assert a["detail_desc"].str.len().gt(0).mean() > 0.9


def test_customer_columns_look_real(frames):
    c = frames[1]
    assert c["customer_id"].str.fullmatch(HEX64.pattern).all()
    assert c["postal_code"].str.fullmatch(HEX64.pattern).all()
    assert set(c["FN"]) == {"", "1.0"} and set(c["Active"]) == {"", "1.0"}
    assert set(c["club_member_status"]) <= {"ACTIVE", "PRE-CREATE", "LEFT CLUB", ""}
    assert set(c["fashion_news_frequency"]) <= {"NONE", "Regularly", "Monthly", ""}
    age = pd.to_numeric(c["age"].replace("", np.nan))
    assert age.dropna().between(16, 99).all() and (c.loc[age.notna(), "age"].str.endswith(".0")).all()
    assert 0.4 < (c["FN"] == "").mean() < 0.9          # real: 57 % missing
    assert (c["club_member_status"] == "ACTIVE").mean() > 0.8


def test_transactions_columns_look_real(frames):
    a, c, t, _ = frames
    assert t["t_dat"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert t["t_dat"].min() >= "2018-09-20" and t["t_dat"].max() <= "2020-09-22"
    assert pd.to_datetime(t["t_dat"]).dt.year.nunique() == 3     # two years: 2018..2020
    assert t["article_id"].isin(a["article_id"]).all()
    assert t["customer_id"].isin(c["customer_id"]).all()
    assert set(t["sales_channel_id"]) == {"1", "2"}
    assert not t["price"].str.contains("[eE]").any()
    price = t["price"].astype(float)
    assert price.between(0.001, 0.2).all()
    # every price is (a 2-decimal SEK amount) / 590
    sek = price * PRICE_SCALE
    assert np.allclose(sek, np.round(sek, 2), atol=1e-6)


# ------------------------------------------------------------------ images --
def test_images_at_competition_paths(tiny, frames):
    from PIL import Image

    truth = pd.read_parquet(tiny / C.GROUND_TRUTH_DIR / C.ARTICLE_TRUTH_PARQUET)
    a = frames[0]
    assert list(truth["article_id"]) == list(a["article_id"])
    exists = np.array([(tiny / C.image_relpath(int(aid))).is_file() for aid in a["article_id"]])
    assert (exists == truth["has_image"].to_numpy()).all()
    assert 0.03 < 1 - exists.mean() < 0.2         # about 10 % have no image
    jpgs = list((tiny / C.IMAGES_DIR).rglob("*"))
    files = [p for p in jpgs if p.is_file()]
    assert len(files) == exists.sum()
    assert all(re.fullmatch(r"0\d{2}/0\d{9}\.jpg", p.relative_to(tiny / C.IMAGES_DIR).as_posix()) for p in files)
    with Image.open(files[0]) as img:
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == (64, 96)   # (width, height)


def test_image_shows_the_article_colour():
    """A solid red T-shirt: the garment's centre is red, the corner is the light background."""
    img = np.asarray(render_article_image("tee", (200, 30, 40), "solid", (120, 80), np.random.default_rng(0)))
    centre = img[55:65, 35:45].reshape(-1, 3).mean(axis=0)
    corner = img[:5, :5].reshape(-1, 3).mean(axis=0)
    assert np.abs(centre - [200, 30, 40]).max() < 20
    assert corner.min() > 215


def test_stripes_differ_from_solid():
    rng = lambda: np.random.default_rng(1)  # noqa: E731 - same jitter for both
    solid = np.asarray(render_article_image("sweater", (50, 90, 170), "solid", (120, 80), rng()), dtype=float)
    stripe = np.asarray(render_article_image("sweater", (50, 90, 170), "stripe", (120, 80), rng()), dtype=float)
    # stripes lighten half the rows of the garment: the centre column varies far more
    assert stripe[30:90, 40].std(axis=0).mean() > 3 * solid[30:90, 40].std(axis=0).mean()


def test_no_images_folder_without_images(tmp_path):
    out = generate_synthetic(tmp_path / "noimg", 40, 30, 300, seed=1, images=False, progress=False)
    assert not (out / C.IMAGES_DIR).exists()
    assert json.loads((out / C.COMPLETE_MARKER).read_text())["params"]["images"] is False


# ------------------------------------------------------------- determinism --
def test_deterministic_for_a_seed(tmp_path):
    small = dict(n_articles=60, n_customers=50, n_transactions=900, images=False, progress=False)
    one = generate_synthetic(tmp_path / "one", seed=7, **small)
    two = generate_synthetic(tmp_path / "two", seed=7, **small)
    other = generate_synthetic(tmp_path / "other", seed=8, **small)
    for name in C.COMPETITION_FILES:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
        assert (one / name).read_bytes() != (other / name).read_bytes(), name


def test_csvs_do_not_depend_on_images(tmp_path):
    small = dict(n_articles=40, n_customers=30, n_transactions=400, image_size=(32, 24), seed=3, progress=False)
    with_img = generate_synthetic(tmp_path / "img", images=True, **small)
    without = generate_synthetic(tmp_path / "noimg", images=False, **small)
    for name in C.COMPETITION_FILES:
        assert (with_img / name).read_bytes() == (without / name).read_bytes(), name


# ------------------------------------------------------ learnable structure --
def _taste_lift(frames, article_col, taste_col):
    """(share of purchases whose article matches the buyer's taste, average share of articles that match)."""
    a, _, t, taste = frames
    pref = dict(zip(taste["customer_id"], taste[taste_col]))
    value = dict(zip(a["article_id"], a[article_col].astype(int)))
    bought = np.mean([value[aid] in pref[cid] for cid, aid in zip(t["customer_id"], t["article_id"])])
    values = a[article_col].astype(int).to_numpy()
    chance = np.mean([np.isin(values, pref[cid]).mean() for cid in t["customer_id"]])
    return bought, chance


@pytest.mark.parametrize("article_col,taste_col", [("colour_group_code", "colour_group_codes"),
                                                   ("product_type_no", "product_type_nos")])
def test_customers_buy_their_taste_far_above_chance(frames, article_col, taste_col):
    bought, chance = _taste_lift(frames, article_col, taste_col)
    assert bought / chance > 2.0, (bought, chance)


def test_customers_buy_their_index_group(frames):
    a, _, t, taste = frames
    group = dict(zip(a["article_id"], a["index_group_name"]))
    pref = dict(zip(taste["customer_id"], taste["index_group_name"]))
    match = np.mean([group[aid] == pref[cid] for cid, aid in zip(t["customer_id"], t["article_id"])])
    assert match > 0.6


def test_ground_truth_columns(frames):
    taste = frames[3]
    assert taste["index_group_name"].isin(INDEX_GROUPS).all()
    sizes = taste["colour_group_codes"].map(len)
    assert sizes.between(1, N_TASTE).all() and (sizes > 1).any()
    assert taste["taste_strength"].between(0, 1).all() and taste["repurchase_rate"].between(0, 1).all()
    assert {"colour_group_names", "product_type_names", "online_share", "activity"} <= set(taste.columns)


def test_repurchases_exist(frames):
    t = frames[2]
    days = t.groupby(["customer_id", "article_id"])["t_dat"].nunique()
    assert (days > 1).sum() >= 100          # the same article bought again on a later day


def test_repurchase_follows_the_ground_truth_rate(frames):
    """Customers with a high hidden repurchase rate repeat earlier purchases more often than those near 0
    (popular articles make some repeats happen anyway, hence a difference, not a ratio)."""
    t, taste = frames[2], frames[3]
    repeat = t.duplicated(["customer_id", "article_id"]).groupby(t["customer_id"]).agg(["mean", "size"])
    repeat = repeat[repeat["size"] >= 5].join(taste.set_index("customer_id")["repurchase_rate"])
    high = repeat.loc[repeat["repurchase_rate"] > 0.2, "mean"]
    low = repeat.loc[repeat["repurchase_rate"] < 0.05, "mean"]
    assert len(high) >= 20 and len(low) >= 100
    assert high.mean() > low.mean() + 0.08, (high.mean(), low.mean())


def test_baskets_exist(frames):
    t = frames[2]
    size = t.groupby(["customer_id", "t_dat"]).size()
    assert (size > 1).mean() > 0.5 and size.max() >= 4
    t = t.assign(product=t["article_id"].str[:7])
    colours = t.groupby(["customer_id", "t_dat", "product"])["article_id"].nunique()
    assert (colours > 1).sum() >= 50       # two colours of one product in one basket


def test_articles_launch_and_fade(frames):
    t = frames[2]
    first = t.groupby("article_id")["t_dat"].min()
    last = t.groupby("article_id")["t_dat"].max()
    assert (first > "2019-09-20").mean() > 0.25        # newer articles appear later
    span = (pd.to_datetime(last) - pd.to_datetime(first)).dt.days
    assert span.median() < 600                           # most do not sell the whole two years


# ----------------------------------------------------------- safe writing --
def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt("interrupted")

    monkeypatch.setattr(S, "_write_transactions_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "syn", 30, 20, 200, images=False, progress=False)
    assert not (tmp_path / "syn").exists()
    assert list(tmp_path.iterdir()) == []        # the temporary sibling is gone too
    assert not is_complete(tmp_path / "syn")


def test_folder_without_marker_is_not_complete(tmp_path):
    out = generate_synthetic(tmp_path / "syn", 30, 20, 200, images=False, progress=False)
    assert is_complete(out)
    params = json.loads((out / C.COMPLETE_MARKER).read_text())["params"]
    assert is_complete(out, params) and not is_complete(out, {**params, "seed": 43})
    (out / C.COMPLETE_MARKER).unlink()
    assert not is_complete(out)


def test_ensure_synthetic_regenerates_incomplete_and_reuses_complete(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(C.SYNTHETIC_DIR_ENV, str(tmp_path))
    target = tmp_path / "tiny_seed5_noimg"
    target.mkdir()
    for name in C.COMPETITION_FILES:                 # a half-written earlier run: files but no marker
        (target / name).write_text("broken\n")
    out = ensure_synthetic("tiny", seed=5, images=False, progress=False)
    assert out == target and is_complete(out)
    assert "generating the synthetic dataset" in capsys.readouterr().out
    assert _header(out / C.TRANSACTIONS_CSV) == C.TRANSACTION_COLUMNS
    stamp = (out / C.TRANSACTIONS_CSV).stat().st_mtime_ns
    assert ensure_synthetic("tiny", seed=5, images=False, progress=False) == out
    assert (out / C.TRANSACTIONS_CSV).stat().st_mtime_ns == stamp
    assert "generating" not in capsys.readouterr().out


def test_bad_arguments_are_errors(tmp_path):
    with pytest.raises(ValueError, match="n_transactions=0"):
        generate_synthetic(tmp_path / "x", 10, 10, 0, images=False, progress=False)
    with pytest.raises(ValueError, match="missing_image_share"):
        generate_synthetic(tmp_path / "x", 10, 10, 10, missing_image_share=1.0, progress=False)
    with pytest.raises(ValueError, match="unknown profile"):
        ensure_synthetic("huge")
    with pytest.raises(FileNotFoundError, match="not a synthetic dataset"):
        load_ground_truth(tmp_path)


# ------------------------------------------------------------------ helpers --
def test_categorical_and_topk_by_hand():
    rng = np.random.default_rng(0)
    draws = categorical(rng, np.array([0.0, 3.0, 0.0, 1.0]), 4000)
    assert set(np.unique(draws)) == {1, 3}
    assert abs((draws == 1).mean() - 0.75) < 0.03
    logw = np.where(np.array([[0, 1, 0, 1, 1]] * 50) > 0, 0.0, -np.inf)
    top = topk_without_replacement(rng, logw, 3)
    assert all(sorted(row) == [1, 3, 4] for row in top.tolist())   # only the three allowed, each once


def test_loader_reads_synthetic_data(tiny):
    loading = pytest.importorskip("hm_utils.data.loading")
    customers = loading.read_customers_csv(tiny)
    articles = loading.read_articles_csv(tiny)
    table = loading.read_transactions_csv(tiny, customers, articles, progress=False)
    assert (len(articles), len(customers), table.num_rows) == (300, 400, 8_000)
    assert articles["article_id"].min() > 100_000_000    # 0108775xxx read as the number 108775xxx


# ------------------------------------------------- the real data's statistics --
# Rows of hm_utils.data.published_stats.TARGETS judged at the tiny size (8,000 rows, 400 customers, 76 rows a week):
# shares over rows and customers. Weekly rows (a week holds about 20 buyers and 2 or 3 new articles), the
# years' shares (a few heavy shoppers move them), repurchase and concentration rows say nothing at that
# size; the tiny catalogue (about 60 articles on sale) also repeats more.
TINY_ROWS = ["rows_per_buyer_median_mean", "rows_per_buyer_p90_mean", "rows_per_buyer_p99_mean", "buyers_one_row",
             "buyers_one_day", "identical_rows", "rows_per_customer_day", "channel_2", "age_p25", "age_median",
             "age_p75"]
# At the demo size every judged row is within its band except these, which a 3,000-article catalogue cannot
# reach (see the module docstring of hm_utils.synthetic.generate); each is bounded where the docstring says it lands.
DEMO_DEVIATIONS = {"week_top12": (0.045, 0.075), "top_0_1pct": (0.004, 0.023), "top_1pct": (0.04, 0.12),
                   "rows_per_article_median_mean": (0.5, 0.75)}


@pytest.fixture(scope="module")
def demo_stats(tmp_path_factory):
    """The demo profile's sizes without images (seed 42), generated once for this module, read through
    hm_utils.data.loading and measured with hm_utils.data.statistics (with the popularity and repurchase rankers)."""
    from hm_utils.data.statistics import folder_statistics

    p = C.get_profile("demo")
    out = generate_synthetic(tmp_path_factory.mktemp("syn") / "demo", p.n_articles, p.n_customers, p.n_transactions,
                             seed=42, images=False, progress=False)
    return folder_statistics(out, baselines=True)


def _judged(stats):
    from hm_utils.data.published_stats import compare_statistics

    return compare_statistics(stats).set_index("key")


def test_tiny_has_the_real_shape(tiny):
    from hm_utils.data.statistics import folder_statistics

    table = _judged(folder_statistics(tiny, baselines=False))
    bad = table.loc[TINY_ROWS].query("`pass` != True")
    assert bad.empty, bad[["value", "tolerance"]].to_string()


def test_demo_has_the_real_shape(demo_stats):
    table = _judged(demo_stats)
    judged = table[table["pass"].notna()]
    assert len(judged) == 43                                         # every judged row is measured at demo size
    bad = judged.drop(index=list(DEMO_DEVIATIONS)).query("`pass` != True")
    assert bad.empty, bad[["value", "tolerance"]].to_string()
    for key, (lo, hi) in DEMO_DEVIATIONS.items():
        assert lo <= demo_stats[key] <= hi, (key, demo_stats[key])


def test_demo_baselines_are_near_the_real_ones(demo_stats):
    """The held-out last week: popularity and repurchase MAP@12 within a factor of 2 of the real
    data's (0.0088 and about 0.021), where the earlier generator gave 0.027 and 0.077."""
    assert 0.0088 / 2 <= demo_stats["map12_popularity"] <= 0.0088 * 2
    assert 0.021 / 2 <= demo_stats["map12_repurchase"] <= 0.021 * 2
    assert demo_stats["pairs_multi_row"] < 0.2                       # was a third


def test_gamma_shape_leaves_the_asked_share_with_one_visit():
    from hm_utils.synthetic.transactions import gamma_shape

    extra = np.array([2.0, 8.0, 20.0])
    k = gamma_shape(extra, 0.37)
    assert np.mean((1 + extra / k) ** -k) == pytest.approx(0.37, abs=1e-6)
    # when Poisson visits alone leave more one-visit customers than asked, activity is (nearly) equal
    assert gamma_shape(np.array([0.1]), 0.37) == pytest.approx(200.0)


def test_popularity_spread_reaches_the_top12_share():
    from hm_utils.synthetic import transactions as T
    sigma = T.popularity_sigma(np.random.default_rng(0), n_live=19_000, rows_per_week=300_000)
    assert 1.0 < sigma < 2.5                                         # the full size needs a long tail
    z = np.random.default_rng(1).normal(size=19_000)
    counts = np.random.default_rng(2).poisson(300_000 * np.exp(sigma * z) / np.exp(sigma * z).sum())
    assert np.sort(counts)[-12:].sum() / counts.sum() == pytest.approx(T.TOP12_TARGET, rel=0.35)
    # 600 articles at 5 rows a week: chance alone exceeds the target, the spread stays at its floor
    assert T.popularity_sigma(np.random.default_rng(0), 600, 3_000) == T.POP_SIGMA_RANGE[0]


def test_day_weights_peak_on_the_last_saturday_of_september():
    w = day_weights(pd.Timestamp("2019-01-01"), 365)
    days = pd.date_range("2019-01-01", periods=365)
    assert days[int(np.argmax(w))] == pd.Timestamp("2019-09-28")
    assert 4.0 < w.max() / np.median(w) < 6.5
