"""A synthetic H&M dataset in exactly the competition layout, with structure a
model can learn.

Output folder (the same files, columns, id formats and image paths as the
Kaggle competition's data, so every code path is the one real data takes)::

    articles.csv              25 columns of config.ARTICLE_COLUMNS, sorted by article_id
    customers.csv             7 columns of config.CUSTOMER_COLUMNS, sorted by customer_id
    transactions_train.csv    5 columns of config.TRANSACTION_COLUMNS, sorted by t_dat
    images/0XX/0XXXXXXXXX.jpg one JPEG per article that has an image (height x width = image_size)
    ground_truth/customer_taste.parquet   each customer's hidden taste (for tests)
    ground_truth/article_truth.parquet    each article's launch day, lifetime, popularity
    .complete                 JSON of the generation parameters, written last

The generative story (all draws from one ``numpy.random.Generator`` seeded by
``seed``; the images from per-article generators seeded by ``(seed, article)``,
so the CSVs are the same with or without images):

1. **Catalogue.** Products are drawn first. Each product gets an index
   (``index_code`` A..J or S, with its index name, index group, a section), a
   product type allowed for that index (with its product group, garment group
   and department), a graphical appearance (Solid, Stripe, Denim, ...), a
   price point (SEK list price / 590, the competition's scaling), a launch day
   (from 180 days before the first transaction day to 10 days before the last),
   a lifetime ``tau`` (log-normal, median about 8 weeks; 10 % "evergreen"
   basics live for years) and a base popularity (log-normal). Each product
   comes in 1..8 colour variants (geometric, mean about 2.2); the variants
   share ``product_code`` and name and differ in colour (drawn without
   replacement, weighted by how common each colour is: black and dark blue
   most). ``article_id`` = 7-digit ``product_code`` + 3-digit variant number.
   An article's popularity on day ``t`` is
   ``popularity * min(1, (age+7)/14) * exp(-age / tau)`` for ``age = t - launch >= 0``
   and 0 before launch: articles launch, peak and fade; newer ones appear later.
2. **Customers.** Each customer has a hidden *taste*: one index group
   (Ladieswear, Divided, Menswear, Baby/Children, Sport), three draws of
   preferred colour groups and three of preferred product types (so 1..3
   distinct of each, types among those the catalogue offers in that index
   group), a taste strength (Beta(6, 2): the share of purchases that follow
   taste), a repurchase rate (most near 0, a fifth of customers near 0.4), an
   online share (``sales_channel_id`` 2 vs 1) and an activity level
   (log-normal). Age depends on the index group (Divided buyers are young).
   ``FN``/``Active``/``club_member_status``/``fashion_news_frequency``/``age``
   have the real file's kinds and shares of missing values.
3. **Baskets.** ``n_transactions`` rows are cut into baskets of
   ``1 + Poisson(1.7)`` articles; each basket gets a customer (by activity), a
   day (seasonal: a summer peak, busier weekends, a late-November sale) and a
   sales channel.
4. **Articles in a basket.** With the customer's taste strength an article is
   drawn from the customer's taste: a preferred product type in the
   customer's index group and (with probability 0.85) a preferred colour,
   weighted by the articles' popularity on that day; when no live article
   fits, the colour, then the type are relaxed. Otherwise it is drawn from
   all articles by popularity on that day (noise). After the first article,
   a basket article is with probability 0.15 another colour variant of the
   basket's first product.
5. **Repurchases.** With the customer's repurchase rate a purchase is replaced
   by one of the same customer's earlier purchases.
6. **Prices.** List price / 590, with a sale discount (x0.5..0.8) on 25 % of
   rows, written as plain decimals (``0.025406779661016947``-style, no exponent).
7. **Images** (Pillow + numpy only): a light background; the product type's
   silhouette (a simple polygon: top, sweater, dress, trousers, shoe, bag, ...)
   filled with the article's colour and a pattern by its graphical appearance
   (stripes, dots, checks, all-over print, front print, colour block, denim
   twill, melange noise); jitter in position and scale, pixel noise. A share
   ``missing_image_share`` of articles has no image, as in the real data.

Public functions: :func:`generate_synthetic`, :func:`ensure_synthetic`,
:func:`load_ground_truth`, :func:`is_complete`, :func:`render_article_image`.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from . import config as C
from .storage import write_parquet

log = logging.getLogger(__name__)

GROUND_TRUTH_DIR = "ground_truth"
CUSTOMER_TASTE_PARQUET = "customer_taste.parquet"
ARTICLE_TRUTH_PARQUET = "article_truth.parquet"
COMPLETE_MARKER = ".complete"
FORMAT_VERSION = 1          # bump when the generator's output changes for a given seed

PRICE_SCALE = 590.0         # competition prices look like SEK list price / 590
N_TASTE = 3                 # taste draws (colours, product types) per customer
DEFAULT_START, DEFAULT_END = "2018-09-20", "2020-09-22"   # the competition's transaction date range
DEFAULT_MISSING_IMAGE_SHARE = 0.1

# ------------------------------------------------------------ vocabularies --
# index_code: (index_name, index_group_no, index_group_name, article share, sections, department prefix)
INDEXES = {
    "A": ("Ladieswear", 1, "Ladieswear", 0.24,
          [(15, "Womens Everyday Collection"), (6, "Womens Casual"), (11, "Womens Tailoring"),
           (18, "Womens Trend"), (2, "H&M+")], ""),
    "B": ("Lingeries/Tights", 1, "Ladieswear", 0.065,
          [(61, "Womens Lingerie"), (60, "Womens Swimwear, beachwear"), (62, "Womens Nightwear, Socks & Tigh")], ""),
    "C": ("Ladies Accessories", 1, "Ladieswear", 0.063,
          [(64, "Womens Shoes"), (65, "Womens Big accessories"), (66, "Womens Small accessories")], ""),
    "D": ("Divided", 2, "Divided", 0.15,
          [(53, "Divided Collection"), (51, "Divided Basics"), (50, "Divided Projects"),
           (52, "Divided Accessories")], "Divided "),
    "F": ("Menswear", 3, "Menswear", 0.114,
          [(20, "Contemporary Smart"), (21, "Contemporary Casual"), (55, "Contemporary Street"),
           (26, "Men Underwear"), (25, "Men Accessories")], "Men "),
    "G": ("Baby Sizes 50-98", 4, "Baby/Children", 0.07,
          [(44, "Baby Essentials & Complements"), (40, "Baby Girl"), (41, "Baby Boy")], "Baby "),
    "H": ("Children Sizes 92-140", 4, "Baby/Children", 0.126,
          [(76, "Kids Girl"), (46, "Kids Boy"), (45, "Kids Outerwear")], "Kids "),
    "I": ("Children Sizes 134-170", 4, "Baby/Children", 0.096,
          [(77, "Young Girl"), (47, "Young Boy"), (79, "Girls Underwear & Basics")], "Young "),
    "J": ("Children Accessories, Swimwear", 4, "Baby/Children", 0.043,
          [(42, "Kids & Baby Shoes"), (43, "Kids Accessories, Swimwear & D")], "Kids Acc "),
    "S": ("Sport", 26, "Sport", 0.034,
          [(5, "Ladies H&M Sport"), (22, "Men H&M Sport"), (49, "Kids Sports")], "Sport "),
}
INDEX_GROUPS = ["Ladieswear", "Divided", "Menswear", "Baby/Children", "Sport"]
INDEX_GROUP_CUSTOMER_SHARE = [0.45, 0.20, 0.12, 0.15, 0.08]
INDEX_GROUP_AGE = [(40.0, 13.0), (23.0, 5.0), (36.0, 12.0), (34.0, 7.0), (30.0, 9.0)]  # (mean, sd) years

# product type: (no, name, product group, garment group no, garment group name, silhouette,
#                list-price range in SEK, noun for names)
PRODUCT_TYPES = [
    (255, "T-shirt", "Garment Upper body", 1002, "Jersey Basic", "tee", (5.99, 14.99), "tee"),
    (254, "Top", "Garment Upper body", 1005, "Jersey Fancy", "tee", (9.99, 24.99), "top"),
    (253, "Vest top", "Garment Upper body", 1002, "Jersey Basic", "vest", (4.99, 12.99), "vest"),
    (252, "Sweater", "Garment Upper body", 1003, "Knitwear", "sweater", (19.99, 39.99), "sweater"),
    (245, "Cardigan", "Garment Upper body", 1003, "Knitwear", "jacket", (19.99, 39.99), "cardigan"),
    (258, "Blouse", "Garment Upper body", 1010, "Blouses", "sweater", (14.99, 34.99), "blouse"),
    (259, "Shirt", "Garment Upper body", 1011, "Shirts", "jacket", (14.99, 29.99), "shirt"),
    (262, "Jacket", "Garment Upper body", 1007, "Outdoor", "jacket", (29.99, 79.99), "jacket"),
    (263, "Coat", "Garment Upper body", 1007, "Outdoor", "coat", (49.99, 99.99), "coat"),
    (308, "Hoodie", "Garment Upper body", 1005, "Jersey Fancy", "hoodie", (14.99, 29.99), "hoodie"),
    (272, "Trousers", "Garment Lower body", 1009, "Trousers", "trousers", (19.99, 39.99), "trousers"),
    (273, "Leggings/Tights", "Garment Lower body", 1002, "Jersey Basic", "leggings", (7.99, 19.99), "leggings"),
    (274, "Shorts", "Garment Lower body", 1025, "Shorts", "shorts", (9.99, 24.99), "shorts"),
    (275, "Skirt", "Garment Lower body", 1012, "Skirts", "skirt", (14.99, 29.99), "skirt"),
    (265, "Dress", "Garment Full body", 1013, "Dresses Ladies", "dress", (19.99, 49.99), "dress"),
    (267, "Jumpsuit/Playsuit", "Garment Full body", 1005, "Jersey Fancy", "jumpsuit", (19.99, 39.99), "jumpsuit"),
    (306, "Bra", "Underwear", 1017, "Under-, Nightwear", "bra", (9.99, 24.99), "bra"),
    (286, "Underwear bottom", "Underwear", 1017, "Under-, Nightwear", "briefs", (4.99, 9.99), "brief"),
    (298, "Bikini top", "Swimwear", 1018, "Swimwear", "bra", (9.99, 19.99), "bikini top"),
    (59, "Swimwear bottom", "Swimwear", 1018, "Swimwear", "briefs", (7.99, 14.99), "bikini bottom"),
    (57, "Swimsuit", "Swimwear", 1018, "Swimwear", "swimsuit", (14.99, 29.99), "swimsuit"),
    (297, "Pyjama set", "Nightwear", 1017, "Under-, Nightwear", "jumpsuit", (14.99, 29.99), "pyjama"),
    (302, "Socks", "Socks & Tights", 1021, "Socks and Tights", "sock", (2.99, 7.99), "socks"),
    (304, "Underwear Tights", "Socks & Tights", 1021, "Socks and Tights", "leggings", (4.99, 9.99), "tights"),
    (94, "Sneakers", "Shoes", 1020, "Shoes", "shoe", (19.99, 49.99), "sneakers"),
    (87, "Boots", "Shoes", 1020, "Shoes", "boot", (29.99, 79.99), "boots"),
    (91, "Sandals", "Shoes", 1020, "Shoes", "sandal", (14.99, 29.99), "sandals"),
    (86, "Ballerinas", "Shoes", 1020, "Shoes", "shoe", (14.99, 24.99), "ballerinas"),
    (66, "Bag", "Accessories", 1019, "Accessories", "bag", (14.99, 39.99), "bag"),
    (75, "Hat/beanie", "Accessories", 1019, "Accessories", "hat", (7.99, 14.99), "beanie"),
    (80, "Scarf", "Accessories", 1019, "Accessories", "scarf", (9.99, 19.99), "scarf"),
    (70, "Earring", "Accessories", 1019, "Accessories", "earring", (4.99, 12.99), "earrings"),
    (67, "Belt", "Accessories", 1019, "Accessories", "belt", (7.99, 14.99), "belt"),
    (81, "Sunglasses", "Accessories", 1019, "Accessories", "sunglasses", (9.99, 14.99), "sunglasses"),
    (71, "Gloves", "Accessories", 1019, "Accessories", "gloves", (7.99, 14.99), "gloves"),
]
_TYPE_BY_NAME = {t[1]: i for i, t in enumerate(PRODUCT_TYPES)}

# product types each index offers, with relative weights
INDEX_TYPES = {
    "A": {"T-shirt": 3, "Top": 4, "Vest top": 2, "Sweater": 4, "Cardigan": 1.5, "Blouse": 4, "Shirt": 1.5,
          "Jacket": 2, "Coat": 1, "Hoodie": 1, "Trousers": 5, "Leggings/Tights": 1, "Shorts": 1.5, "Skirt": 2,
          "Dress": 6, "Jumpsuit/Playsuit": 1},
    "B": {"Bra": 5, "Underwear bottom": 5, "Bikini top": 2.5, "Swimwear bottom": 3, "Swimsuit": 1,
          "Pyjama set": 2, "Underwear Tights": 2, "Socks": 1},
    "C": {"Bag": 4, "Hat/beanie": 2, "Scarf": 2, "Earring": 3, "Belt": 1.5, "Sunglasses": 1.5, "Gloves": 1,
          "Sneakers": 1, "Boots": 2, "Sandals": 1.5, "Ballerinas": 1},
    "D": {"T-shirt": 3, "Top": 4, "Vest top": 2, "Sweater": 3, "Hoodie": 2, "Blouse": 2, "Jacket": 1.5,
          "Trousers": 5, "Shorts": 2, "Skirt": 2, "Dress": 5, "Earring": 1, "Bag": 0.7},
    "F": {"T-shirt": 5, "Sweater": 3, "Hoodie": 2, "Shirt": 4, "Jacket": 2, "Coat": 1, "Trousers": 6,
          "Shorts": 2, "Underwear bottom": 2, "Socks": 2, "Hat/beanie": 1, "Belt": 0.5, "Sneakers": 1, "Boots": 0.5},
    "G": {"T-shirt": 3, "Top": 2, "Sweater": 2, "Trousers": 3, "Leggings/Tights": 2, "Dress": 1.5,
          "Jumpsuit/Playsuit": 3, "Socks": 2, "Hat/beanie": 1.5},
    "H": {"T-shirt": 4, "Top": 3, "Sweater": 3, "Hoodie": 2, "Jacket": 1.5, "Trousers": 4, "Leggings/Tights": 2,
          "Shorts": 2, "Skirt": 1, "Dress": 3, "Pyjama set": 1.5},
    "I": {"T-shirt": 4, "Top": 3, "Sweater": 3, "Hoodie": 2.5, "Trousers": 4, "Shorts": 2, "Skirt": 1,
          "Dress": 2.5, "Underwear bottom": 1, "Bra": 0.5},
    "J": {"Hat/beanie": 2, "Sneakers": 2, "Boots": 1.5, "Sandals": 1.5, "Bag": 1, "Swimsuit": 1.5,
          "Swimwear bottom": 1, "Socks": 2, "Gloves": 1},
    "S": {"Vest top": 2, "T-shirt": 2, "Bra": 2, "Leggings/Tights": 4, "Shorts": 2, "Jacket": 1.5, "Hoodie": 1,
          "Sneakers": 0.5},
}

# colour group: (code, name, RGB, perceived value id, value name, perceived master id, master name, weight)
COLOURS = [
    (9, "Black", (22, 22, 24), 4, "Dark", 5, "Black", 18.0),
    (10, "White", (246, 246, 243), 3, "Light", 9, "White", 9.0),
    (11, "Off White", (236, 229, 211), 1, "Dusty Light", 9, "White", 3.0),
    (12, "Light Beige", (226, 206, 176), 1, "Dusty Light", 11, "Beige", 3.0),
    (13, "Beige", (200, 175, 140), 2, "Medium Dusty", 11, "Beige", 3.0),
    (14, "Dark Beige", (160, 130, 95), 4, "Dark", 11, "Beige", 1.0),
    (17, "Yellowish Brown", (150, 105, 50), 2, "Medium Dusty", 13, "Brown", 1.5),
    (19, "Greenish Khaki", (110, 110, 70), 4, "Dark", 20, "Khaki green", 2.0),
    (21, "Light Yellow", (250, 235, 150), 3, "Light", 8, "Yellow", 1.0),
    (22, "Yellow", (240, 200, 40), 5, "Bright", 8, "Yellow", 1.5),
    (31, "Light Orange", (250, 180, 130), 1, "Dusty Light", 3, "Orange", 1.2),
    (32, "Orange", (240, 120, 30), 7, "Medium", 3, "Orange", 0.8),
    (42, "Red", (200, 30, 40), 5, "Bright", 18, "Red", 2.5),
    (43, "Dark Red", (120, 20, 35), 4, "Dark", 18, "Red", 2.0),
    (51, "Light Pink", (245, 190, 200), 1, "Dusty Light", 4, "Pink", 4.0),
    (52, "Pink", (235, 120, 160), 2, "Medium Dusty", 4, "Pink", 1.5),
    (53, "Dark Pink", (190, 50, 110), 4, "Dark", 4, "Pink", 0.7),
    (61, "Light Purple", (200, 170, 220), 1, "Dusty Light", 6, "Lilac Purple", 0.6),
    (62, "Purple", (120, 60, 150), 2, "Medium Dusty", 6, "Lilac Purple", 0.4),
    (6, "Light Grey", (200, 200, 200), 1, "Dusty Light", 12, "Grey", 2.0),
    (7, "Grey", (140, 140, 140), 2, "Medium Dusty", 12, "Grey", 3.0),
    (8, "Dark Grey", (70, 70, 72), 4, "Dark", 12, "Grey", 2.0),
    (71, "Light Blue", (160, 195, 230), 1, "Dusty Light", 2, "Blue", 3.0),
    (72, "Blue", (50, 90, 170), 2, "Medium Dusty", 2, "Blue", 4.0),
    (73, "Dark Blue", (25, 35, 80), 4, "Dark", 2, "Blue", 11.0),
    (81, "Light Turquoise", (150, 220, 215), 3, "Light", 7, "Turquoise", 0.7),
    (82, "Turquoise", (30, 160, 160), 7, "Medium", 7, "Turquoise", 0.5),
    (91, "Light Green", (170, 215, 160), 3, "Light", 19, "Green", 0.8),
    (92, "Green", (50, 140, 60), 2, "Medium Dusty", 19, "Green", 1.0),
    (93, "Dark Green", (25, 70, 40), 4, "Dark", 19, "Green", 1.5),
    (5, "Gold", (212, 175, 55), 5, "Bright", 15, "Metal", 0.7),
    (3, "Silver", (190, 190, 200), 3, "Light", 15, "Metal", 0.5),
]

# graphical appearance: (no, name, pattern drawn, weight)
APPEARANCES = [
    (1010016, "Solid", "solid", 46.0),
    (1010001, "All over pattern", "allover", 17.0),
    (1010010, "Melange", "melange", 6.0),
    (1010023, "Denim", "denim", 5.0),
    (1010017, "Stripe", "stripe", 4.5),
    (1010008, "Front print", "print", 3.0),
    (1010014, "Placement print", "print", 3.0),
    (1010004, "Check", "check", 2.2),
    (1010005, "Colour blocking", "block", 2.0),
    (1010006, "Dot", "dot", 1.5),
    (1010021, "Lace", "lace", 1.5),
]
PATTERNS = ["solid", "allover", "melange", "denim", "stripe", "print", "check", "block", "dot", "lace"]

_NAMES = ["Marcella", "Johnny", "Logan", "Mary", "Beth", "Cilla", "Ronny", "Venice", "Montana", "Malaga",
          "Zeppelin", "Denise", "Chelsea", "Fizz", "Pola", "Cusco", "Veronica", "Samantha", "Acacia", "Tilda",
          "Hanna", "Oscar", "Sigge", "Elsa", "Luna", "Milo", "Nova", "Vera", "Ines", "Kim", "Alma", "Frida",
          "Harry", "Iris", "Jade", "Klara", "Leo", "Maja", "Nils", "Olivia", "Pixie", "Rio", "Stella", "Tokyo",
          "Ulla", "Wilma", "Yara", "Zoe", "Bamse", "Capri", "Dakota", "Echo", "Flora", "Gina", "Holly", "Ivy"]
_NAME_STYLES = ["", "", "", "basic ", "slim ", "relaxed ", "HW ", "l/s ", "s/s ", "fancy ", "soft ", "2p "]
_FITS = ["Fitted", "Relaxed-fit", "Loose-fit", "Regular-fit", "Short", "Long", "Oversized", "Slim-fit"]
_MATERIALS = ["soft cotton jersey", "a fine-knit viscose blend", "woven fabric", "washed denim",
              "organic cotton", "recycled polyester", "a soft rib knit", "airy linen", "sturdy twill",
              "imitation leather", "lyocell-blend fabric"]
_FEATURES = ["a round neckline", "long sleeves", "short sleeves", "a V-neck", "side pockets",
             "an elasticated waist", "a zip at the front", "buttons down the front", "dropped shoulders",
             "ribbing around the neckline, cuffs and hem", "a concealed zip", "adjustable straps",
             "a wide waist panel", "a rounded hem", "a chest pocket", "gently flared legs"]

_WEEKDAY_WEIGHT = np.array([0.92, 0.9, 0.95, 1.0, 1.08, 1.15, 1.0])   # Mon..Sun

# ------------------------------------------------------------------ helpers --
def _hex_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random 64-character lowercase hex strings (numpy ``<U64``), like the competition's hashed ids."""
    raw = rng.bytes(32 * n)
    return np.frombuffer(raw.hex().encode("ascii"), dtype="S64").astype("U64")


