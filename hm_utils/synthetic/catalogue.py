"""The synthetic dataset's catalogue and customers: vocabularies and draws.

Vocabularies with the real files' codes and names (index, product type,
colour group, graphical appearance) and the two draws that use them:
:func:`make_articles` (products, colour variants, launch days, selling lives,
popularity, list prices and markdowns) and :func:`make_customers` (the
customers.csv columns and each customer's hidden taste). The generative story
is told in :mod:`hm_utils.synthetic.generate`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from hm_utils.core import config as C

PRICE_SCALE = 590.0         # competition prices look like SEK list price / 590
N_TASTE = 3                 # taste draws (colours, product types) per customer

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
INDEX_GROUP_CUSTOMER_SHARE = [0.40, 0.17, 0.11, 0.28, 0.04]   # about the groups' shares of the articles
# age: three modes (mean, sd in years) and each index group's mixture weights over them; together they give
# the real customers' quartiles 24 / 32 / 49 (mean 36)
AGE_MODES = [(23.0, 3.0), (32.0, 5.0), (53.0, 10.0)]
INDEX_GROUP_AGE_MIX = [(0.30, 0.22, 0.48), (0.80, 0.20, 0.0), (0.30, 0.25, 0.45), (0.05, 0.55, 0.40),
                       (0.40, 0.25, 0.35)]

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

# ------------------------------------------------------------------ helpers --
def _hex_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random 64-character lowercase hex strings (numpy ``<U64``), like the competition's hashed ids."""
    raw = rng.bytes(32 * n)
    return np.frombuffer(raw.hex().encode("ascii"), dtype="S64").astype("U64")


def topk_without_replacement(rng: np.random.Generator, log_weights: np.ndarray, k: int) -> np.ndarray:
    """Weighted sampling of ``k`` distinct columns per row (Gumbel top-k).

    ``log_weights`` float [n, m] (-inf = never); returns int [n, k] column indices.
    """
    g = log_weights - np.log(-np.log(rng.random(log_weights.shape)))
    return np.argsort(-g, axis=1)[:, :k]


