"""A synthetic H&M dataset in exactly the competition layout, with structure a
model can learn and the shape of the real data's statistics.

Output folder (the same files, columns, id formats and image paths as the
Kaggle competition's data, so every code path is the one real data takes)::

    articles.csv              25 columns of config.ARTICLE_COLUMNS, sorted by article_id
    customers.csv             7 columns of config.CUSTOMER_COLUMNS, sorted by customer_id
    transactions_train.csv    5 columns of config.TRANSACTION_COLUMNS, sorted by t_dat
    images/0XX/0XXXXXXXXX.jpg one JPEG per article that has an image (height x width = image_size)
    ground_truth/customer_taste.parquet   each customer's hidden taste (for tests)
    ground_truth/article_truth.parquet    each article's launch day, selling life, popularity
    .complete                 JSON of the generation parameters, written last

The generative story (all draws from one ``numpy.random.Generator`` seeded by
``seed``; the images from per-article generators seeded by ``(seed, article)``,
so the CSVs are the same with or without images). Each step names the real
statistic it is calibrated to (:mod:`hm_utils.data.statistics` measures them all;
``python -m hm_utils.data.statistics DIR`` prints the comparison). Shares
and rates are the same at every size; what must depend on the size is solved
from it (marked *solved*). Code: :mod:`hm_utils.synthetic.catalogue`,
:mod:`hm_utils.synthetic.transactions`, :mod:`hm_utils.synthetic.images`.

1. **Catalogue.** Products first: an index (``index_code`` A..J or S, with
   its index name, index group, a section), a product type allowed for that
   index (with product group, garment group, department), a graphical
   appearance, a list price from the type's SEK range (leaning to the cheap
   end; prices are SEK / 590, the competition's scaling), and 1..8 colour
   variants (geometric, mean about 2.2; distinct colours weighted by how
   common each is). ``article_id`` = 7-digit ``product_code`` + 3-digit
   variant. Each article sells for a *life* (log-normal, median 18 weeks,
   mean about 30; a few basics for years). A share ``E[life] / (E[life] +
   period)`` of the products is already on sale on the first day (picked in
   proportion to their lives, each article at a random point of its life);
   the others launch uniformly over the period, their later colours mostly
   weeks after the first, so about 0.8 % of the catalogue is new each week
   (real: 400-1,000 of 105,542, 0.4-0.95 %) and half the new articles are new
   products.
   An article's sales rate on day ``t`` is ``popularity x min(1, (age + 5) /
   9) x (1 - 0.3 age / life)`` while ``0 <= age < life`` and 0 otherwise:
   about 19 % of the catalogue sells in a week (real: 18,000-20,000) and
   nearly all of a week's rows go to articles sold the weeks before or new.
   *Solved:* popularity is log-normal with the spread for which a week's 12
   best sellers take 2.8 % of its rows (real), simulated with most demand
   split within (index group, colour) cells as the customers' taste splits
   it; with a small catalogue chance alone gives more (demo: about 6 %), and
   the spread is then its floor 0.25.
   From a day ``life x U(0.45, 0.85)`` after launch the article sells marked
   down to 60-80 % of its list price (price p25 / median / p75 about 0.016 /
   0.025 / 0.034, real).
2. **Customers.** A hidden *taste*: one index group (shares close to the
   groups' shares of the articles), three draws of preferred colour groups
   and three of preferred product types (1..3 distinct of each, drawn in
   proportion to the articles the group has in each, so demand meets
   supply), a taste strength (Beta(6, 2)), an online share (Beta(2.6, 1.1):
   70 % of rows in channel 2, real), a repurchase rate (a fifth of the
   customers, mostly the frequent shoppers, are repeaters near 0.8; the rest
   near 0.03) and an activity score. Ages from three modes (23, 32, 53 years)
   mixed by index group (quartiles 24 / 32 / 49, 1.2 % missing, real);
   ``FN``/``Active``/``club_member_status``/``fashion_news_frequency`` have the
   real file's kinds and shares of missing values.
3. **Visits.** The rows are cut into visits (customer-days): ``1 + NegBin``
   picks per visit (mean 2.9), each pick bought once or, for 8.7 %, two or
   more times (identical rows, 9.4 % real; 3.3 rows per customer-day). A
   *solved* share of the customers joins during the period so that 8 % of a
   week's buyers are new; the others shop from the first day. Every customer
   visits once; the other visits go by activity x the days open to the
   customer, activity ~ Gamma(k, 1/k) with ``k`` *solved* so that 37 % of the
   buyers shop on one day only (then 10 % buy one row; rows per buyer median
   / p90 / p99 about 0.3-0.39 / 2.7 / 8-9 x the mean, real 0.39 / 2.6 / 8.0).
   A visit falls on a day by the shopping volume (a late-summer high, busy
   Fridays and Saturdays, the last Saturday of September about 5x a median
   day, Black Friday, sale starts, a slow Christmas, the spring 2020 slump:
   rows per day p90 1.5x the median, years' shares 14 / 51 / 35 %, real 14 /
   52 / 35 %) divided by the customers joined by then (so the volume follows
   the calendar although customers join), times the customer's interest,
   which waxes and wanes (``exp(a sin(2 pi t / period + phase))``, a period
   of 1 to 3 years; ``a`` in 0..1.5 *solved* on a sample of customers so that
   48 % of a week's buyers bought nothing in the 4 weeks before, real 48 %;
   then a week's buyer has 3.5-3.8 rows, real 3.5).
4. **Choices.** A pick is drawn by the articles' sales rates on that day: with
   probability 0.1 from all articles, else from the customer's index group
   with weights ``1 + 20 s`` for a preferred product type and ``1 + 50 s``
   for a preferred colour (``s`` the taste strength; one preferred type and
   colour drawn per pick). A pick that repeats an article the customer
   bought before, a product of the last 4 weeks or an article of the same
   day is drawn again (3 times, then from the group without the boosts, then
   from all articles), unless the part of the catalogue it came from has
   fewer than 4 articles on sale (a rare colour, a tiny catalogue): there a
   faithful customer buys the same again (a same-day repeat is always drawn
   again). A later pick is with probability 0.07 another colour of the
   visit's first product.
5. **Repurchases.** Visit by visit, a pick repeats one of the previous visit's
   picks (of the one before with 0.25) with probability ``repurchase rate x
   (1.3 exp(-days / 4) + 0.04 + 0.15 [days > 28])``: the same article, or with
   0.65 another colour of it, when on sale that day. At the demo size 5-6 /
   7-8 / 8-9 % of a week's buyers rebuy an article of the 1 / 2 / 3 weeks
   before and 7-8 / 9-10 / 11-12 % a product, the upper side of the real 5.1 /
   6.2 / 6.6 and 6.8 / 8.5 / 9.4 % (its thin assortment adds repeats); at the
   full size 4-5 / 5 / 5-6 % and 6-7 / 7-8 / 7-8 %, the lower side. 13-16 % of
   (customer, article) pairs have more than one row (real 14 %), and on the
   demo's last week the repurchase ranker scores MAP@12 about 0.022-0.030 and
   the popularity ranker 0.007-0.013 (real: 0.021 and 0.0088).
6. **Rows.** Visits in date order, a visit's picks together, each pick's
   copies next to each other; the price of an article on a day (list price,
   marked down after its markdown day, rounded to 0.01 SEK) / 590, written as
   plain decimals (``0.025406779661016947``-style, no exponent); the visit's
   channel.
7. **Images** (Pillow + numpy only, :mod:`hm_utils.synthetic.images`): a light
   background; the product type's silhouette filled with the article's colour
   and a pattern by its graphical appearance; jitter, pixel noise. A share
   ``missing_image_share`` of articles has no image, as in the real data.

What the small profiles cannot match (``python -m hm_utils.data.statistics`` shows it): a catalogue of
3,000 articles sells about 560 a week at about 5 rows each, so its 12 best
sellers take at least 4.5 % of a week by chance (real 2.8 %); and with a week's
popularity that flat, the whole period's concentration (top 1 % of articles:
real 18 %, demo 5 %; rows per article median / mean real 0.21, demo 0.65)
cannot be reached either. The tiny profile (300 articles, 76 rows a week) also
repeats far more (its customers' preferred corners hold one or two articles).

Public functions: :func:`generate_synthetic`, :func:`ensure_synthetic`,
:func:`load_ground_truth`, :func:`is_complete`, :func:`generator_params`, :func:`main`
(``python -m hm_utils.synthetic.generate``); a photo: :func:`hm_utils.synthetic.images.render_article_image`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from hm_utils.core import config as C
from hm_utils.core.storage import write_parquet
from hm_utils.synthetic.catalogue import COLOURS, INDEX_GROUPS, PRODUCT_TYPES, make_articles, make_customers
from hm_utils.synthetic.images import write_images
from hm_utils.synthetic.transactions import make_transactions

log = logging.getLogger(__name__)

FORMAT_VERSION = 2          # bump when the generator's output changes for a given seed

DEFAULT_START, DEFAULT_END = "2018-09-20", "2020-09-22"   # the competition's transaction date range
DEFAULT_MISSING_IMAGE_SHARE = 0.1

# ------------------------------------------------------------------ writing --
def _write_transactions_csv(path: Path, tx: dict, customer_ids: np.ndarray, article_ids: np.ndarray,
                            start: pd.Timestamp, n_days: int, progress: bool, chunk: int = 1_000_000) -> None:
    """Stream the transactions to CSV in chunks with pyarrow (quote-free, header as in the real file)."""
    from tqdm.auto import tqdm

    dates = pa.array(pd.date_range(start, periods=n_days, freq="D").strftime("%Y-%m-%d").to_numpy(dtype=str))
    cids = pa.array(customer_ids, type=pa.string())
    aids = pa.array(article_ids.astype(str), type=pa.string())
    opts = pacsv.WriteOptions(include_header=False, quoting_style="none")
    n = len(tx["day"])
    with pa.OSFile(str(path), "wb") as f:
        f.write((",".join(C.TRANSACTION_COLUMNS) + "\n").encode())
        for s in tqdm(range(0, n, chunk), desc="writing transactions_train.csv", unit="chunk", disable=not progress):
            e = min(s + chunk, n)
            table = pa.table({
                "t_dat": dates.take(pa.array(tx["day"][s:e])),
                "customer_id": cids.take(pa.array(tx["customer"][s:e])),
                "article_id": aids.take(pa.array(tx["article"][s:e])),
                "price": pa.array(tx["price"][s:e], type=pa.float64()),
                "sales_channel_id": pa.array(tx["channel"][s:e], type=pa.int8()),
            })
            pacsv.write_csv(table, f, write_options=opts)


def _dates(start: pd.Timestamp, days: np.ndarray) -> np.ndarray:
    """``start`` + ``days`` (int array) as datetime64[D]."""
    return (start + pd.to_timedelta(days, unit="D")).to_numpy().astype("datetime64[D]")


def _write_ground_truth(folder: Path, customers: pd.DataFrame, taste: dict, articles: pd.DataFrame, art: dict,
                        has_image: np.ndarray, start: pd.Timestamp) -> None:
    """Write ``customer_taste.parquet`` and ``article_truth.parquet`` (see :func:`load_ground_truth`)."""
    def distinct(table: np.ndarray, draws: np.ndarray, arrow_type) -> pa.Array:
        """Per row of ``draws`` (int [n, k] indices into ``table``): its distinct values, sorted, as a list array."""
        order = np.argsort(table, kind="stable")
        rank = np.empty(len(table), dtype=np.int64)
        rank[order] = np.arange(len(table))
        ranks = np.sort(rank[draws], axis=1)
        keep = np.ones(ranks.shape, dtype=bool)
        keep[:, 1:] = ranks[:, 1:] != ranks[:, :-1]
        offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
        flat = pa.array(table[order], arrow_type).take(pa.array(ranks[keep]))
        return pa.ListArray.from_arrays(pa.array(offsets), flat)

    colour_codes = np.array([c[0] for c in COLOURS], dtype=np.int32)
    colour_names = np.array([c[1] for c in COLOURS])
    type_nos = np.array([t[0] for t in PRODUCT_TYPES], dtype=np.int32)
    type_names = np.array([t[1] for t in PRODUCT_TYPES])
    write_parquet(pa.table({
        "customer_id": pa.array(customers["customer_id"].to_numpy(dtype=str)),
        "index_group_name": pa.array(INDEX_GROUPS).take(pa.array(taste["group"])),
        "colour_group_codes": distinct(colour_codes, taste["colour"], pa.int32()),
        "colour_group_names": distinct(colour_names, taste["colour"], pa.string()),
        "product_type_nos": distinct(type_nos, taste["type"], pa.int32()),
        "product_type_names": distinct(type_names, taste["type"], pa.string()),
        "taste_strength": taste["strength"], "repurchase_rate": taste["repurchase"],
        "online_share": taste["online"], "activity": taste["activity"],
        "join_date": pa.array(_dates(start, taste["join_day"])),
    }), folder / C.CUSTOMER_TASTE_PARQUET)
    launch = _dates(start, art["launch"])
    write_parquet(pa.table({
        "article_id": pa.array(articles["article_id"].to_numpy(dtype=str)),
        "launch_date": pa.array(launch), "lifetime_days": art["life"], "popularity": art["pop"],
        "list_price_sek": art["list_price"], "has_image": has_image,
    }), folder / C.ARTICLE_TRUTH_PARQUET)


def generator_params(n_articles, n_customers, n_transactions, image_size, seed, images, missing_image_share,
                     start, end) -> dict:
    """The generator's parameters as plain JSON values (what ``COMPLETE_MARKER`` records and
    :func:`is_complete` compares)."""
    return {"n_articles": int(n_articles), "n_customers": int(n_customers), "n_transactions": int(n_transactions),
            "image_size": [int(image_size[0]), int(image_size[1])], "seed": int(seed), "images": bool(images),
            "missing_image_share": float(missing_image_share), "start": str(start), "end": str(end),
            "format_version": FORMAT_VERSION}


def is_complete(out_dir: str | Path, params: dict | None = None) -> bool:
    """True when ``out_dir`` holds a finished synthetic dataset (its ``.complete``
    marker exists and, when ``params`` is given, records those parameters)."""
    marker = Path(out_dir) / C.COMPLETE_MARKER
    if not marker.is_file() or not C.has_competition_files(out_dir):
        return False
    if params is None:
        return True
    try:
        recorded = json.loads(marker.read_text()).get("params")
    except (OSError, ValueError):
        return False
    return recorded == params


def generate_synthetic(out_dir: str | Path, n_articles: int, n_customers: int, n_transactions: int,
                       image_size: tuple[int, int] = (300, 200), seed: int = 42, images: bool = True,
                       missing_image_share: float = DEFAULT_MISSING_IMAGE_SHARE, start: str = DEFAULT_START,
                       end: str = DEFAULT_END,
                       workers: int | None = None, progress: bool = True) -> Path:
    """Generate the synthetic dataset into ``out_dir`` (see the module docstring for the story).

    Inputs: sizes (``n_articles`` >= 1 articles, ``n_customers`` >= 1 customers,
    ``n_transactions`` >= 1 rows), ``image_size`` (height, width) in pixels of
    the JPEGs, ``seed``, ``images`` (False: no ``images/`` folder),
    ``missing_image_share`` in [0, 1), the date range ``start``..``end``
    (YYYY-MM-DD, inclusive), ``workers`` image-writing processes (default: up to
    2), ``progress`` bars.

    Output: ``out_dir`` (a Path) with ``articles.csv``, ``customers.csv``,
    ``transactions_train.csv``, ``images/0XX/0XXXXXXXXX.jpg``,
    ``ground_truth/*.parquet`` and ``.complete`` (the parameters, JSON). The
    whole folder is built under a temporary sibling name and renamed into
    place when complete; an existing ``out_dir`` is replaced. Deterministic: the
    same arguments give byte-identical CSVs.
    """
    if min(n_articles, n_customers, n_transactions) < 1:
        raise ValueError(f"synthetic sizes must be >= 1, got n_articles={n_articles}, n_customers={n_customers}, "
                         f"n_transactions={n_transactions}")
    if not 0.0 <= missing_image_share < 1.0:
        raise ValueError(f"missing_image_share must be in [0, 1), got {missing_image_share}")
    t_start, t_end = pd.Timestamp(start), pd.Timestamp(end)
    n_days = int((t_end - t_start).days) + 1
    if n_days < 1:
        raise ValueError(f"end {end} is before start {start}")
    out_dir = Path(out_dir)
    params = generator_params(n_articles, n_customers, n_transactions, image_size, seed, images, missing_image_share,
                     start, end)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        rng = np.random.default_rng(seed)
        rng_art, rng_cust, rng_tx, rng_img = (np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(4))
        articles, art = make_articles(rng_art, n_articles, n_days)
        customers, taste = make_customers(rng_cust, n_customers, art)
        has_image = rng_img.random(n_articles) >= missing_image_share
        articles.to_csv(tmp / C.ARTICLES_CSV, index=False)
        customers.to_csv(tmp / C.CUSTOMERS_CSV, index=False)
        tx = make_transactions(rng_tx, n_transactions, n_days, t_start, art, taste, progress)
        _write_transactions_csv(tmp / C.TRANSACTIONS_CSV, tx, customers["customer_id"].to_numpy(dtype=str),
                                articles["article_id"].to_numpy(dtype=str), t_start, n_days, progress)
        del tx
        _write_ground_truth(tmp / C.GROUND_TRUTH_DIR, customers, taste, articles, art,
                            has_image if images else np.zeros(n_articles, dtype=bool), t_start)
        n_img = 0
        if images:
            n_img = write_images(tmp, articles, art, has_image, image_size, seed,
                                  workers if workers is not None else min(2, os.cpu_count() or 1), progress)
        (tmp / C.COMPLETE_MARKER).write_text(json.dumps({
            "params": params, "n_images": n_img, "seconds": round(time.perf_counter() - t0, 1),
            "generator": "hm_utils.synthetic.generate"}, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            # another process finished the same folder first: keep its copy when it is complete
            if not is_complete(out_dir, params):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def ensure_synthetic(profile: str, seed: int = 42, images: bool = True, progress: bool = True) -> Path:
    """The synthetic dataset for a profile and seed, generated first if needed.

    Returns ``config.synthetic_dir(profile, seed)`` (with suffix ``_noimg`` when
    ``images`` is False). Sizes come from ``config.PROFILES[profile]``
    (``n_articles``, ``n_customers``, ``n_transactions``,
    ``synthetic_image_size``). A folder without a matching ``.complete``
    marker (an interrupted or older generation) is regenerated.
    """
    p = C.get_profile(profile)
    out = C.synthetic_dir(profile, seed)
    if not images:
        out = out.with_name(out.name + "_noimg")
    params = generator_params(p.n_articles, p.n_customers, p.n_transactions, p.synthetic_image_size, seed, images,
                     DEFAULT_MISSING_IMAGE_SHARE, DEFAULT_START, DEFAULT_END)
    if is_complete(out, params):
        return out
    msg = (f"generating the synthetic dataset (profile {profile}: {p.n_articles:,} articles, "
           f"{p.n_customers:,} customers, {p.n_transactions:,} transactions, "
           f"{'images ' + 'x'.join(map(str, p.synthetic_image_size)) if images else 'no images'}, "
           f"seed {seed}) into {out}")
    print(msg, flush=True)
    log.info(msg)
    t0 = time.perf_counter()
    generate_synthetic(out, p.n_articles, p.n_customers, p.n_transactions, image_size=p.synthetic_image_size,
                       seed=seed, images=images, progress=progress)
    print(f"synthetic dataset ready in {time.perf_counter() - t0:.1f} s: {out}", flush=True)
    return out


def load_ground_truth(data_dir: str | Path) -> pd.DataFrame:
    """Each customer's hidden taste, from ``DATA_DIR/ground_truth/customer_taste.parquet``.

    Returns a DataFrame, one row per customer of customers.csv (same order):
    ``customer_id`` (64-hex str), ``index_group_name`` (str), ``colour_group_codes``
    / ``colour_group_names`` and ``product_type_nos`` / ``product_type_names``
    (lists of the 1..3 distinct preferred values), ``taste_strength`` (0..1: how
    strongly picks lean to the preferred colour and type), ``repurchase_rate``
    (0..1: scales the chance that a pick repeats an earlier visit's),
    ``online_share`` (probability of ``sales_channel_id`` 2), ``activity``
    (relative visit rate, mean 1), ``join_date`` (the first day the customer
    could shop: the first date for customers of the whole period).
    FileNotFoundError when the folder is not synthetic.
    """
    import pyarrow.parquet as pq

    path = Path(data_dir) / C.GROUND_TRUTH_DIR / C.CUSTOMER_TASTE_PARQUET
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {data_dir} is not a synthetic dataset made by "
                                f"hm_utils.synthetic.generate.generate_synthetic (real data has no ground truth)")
    return pq.read_table(path).to_pandas()


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m hm_utils.synthetic --profile demo [--seed 42] [--no-images]`` generates
    (or reuses) a profile's dataset and prints its folder. Its statistics beside the real data's:
    ``python -m hm_utils.data.statistics DIR``. Exit status 0, or 2 for bad arguments."""
    parser = argparse.ArgumentParser(prog="python -m hm_utils.synthetic", description=main.__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(C.PROFILES), required=True,
                        help="generate (or reuse) this profile's dataset")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-images", action="store_true", help="generate without images")
    args = parser.parse_args(argv)
    print(ensure_synthetic(args.profile, seed=args.seed, images=not args.no_images))
    return 0


if __name__ == "__main__":
    sys.exit(main())