def _topk_without_replacement(rng: np.random.Generator, log_weights: np.ndarray, k: int) -> np.ndarray:
    """Weighted sampling of ``k`` distinct columns per row (Gumbel top-k).

    ``log_weights`` float [n, m] (-inf = never); returns int [n, k] column indices.
    """
    g = log_weights - np.log(-np.log(rng.random(log_weights.shape)))
    return np.argsort(-g, axis=1)[:, :k]


def _categorical(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """``size`` draws from the categorical distribution ``p`` (float [m], any scale) as int64 indices."""
    cum = np.cumsum(np.asarray(p, dtype=np.float64))
    return np.minimum(np.searchsorted(cum, rng.random(size) * cum[-1], side="right"), len(cum) - 1)


def _price_points(lo: float, hi: float) -> np.ndarray:
    pts = np.array([2.99, 4.99, 5.99, 7.99, 9.99, 12.99, 14.99, 17.99, 19.99, 24.99, 29.99, 34.99, 39.99,
                    49.99, 59.99, 69.99, 79.99, 99.99])
    return pts[(pts >= lo - 1e-9) & (pts <= hi + 1e-9)]


# --------------------------------------------------------------- catalogue --
def _make_articles(rng: np.random.Generator, n_articles: int, n_days: int):
    """Draw the catalogue. Returns (articles DataFrame in ``ARTICLE_COLUMNS`` order with
    ``article_id``/``product_code`` as zero-padded strings, truth dict of numpy arrays
    aligned with the rows: type index, colour index, pattern index, index-group
    index, launch day, tau (days), popularity, list price (SEK), product start row, variant count)."""
    # variants per product: 1 + geometric, capped at 8, cut so the total is exactly n_articles
    n_var = np.minimum(rng.geometric(0.45, size=n_articles), 8)
    cut = int(np.searchsorted(np.cumsum(n_var), n_articles))
    n_var = n_var[: cut + 1].copy()
    n_var[-1] -= int(n_var.sum()) - n_articles
    n_prod = len(n_var)

    codes = np.sort(rng.choice(np.arange(108_775, 959_462), size=n_prod, replace=False))
    idx_codes = list(INDEXES)
    prod_index = _categorical(rng, [INDEXES[c][3] for c in idx_codes], n_prod)
    prod_type = np.empty(n_prod, dtype=np.int64)
    for i, code in enumerate(idx_codes):
        sel = np.flatnonzero(prod_index == i)
        names = list(INDEX_TYPES[code])
        draws = _categorical(rng, list(INDEX_TYPES[code].values()), len(sel))
        prod_type[sel] = [_TYPE_BY_NAME[names[j]] for j in draws]
    prod_app = _categorical(rng, [a[3] for a in APPEARANCES], n_prod)
    prod_section = rng.integers(0, 1 << 30, size=n_prod)
    launch = rng.integers(-180, max(n_days - 10, 1), size=n_prod)
    evergreen = rng.random(n_prod) < 0.10
    tau = np.where(evergreen, 700.0, 56.0 * np.exp(rng.normal(0.0, 0.5, size=n_prod)))
    pop = np.exp(rng.normal(0.0, 1.1, size=n_prod))
    price_u = rng.random(n_prod)
    name_a = rng.integers(0, len(_NAMES), n_prod)
    name_s = rng.integers(0, len(_NAME_STYLES), n_prod)
    upper = rng.random(n_prod) < 0.2
    desc_fit = rng.integers(0, len(_FITS), n_prod)
    desc_mat = rng.integers(0, len(_MATERIALS), n_prod)
    desc_f = rng.integers(0, len(_FEATURES), (n_prod, 2))
    desc_missing = rng.random(n_prod) < 0.004

    # colours of the variants: distinct within a product, weighted by commonness
    colour_logw = np.log(np.array([c[7] for c in COLOURS]))
    prod_colours = np.empty((n_prod, 8), dtype=np.int64)
    for start in range(0, n_prod, 100_000):
        stop = min(start + 100_000, n_prod)
        prod_colours[start:stop] = _topk_without_replacement(
            rng, np.broadcast_to(colour_logw, (stop - start, len(COLOURS))), 8)

    # expand products to articles
    art_prod = np.repeat(np.arange(n_prod), n_var)
    prod_start = np.concatenate([[0], np.cumsum(n_var)[:-1]])
    variant = np.arange(n_articles) - prod_start[art_prod]
    art_colour = prod_colours[art_prod, variant]
    art_app = prod_app[art_prod].copy()
    switch = rng.random(n_articles) < 0.15
    art_app[switch] = _categorical(rng, [a[3] for a in APPEARANCES], int(switch.sum()))
    art_launch = launch[art_prod] + rng.integers(0, 15, n_articles) * (variant > 0)
    art_pop = pop[art_prod] * np.exp(rng.normal(0.0, 0.4, n_articles))

    # tables -> columns
    t_no = np.array([t[0] for t in PRODUCT_TYPES]); t_name = np.array([t[1] for t in PRODUCT_TYPES], dtype=object)
    t_group = np.array([t[2] for t in PRODUCT_TYPES], dtype=object)
    t_gg_no = np.array([t[3] for t in PRODUCT_TYPES]); t_gg_name = np.array([t[4] for t in PRODUCT_TYPES], dtype=object)
    t_noun = [t[7] for t in PRODUCT_TYPES]
    ptype = prod_type[art_prod]
    pindex = prod_index[art_prod]
    app_no = np.array([a[0] for a in APPEARANCES]); app_name = np.array([a[1] for a in APPEARANCES], dtype=object)
    c_code = np.array([c[0] for c in COLOURS]); c_name = np.array([c[1] for c in COLOURS], dtype=object)
    c_vid = np.array([c[3] for c in COLOURS]); c_vname = np.array([c[4] for c in COLOURS], dtype=object)
    c_mid = np.array([c[5] for c in COLOURS]); c_mname = np.array([c[6] for c in COLOURS], dtype=object)
    i_code = np.array(idx_codes, dtype=object)
    i_name = np.array([INDEXES[c][0] for c in idx_codes], dtype=object)
    i_gno = np.array([INDEXES[c][1] for c in idx_codes])
    i_gname = np.array([INDEXES[c][2] for c in idx_codes], dtype=object)
    group_of_index = np.array([INDEX_GROUPS.index(INDEXES[c][2]) for c in idx_codes])

    # garment group: denim trousers/shorts/skirts are "Trousers Denim"
    gg_no = t_gg_no[ptype].copy(); gg_name = t_gg_name[ptype].copy()
    denim = (np.array([APPEARANCES[a][2] for a in range(len(APPEARANCES))])[art_app] == "denim") & \
        np.isin(t_name[ptype], ["Trousers", "Shorts", "Skirt"])
    gg_no[denim] = 1016; gg_name[denim] = "Trousers Denim"
    # department: one per (index, garment group); 4-digit numbers unique by construction
    dept_no = 1000 + pindex * 900 + (gg_no - 1000) * 30 + 7
    prefixes = np.array([INDEXES[c][5] for c in idx_codes], dtype=object)
    dept_name = prefixes[pindex] + gg_name
    # section: one of the index's sections
    sec_sizes = np.array([len(INDEXES[c][4]) for c in idx_codes])
    sec_pick = (prod_section[art_prod] % sec_sizes[pindex])
    sec_no = np.array([INDEXES[idx_codes[i]][4][s][0] for i, s in zip(pindex, sec_pick)], dtype=np.int64)
    sec_name = np.array([INDEXES[idx_codes[i]][4][s][1] for i, s in zip(pindex, sec_pick)], dtype=object)

    # names and descriptions (per product)
    prod_name = np.array([
        (f"{_NAMES[a]} {_NAME_STYLES[s]}{t_noun[t]}".upper() if u else f"{_NAMES[a]} {_NAME_STYLES[s]}{t_noun[t]}")
        for a, s, t, u in zip(name_a, name_s, prod_type, upper)], dtype=object)
    prod_desc = np.array([
        None if miss else
        f"{_FITS[fi]} {t_noun[t]} in {_MATERIALS[m]} with {_FEATURES[f1]} and {_FEATURES[f2]}."
        for fi, t, m, (f1, f2), miss in zip(desc_fit, prod_type, desc_mat, desc_f, desc_missing)], dtype=object)

    # list price: a price point of the product type's range
    list_price = np.empty(n_prod)
    for ti, t in enumerate(PRODUCT_TYPES):
        sel = prod_type == ti
        pts = _price_points(*t[6])
        list_price[sel] = pts[np.minimum((price_u[sel] * len(pts)).astype(int), len(pts) - 1)]

    code_str = np.char.zfill(codes.astype(str), 7)
    art_id_str = np.char.add(code_str[art_prod], np.char.zfill((variant + 1).astype(str), 3))
    articles = pd.DataFrame({
        "article_id": art_id_str.astype(object), "product_code": code_str[art_prod].astype(object),
        "prod_name": prod_name[art_prod], "product_type_no": t_no[ptype], "product_type_name": t_name[ptype],
        "product_group_name": t_group[ptype],
        "graphical_appearance_no": app_no[art_app], "graphical_appearance_name": app_name[art_app],
        "colour_group_code": c_code[art_colour], "colour_group_name": c_name[art_colour],
        "perceived_colour_value_id": c_vid[art_colour], "perceived_colour_value_name": c_vname[art_colour],
        "perceived_colour_master_id": c_mid[art_colour], "perceived_colour_master_name": c_mname[art_colour],
        "department_no": dept_no, "department_name": dept_name,
        "index_code": i_code[pindex], "index_name": i_name[pindex],
        "index_group_no": i_gno[pindex], "index_group_name": i_gname[pindex],
        "section_no": sec_no, "section_name": sec_name,
        "garment_group_no": gg_no, "garment_group_name": gg_name,
        "detail_desc": prod_desc[art_prod],
    })[C.ARTICLE_COLUMNS]
    truth = dict(
        type=ptype, colour=art_colour, appearance=art_app,
        pattern=np.array([PATTERNS.index(a[2]) for a in APPEARANCES])[art_app],
        group=group_of_index[pindex], launch=art_launch.astype(np.int64), tau=tau[art_prod], pop=art_pop,
        list_price=list_price[art_prod], prod_start=prod_start[art_prod], n_var=n_var[art_prod],
    )
    return articles, truth


# --------------------------------------------------------------- customers --
def _make_customers(rng: np.random.Generator, n_customers: int, art: dict):
    """Draw customers and their hidden taste. Returns (customers DataFrame in
    ``CUSTOMER_COLUMNS`` order, taste dict of numpy arrays aligned with its rows)."""
    ids = np.sort(_hex_ids(rng, n_customers))
    group = _categorical(rng, INDEX_GROUP_CUSTOMER_SHARE, n_customers)
    # taste colours: N_TASTE weighted draws with replacement (so 1..3 distinct)
    cw = np.array([c[7] for c in COLOURS])
    pref_colour = _categorical(rng, cw, n_customers * N_TASTE).reshape(n_customers, N_TASTE)
    # taste product types: weighted by how many articles of each type the index group has
    n_types = len(PRODUCT_TYPES)
    type_w = np.zeros((len(INDEX_GROUPS), n_types))
    np.add.at(type_w, (art["group"], art["type"]), 1.0)
    pref_type = np.empty((n_customers, N_TASTE), dtype=np.int64)
    for g in range(len(INDEX_GROUPS)):
        sel = np.flatnonzero(group == g)
        w = type_w[g] if type_w[g].sum() > 0 else type_w.sum(axis=0)
        pref_type[sel] = _categorical(rng, w, len(sel) * N_TASTE).reshape(len(sel), N_TASTE)
    strength = rng.beta(6.0, 2.0, n_customers)
    repurchase = np.where(rng.random(n_customers) < 0.2, rng.beta(4.0, 6.0, n_customers),
                          rng.beta(1.0, 30.0, n_customers))
    online = rng.beta(2.5, 1.1, n_customers)
    activity = np.exp(rng.normal(0.0, 1.0, n_customers))

    mean_sd = np.array(INDEX_GROUP_AGE)
    age = np.clip(np.round(rng.normal(mean_sd[group, 0], mean_sd[group, 1])), 16, 99)
    age[rng.random(n_customers) < 0.011] = np.nan
    fn = rng.random(n_customers) < 0.35
    active = np.where(fn, rng.random(n_customers) < 0.97, rng.random(n_customers) < 0.01)
    u = rng.random(n_customers)
    club = np.select([u < 0.0044, u < 0.0048, u < 0.0688], ["", "LEFT CLUB", "PRE-CREATE"], "ACTIVE").astype(object)
    club[club == ""] = None
    u = rng.random(n_customers)
    fnf = np.where(fn, np.where(u < 0.003, "Monthly", np.where(u < 0.97, "Regularly", "NONE")), "NONE").astype(object)
    fnf[rng.random(n_customers) < 0.0117] = None
    n_post = max(1, n_customers // 3)
    post_ids = _hex_ids(rng, n_post)
    postal = post_ids[np.minimum((n_post * rng.random(n_customers) ** 3).astype(np.int64), n_post - 1)]

    customers = pd.DataFrame({
        "customer_id": ids, "FN": np.where(fn, 1.0, np.nan), "Active": np.where(active, 1.0, np.nan),
        "club_member_status": club, "fashion_news_frequency": fnf, "age": age, "postal_code": postal,
    })[C.CUSTOMER_COLUMNS]
    taste = dict(group=group, colour=pref_colour, type=pref_type, strength=strength, repurchase=repurchase,
                 online=online, activity=activity)
    return customers, taste


# ------------------------------------------------------------ transactions --
def _day_weights(start: pd.Timestamp, n_days: int) -> np.ndarray:
    """Relative shopping volume per day: summer peak, weekends, a late-November sale."""
    days = pd.date_range(start, periods=n_days, freq="D")
    doy = days.day_of_year.to_numpy()
    w = 1.0 + 0.3 * np.sin(2 * np.pi * (doy - 90) / 365.25)
    w *= _WEEKDAY_WEIGHT[days.day_of_week.to_numpy()]
    w *= np.where((days.month == 11) & (days.day >= 22) & (days.day <= 30), 1.8, 1.0)
    w *= np.linspace(1.0, 0.85, n_days)
    return w


def _make_transactions(rng: np.random.Generator, n_transactions: int, n_days: int, start: pd.Timestamp,
                       art: dict, taste: dict, progress: bool):
    """Draw the transactions in output order (by day). Returns a dict of numpy
    arrays, one row per transaction: day (int16, days from ``start``), customer
    (int32 row of customers.csv), article (int32 row of articles.csv), price
    (float64), channel (int8)."""
    from tqdm.auto import tqdm

    n_art = len(art["type"])
    # baskets
    sizes = 1 + rng.poisson(1.7, size=int(n_transactions / 2.7 * 1.1) + 16)
    cum = np.cumsum(sizes)
    while cum[-1] < n_transactions:  # pragma: no cover - 10 % margin makes this rare
        sizes = np.concatenate([sizes, 1 + rng.poisson(1.7, size=len(sizes))]); cum = np.cumsum(sizes)
    n_b = int(np.searchsorted(cum, n_transactions)) + 1
    sizes = sizes[:n_b]
    sizes[-1] -= int(sizes.sum()) - n_transactions
    b_cust = _categorical(rng, taste["activity"], n_b).astype(np.int32)
    b_day = _categorical(rng, _day_weights(start, n_days), n_b).astype(np.int16)
    b_chan = np.where(rng.random(n_b) < taste["online"][b_cust], 2, 1).astype(np.int8)
    order = np.argsort(b_day, kind="stable")
    b_cust, b_day, b_chan, sizes = b_cust[order], b_day[order], b_chan[order], sizes[order]
    del order
    cust = np.repeat(b_cust, sizes)
    day = np.repeat(b_day, sizes)
    chan = np.repeat(b_chan, sizes)
    b_first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    first_of_item = np.repeat(b_first, sizes)
    del b_cust, b_day, b_chan

    # articles sorted by (index group, product type, colour) and by (index group, colour, product type):
    # every taste cell is a contiguous range of one of the two orders
    n_types, n_col = len(PRODUCT_TYPES), len(COLOURS)
    n_g = len(INDEX_GROUPS)
    order_a = np.argsort((art["group"] * n_types + art["type"]) * n_col + art["colour"], kind="stable")
    order_b = np.argsort((art["group"] * n_col + art["colour"]) * n_types + art["type"], kind="stable")

    def ranges(sorted_keys, n_keys):
        k = np.arange(n_keys)
        return np.searchsorted(sorted_keys, k, "left"), np.searchsorted(sorted_keys, k, "right")

    ka = (art["group"] * n_types + art["type"])[order_a] * n_col + art["colour"][order_a]
    lo3, hi3 = ranges(ka, n_g * n_types * n_col)            # (group, type, colour) in order a
    lo2t, hi2t = ranges(ka // n_col, n_g * n_types)          # (group, type) in order a
    lo1, hi1 = ranges(ka // (n_col * n_types), n_g)          # group in order a
    kb = (art["group"] * n_col + art["colour"])[order_b]
    lo2c, hi2c = ranges(kb, n_g * n_col)                     # (group, colour) in order b
    life = [(art["launch"][o].astype(np.float64), art["tau"][o], art["pop"][o]) for o in (order_a, order_b)]

    article = np.empty(len(day), dtype=np.int32)
    week = day // 7
    bounds = np.searchsorted(week, np.arange(int(week[-1]) + 2) if len(week) else np.arange(1))
    for w in tqdm(range(len(bounds) - 1), desc="synthetic transactions", unit="week", disable=not progress):
        s, e = int(bounds[w]), int(bounds[w + 1])
        if s == e:
            continue
        cws = []
        for launch, tau, pop in life:
            age = (w * 7 + 3) - launch
            weight = np.where(age >= 0, pop * np.minimum(1.0, (age + 7) / 14) * np.exp(-np.maximum(age, 0) / tau), 0.0)
            cws.append(np.concatenate([[0.0], np.cumsum(weight)]))
        cwa, cwb = cws
        c = cust[s:e]
        n = e - s
        pick = rng.integers(0, N_TASTE, size=(n, 2))
        g = taste["group"][c]
        t = taste["type"][c, pick[:, 0]]
        col = taste["colour"][c, pick[:, 1]]
        k2t = g * n_types + t
        k3 = k2t * n_col + col
        k2c = g * n_col + col
        follow = rng.random(n) < taste["strength"][c]
        use_colour = follow & (rng.random(n) < 0.85)
        # the most specific live cell wins: (group, type, colour), else (group, colour) when the colour
        # matters, else (group, type), else the group; all articles for noise
        lo, hi = np.zeros(n, dtype=np.int64), np.full(n, n_art, dtype=np.int64)
        in_b = np.zeros(n, dtype=bool)
        for cond, clo, chi, b in ((follow, lo1[g], hi1[g], False), (follow, lo2t[k2t], hi2t[k2t], False),
                                  (use_colour, lo2c[k2c], hi2c[k2c], True), (use_colour, lo3[k3], hi3[k3], False)):
            cw = cwb if b else cwa
            ok = cond & (cw[chi] > cw[clo])
            lo = np.where(ok, clo, lo); hi = np.where(ok, chi, hi); in_b = np.where(ok, b, in_b)
        for b, cw, order in ((False, cwa, order_a), (True, cwb, order_b)):
            sel = np.flatnonzero(in_b == b)
            if len(sel) == 0:
                continue
            l, h = lo[sel], hi[sel]
            u = cw[l] + rng.random(len(sel)) * (cw[h] - cw[l])
            pos = np.clip(np.searchsorted(cw, u, side="right") - 1, l, h - 1)
            article[s + sel] = order[pos]
    del week

    # other colours of the basket's first product
    not_first = np.arange(len(day)) != first_of_item
    move = not_first & (rng.random(len(day)) < 0.15)
    first_art = article[first_of_item[move]]
    offset = (rng.random(int(move.sum())) * art["n_var"][first_art]).astype(np.int64)
    article[move] = art["prod_start"][first_art] + offset
    del not_first, move, first_of_item

    # repurchases: replace with one of the same customer's earlier purchases
    by_cust = np.argsort(cust, kind="stable")  # chronological within a customer
    cs = cust[by_cust]
    starts = np.searchsorted(cs, cs, side="left")
    rank = np.arange(len(cs)) - starts
    rep = (rank > 0) & (rng.random(len(cs)) < taste["repurchase"][cs])
    src = starts[rep] + (rng.random(int(rep.sum())) * rank[rep]).astype(np.int64)
    article[by_cust[rep]] = article[by_cust[src]]
    del by_cust, cs, starts, rank, rep, src

    # prices: list price / 590, a sale discount on a quarter of the rows
    disc = np.where(rng.random(len(day)) < 0.25, rng.choice([0.5, 0.6, 0.7, 0.8], size=len(day)), 1.0)
    price = np.round(art["list_price"][article] * disc, 2) / PRICE_SCALE
    return dict(day=day, customer=cust, article=article, price=price, channel=chan)


# ------------------------------------------------------------------- images --
def _shape(name: str):
    """Silhouette primitives in a unit box (x right, y down): list of (kind, data)."""
    P = "poly"
    sweater = [(0.30, 0.10), (0.42, 0.10), (0.5, 0.15), (0.58, 0.10), (0.70, 0.10), (0.90, 0.25), (0.96, 0.80),
               (0.86, 0.82), (0.76, 0.38), (0.74, 0.88), (0.26, 0.88), (0.24, 0.38), (0.14, 0.82), (0.04, 0.80),
               (0.10, 0.25)]
    shapes = {
        "tee": [(P, [(0.30, 0.10), (0.42, 0.10), (0.5, 0.16), (0.58, 0.10), (0.70, 0.10), (0.92, 0.28),
                     (0.82, 0.36), (0.74, 0.30), (0.74, 0.90), (0.26, 0.90), (0.26, 0.30), (0.18, 0.36),
                     (0.08, 0.28)])],
        "sweater": [(P, sweater)],
        "jacket": [(P, sweater), ("line", [(0.5, 0.15), (0.5, 0.88)])],
        "coat": [(P, [(x, 0.96 if y > 0.85 else y) for x, y in sweater]), ("line", [(0.5, 0.15), (0.5, 0.96)])],
        "hoodie": [(P, sweater), ("ellipse", (0.36, 0.02, 0.64, 0.2))],
        "vest": [(P, [(0.34, 0.08), (0.40, 0.08), (0.42, 0.24), (0.58, 0.24), (0.60, 0.08), (0.66, 0.08),
                      (0.68, 0.30), (0.74, 0.40), (0.74, 0.90), (0.26, 0.90), (0.26, 0.40), (0.32, 0.30)])],
        "trousers": [(P, [(0.25, 0.06), (0.75, 0.06), (0.82, 0.95), (0.58, 0.95), (0.50, 0.32), (0.42, 0.95),
                          (0.18, 0.95)])],
        "leggings": [(P, [(0.30, 0.06), (0.70, 0.06), (0.66, 0.95), (0.54, 0.95), (0.50, 0.30), (0.46, 0.95),
                          (0.34, 0.95)])],
        "shorts": [(P, [(0.22, 0.25), (0.78, 0.25), (0.86, 0.70), (0.56, 0.72), (0.50, 0.48), (0.44, 0.72),
                        (0.14, 0.70)])],
        "skirt": [(P, [(0.32, 0.15), (0.68, 0.15), (0.86, 0.80), (0.14, 0.80)])],
        "dress": [(P, [(0.36, 0.06), (0.42, 0.06), (0.5, 0.12), (0.58, 0.06), (0.64, 0.06), (0.66, 0.34),
                       (0.62, 0.42), (0.88, 0.94), (0.12, 0.94), (0.38, 0.42), (0.34, 0.34)])],
        "jumpsuit": [(P, [(0.32, 0.06), (0.42, 0.06), (0.5, 0.12), (0.58, 0.06), (0.68, 0.06), (0.70, 0.44),
                          (0.78, 0.95), (0.56, 0.95), (0.50, 0.56), (0.44, 0.95), (0.22, 0.95), (0.30, 0.44)])],
        "bra": [(P, [(0.12, 0.42), (0.30, 0.26), (0.46, 0.40), (0.5, 0.42), (0.54, 0.40), (0.70, 0.26),
                     (0.88, 0.42), (0.88, 0.52), (0.12, 0.52)])],
        "briefs": [(P, [(0.16, 0.32), (0.84, 0.32), (0.82, 0.42), (0.58, 0.64), (0.42, 0.64), (0.18, 0.42)])],
        "swimsuit": [(P, [(0.34, 0.08), (0.40, 0.08), (0.44, 0.28), (0.56, 0.28), (0.60, 0.08), (0.66, 0.08),
                          (0.70, 0.34), (0.68, 0.62), (0.80, 0.78), (0.56, 0.86), (0.44, 0.86), (0.20, 0.78),
                          (0.32, 0.62), (0.30, 0.34)])],
        "sock": [(P, [(0.38, 0.10), (0.58, 0.10), (0.58, 0.62), (0.80, 0.72), (0.82, 0.84), (0.70, 0.88),
                      (0.38, 0.80)])],
        "shoe": [(P, [(0.08, 0.55), (0.40, 0.50), (0.55, 0.42), (0.70, 0.45), (0.90, 0.60), (0.92, 0.70),
                      (0.08, 0.70)])],
        "boot": [(P, [(0.30, 0.15), (0.58, 0.15), (0.60, 0.55), (0.88, 0.65), (0.90, 0.78), (0.30, 0.78)])],
        "sandal": [(P, [(0.08, 0.62), (0.30, 0.48), (0.35, 0.62), (0.55, 0.48), (0.60, 0.61), (0.90, 0.60),
                        (0.92, 0.68), (0.08, 0.70)])],
        "bag": [(P, [(0.18, 0.38), (0.82, 0.38), (0.88, 0.85), (0.12, 0.85)]), ("arc", (0.30, 0.18, 0.70, 0.58))],
        "hat": [(P, [(0.10, 0.55), (0.25, 0.52), (0.28, 0.35), (0.40, 0.26), (0.60, 0.26), (0.72, 0.35),
                     (0.75, 0.52), (0.90, 0.55), (0.90, 0.61), (0.10, 0.61)])],
        "scarf": [(P, [(0.30, 0.05), (0.62, 0.05), (0.70, 0.95), (0.40, 0.95)])],
        "earring": [("ellipse", (0.22, 0.40, 0.42, 0.56)), ("ellipse", (0.58, 0.40, 0.78, 0.56))],
        "belt": [(P, [(0.04, 0.46), (0.96, 0.46), (0.96, 0.54), (0.04, 0.54)]), ("rect", (0.08, 0.43, 0.2, 0.57))],
        "sunglasses": [("ellipse", (0.10, 0.40, 0.45, 0.58)), ("ellipse", (0.55, 0.40, 0.90, 0.58)),
                       ("rect", (0.42, 0.44, 0.58, 0.47))],
        "gloves": [(P, [(0.30, 0.20), (0.40, 0.20), (0.42, 0.35), (0.50, 0.18), (0.60, 0.18), (0.62, 0.40),
                        (0.72, 0.30), (0.78, 0.36), (0.66, 0.60), (0.66, 0.85), (0.32, 0.85)])],
    }
    return shapes[name]


def render_article_image(shape: str, rgb: tuple[int, int, int], pattern: str, image_size: tuple[int, int],
                         rng: np.random.Generator):
    """Draw one article image.

    Inputs: ``shape`` a silhouette name (``PRODUCT_TYPES``' 6th field), ``rgb`` the
    colour group's RGB (0..255), ``pattern`` one of ``PATTERNS``, ``image_size``
    (height, width) in pixels, ``rng`` for jitter and noise.
    Returns a ``PIL.Image.Image`` in mode RGB of that size.
    """
    from PIL import Image, ImageDraw

    h, w = image_size
    bg = int(rng.integers(228, 250))
    canvas = Image.new("RGB", (w, h), (bg, bg, bg - int(rng.integers(0, 6))))
    scale = rng.uniform(0.78, 0.98)
    bw, bh = w * scale, h * scale
    x0 = (w - bw) / 2 + rng.uniform(-0.06, 0.06) * w
    y0 = (h - bh) / 2 + rng.uniform(-0.05, 0.05) * h

    def tx(pts):
        return [(x0 + x * bw, y0 + y * bh) for x, y in pts]

    mask = Image.new("L", (w, h), 0)
    md = ImageDraw.Draw(mask)
    lw = max(1, int(round(min(w, h) * 0.03)))
    prims = _shape(shape)
    for kind, data in prims:
        if kind == "poly":
            md.polygon(tx(data), fill=255)
        elif kind in ("ellipse", "rect"):
            (a, b), (c, d) = tx([data[:2], data[2:]])
            (md.ellipse if kind == "ellipse" else md.rectangle)([a, b, c, d], fill=255)
        elif kind == "arc":
            (a, b), (c, d) = tx([data[:2], data[2:]])
            md.arc([a, b, c, d], 180, 360, fill=255, width=max(2, lw))

    base = np.array(rgb, dtype=np.float64)
    lum = base @ np.array([0.299, 0.587, 0.114])
    second = np.clip(base * 0.45, 0, 255) if lum > 110 else np.clip(base + (255 - base) * 0.65, 0, 255)
    col, col2 = tuple(int(v) for v in base), tuple(int(v) for v in second)
    fill = Image.new("RGB", (w, h), col)
    fd = ImageDraw.Draw(fill)
    step = max(4, int(min(w, h) * rng.uniform(0.08, 0.12)))
    off = int(rng.integers(0, step))
    if pattern == "stripe":
        for y in range(-step + off, h, step):
            fd.rectangle([0, y, w, y + step // 2 - 1], fill=col2)
    elif pattern == "check":
        for y in range(-step + off, h, step * 2):
            fd.rectangle([0, y, w, y + step - 1], fill=col2)
        for x in range(-step + off, w, step * 2):
            fd.rectangle([x, 0, x + step // 2, h], fill=col2)
    elif pattern == "dot":
        r = max(1, step // 4)
        for y in range(off, h, step):
            for x in range((y // step % 2) * step // 2, w, step):
                fd.ellipse([x - r, y - r, x + r, y + r], fill=col2)
    elif pattern == "allover":
        n = int(w * h / (step * step) * 1.2)
        xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
        rs = rng.uniform(0.15, 0.4, n) * step
        for x, y, r in zip(xs, ys, rs):
            fd.ellipse([x - r, y - r, x + r, y + r], fill=col2)
    elif pattern == "print":
        cx, cy = x0 + bw * 0.5, y0 + bh * rng.uniform(0.35, 0.5)
        r = bw * rng.uniform(0.12, 0.2)
        fd.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col2)
        fd.rectangle([cx - r * 0.9, cy + r * 1.3, cx + r * 0.9, cy + r * 1.6], fill=col2)
    elif pattern == "block":
        fd.rectangle([0, y0 + bh * rng.uniform(0.4, 0.6), w, h], fill=col2)
    elif pattern == "lace":
        r = max(1, step // 3)
        for y in range(off, h, step):
            for x in range(0, w, step):
                fd.ellipse([x - r, y - r, x + r, y + r], outline=col2)
    elif pattern == "denim":
        for x in range(-h, w, max(2, step // 3)):
            fd.line([(x, h), (x + h, 0)], fill=col2, width=1)
    canvas.paste(fill, (0, 0), mask)
    # outline and construction lines, darker than the garment, so white garments still show
    dark = tuple(int(v * 0.6) for v in base)
    cd = ImageDraw.Draw(canvas)
    for kind, data in prims:
        if kind == "poly":
            pts = tx(data)
            cd.line(pts + pts[:1], fill=dark, width=1)
        elif kind == "line":
            cd.line(tx(data), fill=dark, width=max(1, lw // 2))
    arr = np.asarray(canvas, dtype=np.int16)
    sigma = 14.0 if pattern == "melange" else 4.0
    arr = arr + rng.normal(0.0, sigma, size=arr.shape[:2] + (1,)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _render_chunk(args) -> int:
    """Worker: render and save one chunk of images. ``args`` = (root, image_size, seed, rows) where
    rows are (article_row, article_id, shape, rgb, pattern). Returns the number written."""
    root, image_size, seed, rows = args
    root = Path(root)
    for row, aid, shape, rgb, pattern in rows:
        img = render_article_image(shape, rgb, pattern, image_size, np.random.default_rng([seed, row]))
        path = root / C.image_relpath(int(aid))
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, format="JPEG", quality=88)
    return len(rows)


def _write_images(root: Path, articles: pd.DataFrame, art: dict, has_image: np.ndarray,
                  image_size: tuple[int, int], seed: int, workers: int, progress: bool) -> int:
    from tqdm.auto import tqdm

    rows = [(int(i), articles["article_id"].iat[i], PRODUCT_TYPES[art["type"][i]][5], COLOURS[art["colour"][i]][2],
             PATTERNS[art["pattern"][i]]) for i in np.flatnonzero(has_image)]
    chunk = 64
    jobs = [(str(root), tuple(image_size), int(seed), rows[i:i + chunk]) for i in range(0, len(rows), chunk)]
    bar = tqdm(total=len(rows), desc="synthetic images", unit="img", disable=not progress)
    if workers > 1 and len(rows) > 400:
        import multiprocessing as mp
        # spawn: safe even when the caller has TensorFlow (threads) loaded
        with mp.get_context("spawn").Pool(workers) as pool:
            for n in pool.imap_unordered(_render_chunk, jobs):
                bar.update(n)
    else:
        for job in jobs:
            bar.update(_render_chunk(job))
    bar.close()
    return len(rows)


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


def _write_ground_truth(folder: Path, customers: pd.DataFrame, taste: dict, articles: pd.DataFrame, art: dict,
                        has_image: np.ndarray, start: pd.Timestamp) -> None:
    """Write ``customer_taste.parquet`` and ``article_truth.parquet`` (see :func:`load_ground_truth`)."""
    def distinct(table: np.ndarray, draws: np.ndarray, arrow_type) -> pa.Array:
        return pa.array([sorted(set(r)) for r in table[draws].tolist()], pa.list_(arrow_type))

    colour_codes = np.array([c[0] for c in COLOURS], dtype=np.int32)
    colour_names = np.array([c[1] for c in COLOURS])
    type_nos = np.array([t[0] for t in PRODUCT_TYPES], dtype=np.int32)
    type_names = np.array([t[1] for t in PRODUCT_TYPES])
    write_parquet(pa.table({
        "customer_id": pa.array(customers["customer_id"].to_numpy(dtype=str)),
        "index_group_name": pa.array(np.array(INDEX_GROUPS)[taste["group"]]),
        "colour_group_codes": distinct(colour_codes, taste["colour"], pa.int32()),
        "colour_group_names": distinct(colour_names, taste["colour"], pa.string()),
        "product_type_nos": distinct(type_nos, taste["type"], pa.int32()),
        "product_type_names": distinct(type_names, taste["type"], pa.string()),
        "taste_strength": taste["strength"], "repurchase_rate": taste["repurchase"],
        "online_share": taste["online"], "activity": taste["activity"],
    }), folder / CUSTOMER_TASTE_PARQUET)
    launch = (start + pd.to_timedelta(art["launch"], unit="D")).to_numpy().astype("datetime64[D]")
    write_parquet(pa.table({
        "article_id": pa.array(articles["article_id"].to_numpy(dtype=str)),
        "launch_date": pa.array(launch), "lifetime_days": art["tau"], "popularity": art["pop"],
        "list_price_sek": art["list_price"], "has_image": has_image,
    }), folder / ARTICLE_TRUTH_PARQUET)


def _params(n_articles, n_customers, n_transactions, image_size, seed, images, missing_image_share, start, end):
    return {"n_articles": int(n_articles), "n_customers": int(n_customers), "n_transactions": int(n_transactions),
            "image_size": [int(image_size[0]), int(image_size[1])], "seed": int(seed), "images": bool(images),
            "missing_image_share": float(missing_image_share), "start": str(start), "end": str(end),
            "format_version": FORMAT_VERSION}


def is_complete(out_dir: str | Path, params: dict | None = None) -> bool:
    """True when ``out_dir`` holds a finished synthetic dataset (its ``.complete``
    marker exists and, when ``params`` is given, records those parameters)."""
    marker = Path(out_dir) / COMPLETE_MARKER
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
    params = _params(n_articles, n_customers, n_transactions, image_size, seed, images, missing_image_share,
                     start, end)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    t0 = time.perf_counter()
    try:
        rng = np.random.default_rng(seed)
        rng_art, rng_cust, rng_tx, rng_img = (np.random.default_rng(s) for s in rng.bit_generator.seed_seq.spawn(4))
        articles, art = _make_articles(rng_art, n_articles, n_days)
        customers, taste = _make_customers(rng_cust, n_customers, art)
        has_image = rng_img.random(n_articles) >= missing_image_share
        articles.to_csv(tmp / C.ARTICLES_CSV, index=False)
        customers.to_csv(tmp / C.CUSTOMERS_CSV, index=False)
        tx = _make_transactions(rng_tx, n_transactions, n_days, t_start, art, taste, progress)
        _write_transactions_csv(tmp / C.TRANSACTIONS_CSV, tx, customers["customer_id"].to_numpy(dtype=str),
                                articles["article_id"].to_numpy(dtype=str), t_start, n_days, progress)
        del tx
        _write_ground_truth(tmp / GROUND_TRUTH_DIR, customers, taste, articles, art,
                            has_image if images else np.zeros(n_articles, dtype=bool), t_start)
        n_img = 0
        if images:
            n_img = _write_images(tmp, articles, art, has_image, image_size, seed,
                                  workers if workers is not None else min(2, os.cpu_count() or 1), progress)
        (tmp / COMPLETE_MARKER).write_text(json.dumps({
            "params": params, "n_images": n_img, "seconds": round(time.perf_counter() - t0, 1),
            "generator": "hm_utils.synthetic"}, indent=2, sort_keys=True) + "\n")
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
    params = _params(p.n_articles, p.n_customers, p.n_transactions, p.synthetic_image_size, seed, images,
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
    (lists of the 1..3 distinct preferred values), ``taste_strength`` (share of
    purchases drawn from taste, 0..1), ``repurchase_rate`` (0..1),
    ``online_share`` (probability of ``sales_channel_id`` 2), ``activity``
    (relative purchase rate). FileNotFoundError when the folder is not synthetic.
    """
    import pyarrow.parquet as pq

    path = Path(data_dir) / GROUND_TRUTH_DIR / CUSTOMER_TASTE_PARQUET
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {data_dir} is not a synthetic dataset made by "
                                f"hm_utils.synthetic.generate_synthetic (real data has no ground truth)")
    return pq.read_table(path).to_pandas()