def categorical(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """``size`` draws from the categorical distribution ``p`` (float [m], any scale) as int64 indices."""
    cum = np.cumsum(np.asarray(p, dtype=np.float64))
    return np.minimum(np.searchsorted(cum, rng.random(size) * cum[-1], side="right"), len(cum) - 1)


def _price_points(lo: float, hi: float) -> np.ndarray:
    pts = np.array([2.99, 4.99, 5.99, 7.99, 9.99, 12.99, 14.99, 17.99, 19.99, 24.99, 29.99, 34.99, 39.99,
                    49.99, 59.99, 69.99, 79.99, 99.99])
    return pts[(pts >= lo - 1e-9) & (pts <= hi + 1e-9)]


# repurchase rate per customer: a share of "repeaters" (Beta around 0.3), the rest rarely (Beta near 0.02)
REPEATER_SHARE = 0.2
REPEATER_BETA = (8.0, 2.0)
OCCASIONAL_BETA = (1.0, 30.0)
REPEATER_ACTIVITY = 0.8     # correlation of the repeater score with the activity score

# ------------------------------------------------------------- lifecycle --
LIFE_MEDIAN_DAYS = 126.0    # an article sells for about 18 weeks (median) ...
LIFE_SIGMA = 1.2            # ... log-normal, so the mean is about 30 weeks and a few basics sell for years
LIFE_RANGE_DAYS = (21.0, 1400.0)
SAME_WEEK_VARIANT = 0.12    # share of later colour variants launched with the product's first one
VARIANT_DELAY_DAYS = 45.0   # mean delay of the other later variants (exponential)
MARKDOWN_AT = (0.45, 0.85)  # markdown after this part of an article's life ...
MARKDOWN_FACTORS = np.array([0.6, 0.7, 0.8])   # ... to this share of its list price
PRICE_SKEW = 2.1            # list prices lean to the low end of a product type's range (u ** skew)


def _lifecycle(rng: np.random.Generator, n_var: np.ndarray, art_prod: np.ndarray, variant: np.ndarray,
               n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Launch day and selling life (days, float) per article.

    A share ``E[life] / (E[life] + n_days)`` of the products (picked with
    probability proportional to their life, as a snapshot of a steady state
    is) was launched before the first day and is on sale on it, each article at
    a uniform point of its life; so about as many articles sell in the first
    week as in any later one. The others launch uniformly over the period: the
    first colour on the product's day, a later colour either the same week
    (``SAME_WEEK_VARIANT``) or after an exponential delay, kept inside the period.
    """
    n_prod = len(n_var)
    life_p = np.clip(LIFE_MEDIAN_DAYS * np.exp(rng.normal(0.0, LIFE_SIGMA, n_prod)), *LIFE_RANGE_DAYS)
    life = np.clip(life_p[art_prod] * np.exp(rng.normal(0.0, 0.25, len(art_prod))), *LIFE_RANGE_DAYS)
    mean_life = float(np.minimum(life_p, n_days).mean())
    old_share = mean_life / (mean_life + n_days)
    p_old = np.minimum(1.0, old_share * n_prod * life_p / life_p.sum())
    old = (rng.random(n_prod) < p_old)[art_prod]
    first = rng.integers(0, max(n_days - 7, 1), n_prod)[art_prod]
    same_week = rng.random(len(art_prod)) < SAME_WEEK_VARIANT
    delay = np.where(same_week, rng.integers(0, 7, len(art_prod)), rng.exponential(VARIANT_DELAY_DAYS, len(art_prod)))
    room = np.maximum(n_days - 3 - first, 0)
    delay = np.where(delay > room, rng.random(len(art_prod)) * room, delay)
    launch = np.where(variant > 0, first + delay, first)
    launch = np.where(old, -rng.random(len(art_prod)) * (life - 7.0), launch)
    return np.floor(launch).astype(np.int64), life


# --------------------------------------------------------------- catalogue --
def make_articles(rng: np.random.Generator, n_articles: int, n_days: int):
    """Draw the catalogue. Returns (articles DataFrame in ``ARTICLE_COLUMNS`` order with
    ``article_id``/``product_code`` as zero-padded strings, truth dict of numpy arrays
    aligned with the rows: ``type``, ``colour``, ``appearance``, ``pattern``, ``group``
    (index-group index), ``launch`` (day from the first date, may be negative), ``life``
    (selling days), ``pop_z`` (standard-normal popularity score), ``list_price`` (SEK),
    ``markdown_day`` (day from which it sells at ``markdown`` x list price), ``prod_start``
    (row of the product's first article), ``n_var`` (articles of the product))."""
    # variants per product: 1 + geometric, capped at 8, cut so the total is exactly n_articles
    n_var = np.minimum(rng.geometric(0.45, size=n_articles), 8)
    cut = int(np.searchsorted(np.cumsum(n_var), n_articles))
    n_var = n_var[: cut + 1].copy()
    n_var[-1] -= int(n_var.sum()) - n_articles
    n_prod = len(n_var)

    codes = np.sort(rng.choice(np.arange(108_775, 959_462), size=n_prod, replace=False))
    idx_codes = list(INDEXES)
    prod_index = categorical(rng, [INDEXES[c][3] for c in idx_codes], n_prod)
    prod_type = np.empty(n_prod, dtype=np.int64)
    for i, code in enumerate(idx_codes):
        sel = np.flatnonzero(prod_index == i)
        names = list(INDEX_TYPES[code])
        draws = categorical(rng, list(INDEX_TYPES[code].values()), len(sel))
        prod_type[sel] = [_TYPE_BY_NAME[names[j]] for j in draws]
    prod_app = categorical(rng, [a[3] for a in APPEARANCES], n_prod)
    prod_section = rng.integers(0, 1 << 30, size=n_prod)
    price_u = rng.random(n_prod) ** PRICE_SKEW
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
        prod_colours[start:stop] = topk_without_replacement(
            rng, np.broadcast_to(colour_logw, (stop - start, len(COLOURS))), 8)

    # expand products to articles
    art_prod = np.repeat(np.arange(n_prod), n_var)
    prod_start = np.concatenate([[0], np.cumsum(n_var)[:-1]])
    variant = np.arange(n_articles) - prod_start[art_prod]
    art_colour = prod_colours[art_prod, variant]
    art_app = prod_app[art_prod].copy()
    switch = rng.random(n_articles) < 0.15
    art_app[switch] = categorical(rng, [a[3] for a in APPEARANCES], int(switch.sum()))
    launch, life = _lifecycle(rng, n_var, art_prod, variant, n_days)
    pop_z = 0.8 * rng.normal(0.0, 1.0, n_prod)[art_prod] + 0.6 * rng.normal(0.0, 1.0, n_articles)
    markdown_day = launch + np.ceil(life * rng.uniform(*MARKDOWN_AT, n_articles)).astype(np.int64)
    markdown = MARKDOWN_FACTORS[rng.integers(0, len(MARKDOWN_FACTORS), n_articles)]

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
        group=group_of_index[pindex], launch=launch, life=life, pop_z=pop_z,
        list_price=list_price[art_prod], markdown_day=markdown_day, markdown=markdown,
        prod_start=prod_start[art_prod], n_var=n_var[art_prod],
    )
    return articles, truth


# --------------------------------------------------------------- customers --
def make_customers(rng: np.random.Generator, n_customers: int, art: dict):
    """Draw customers and their hidden taste. Returns (customers DataFrame in
    ``CUSTOMER_COLUMNS`` order, taste dict of numpy arrays aligned with its rows:
    ``group`` (index-group index), ``colour`` / ``type`` int [n, N_TASTE] (taste draws),
    ``strength`` (0..1), ``repurchase`` (0..1), ``online`` (probability of channel 2))."""
    ids = np.sort(_hex_ids(rng, n_customers))
    group = categorical(rng, INDEX_GROUP_CUSTOMER_SHARE, n_customers)
    # taste colours and product types: N_TASTE draws with replacement (so 1..3 distinct of each), weighted
    # by how many articles of each the customer's index group has (so demand meets supply)
    pref = {}
    for key, n_values in (("colour", len(COLOURS)), ("type", len(PRODUCT_TYPES))):
        counts = np.zeros((len(INDEX_GROUPS), n_values))
        np.add.at(counts, (art["group"], art[key]), 1.0)
        draws = np.empty((n_customers, N_TASTE), dtype=np.int64)
        for g in range(len(INDEX_GROUPS)):
            sel = np.flatnonzero(group == g)
            w = counts[g] if counts[g].sum() > 0 else counts.sum(axis=0)
            draws[sel] = categorical(rng, w, len(sel) * N_TASTE).reshape(len(sel), N_TASTE)
        pref[key] = draws
    pref_colour, pref_type = pref["colour"], pref["type"]
    strength = rng.beta(6.0, 2.0, n_customers)
    # repurchase: most customers rarely buy an article again, a sixth often do
    # (frequent shoppers are more often repeaters: the repeater score correlates with the activity score)
    activity_z = rng.normal(0.0, 1.0, n_customers)
    noise = rng.normal(0.0, 1.0, n_customers)
    repeater_z = REPEATER_ACTIVITY * activity_z + np.sqrt(1 - REPEATER_ACTIVITY ** 2) * noise
    repeater = repeater_z >= np.quantile(repeater_z, 1.0 - REPEATER_SHARE)
    repurchase = np.where(repeater, rng.beta(*REPEATER_BETA, n_customers), rng.beta(*OCCASIONAL_BETA, n_customers))
    online = rng.beta(2.6, 1.1, n_customers)

    mix = np.cumsum(np.array(INDEX_GROUP_AGE_MIX), axis=1)[group]
    mode = np.minimum((rng.random(n_customers)[:, None] > mix).sum(axis=1), len(AGE_MODES) - 1)
    modes = np.array(AGE_MODES)
    age = np.clip(np.round(rng.normal(modes[mode, 0], modes[mode, 1])), 16, 99)
    age[rng.random(n_customers) < 0.012] = np.nan
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
                 online=online, activity_z=activity_z)
    return customers, taste
