"""Constants shared by every module and notebook: column names, file names,
work-directory layout, data-source resolution and run profiles.

Everything a notebook or helper needs to name a column or a path comes from
here, so a rename happens in one place.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# ---------------------------------------------------------------- columns ---
ARTICLE_ID = "article_id"
PRODUCT_CODE = "product_code"
CUSTOMER_ID = "customer_id"
CUSTOMER_KEY = "customer_key"  # compact int32 join key: row order of customers.csv
T_DAT = "t_dat"
PRICE = "price"
SALES_CHANNEL_ID = "sales_channel_id"

ARTICLE_COLUMNS = [
    "article_id", "product_code", "prod_name", "product_type_no", "product_type_name",
    "product_group_name", "graphical_appearance_no", "graphical_appearance_name",
    "colour_group_code", "colour_group_name", "perceived_colour_value_id",
    "perceived_colour_value_name", "perceived_colour_master_id",
    "perceived_colour_master_name", "department_no", "department_name", "index_code",
    "index_name", "index_group_no", "index_group_name", "section_no", "section_name",
    "garment_group_no", "garment_group_name", "detail_desc",
]
CUSTOMER_COLUMNS = [
    "customer_id", "FN", "Active", "club_member_status", "fashion_news_frequency",
    "age", "postal_code",
]
TRANSACTION_COLUMNS = ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"]
TRANSACTION_REQUIRED = ["t_dat", "customer_id", "article_id", "price"]  # sales_channel_id optional

# Integer-coded article columns (stored as int32 / int16 in parquet).
ARTICLE_INT_COLUMNS = [
    "product_code", "product_type_no", "graphical_appearance_no", "colour_group_code",
    "perceived_colour_value_id", "perceived_colour_master_id", "department_no",
    "index_group_no", "section_no", "garment_group_no",
]
# The original notebook's 11 numeric article columns fed to the tabular encoder;
# `index_code` (a letter) is encoded as its 0-based position in INDEX_CODES.
TABULAR_COLUMNS = [
    "product_code", "product_type_no", "graphical_appearance_no", "colour_group_code",
    "perceived_colour_value_id", "perceived_colour_master_id", "department_no",
    "index_code", "index_group_no", "section_no", "garment_group_no",
]
INDEX_CODES = list("ABCDEFGHIJ") + ["S"]  # A..J as documented, and S (Sport), which the real file also has

PRODUCT_GROUP = "product_group_name"
INDEX_GROUP = "index_group_name"
COLOUR_GROUP = "colour_group_name"
PRODUCT_TYPE = "product_type_name"

# Triplets / embeddings / predictions
ANCHOR, POSITIVE, NEGATIVE, STRATEGY = "anchor", "positive", "negative", "strategy"
EMBEDDING = "embedding"
EMBEDDING_ORIGINAL = "embeding"  # the original notebook's published spelling
PREDICTION = "prediction"
IMAGE_PATH, HAS_IMAGE = "path", "has_image"
IMAGE_ABS_PATH = "abs_path"  # added by load_images: the image file's absolute path (str)

# ------------------------------------------------------------------ files ---
ARTICLES_CSV = "articles.csv"
CUSTOMERS_CSV = "customers.csv"
TRANSACTIONS_CSV = "transactions_train.csv"
IMAGES_DIR = "images"
COMPETITION_FILES = [ARTICLES_CSV, CUSTOMERS_CSV, TRANSACTIONS_CSV]

ARTICLES_PARQUET = "articles.parquet"
CUSTOMERS_PARQUET = "customers.parquet"
TRANSACTIONS_PARQUET = "transactions.parquet"
IMAGES_PARQUET = "images.parquet"
TRIPLETS_PARQUET = "triplets.parquet"
MODELS_DIR = "models"
IMAGE_ONLY_MODEL = "models/image_only.keras"
COMBINED_MODEL = "models/combined.keras"
ARTICLE_EMBEDDINGS = "article_embeddings.parquet"
COMBINED_EMBEDDINGS = "combined_article_embeddings.parquet"
SUBMISSION_CSV = "submission.csv"
SUBMISSION_ENSEMBLE_CSV = "submission_ensemble.csv"
FIGURES_DIR = "figures"        # PNG figures, WORK_DIR/figures/<name>.png
METRICS_DIR = "metrics"        # key figures, WORK_DIR/metrics/<notebook>.json
EXECUTED_DIR = "executed"      # papermill's executed notebooks
DATA_SOURCE_JSON = "data_source.json"  # written by 01: where the data came from
RUN_RECORD = "run.json"        # WORK_DIR/metrics/run.json: the runner's entry per notebook, latest run
KERNEL_LOG_SUFFIX = ".kernel.log"  # WORK_DIR/executed/<notebook>.kernel.log: the kernel's own stdout/stderr
REPORT_DIR = "report"          # WORK_DIR/report/: index.html, <notebook>.html, figures/ (hm_utils.runner.report)
REPORT_INDEX = "index.html"    # the report's page in REPORT_DIR
PREDICTIONS_DIR = "predictions"  # WORK_DIR/predictions/{holdout,full,ensemble}/<ranker>.parquet (06, 07)
HOLDOUT_SUBDIR, FULL_SUBDIR = "holdout", "full"  # held-out-week predictions / fitted on every transaction
EMBEDDING_FILES = {"image_only": ARTICLE_EMBEDDINGS, "combined": COMBINED_EMBEDDINGS}  # variant -> file in WORK_DIR

KAGGLE_INPUT_ENV = "HM_KAGGLE_INPUT"  # overrides KAGGLE_INPUT (tests, a Kaggle-like layout elsewhere)
KAGGLE_INPUT = Path(os.environ.get(KAGGLE_INPUT_ENV) or "/kaggle/input/h-and-m-personalized-fashion-recommendations")
REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_DATA = REPO_ROOT / "data" / "h-and-m-personalized-fashion-recommendations"
SYNTHETIC_ROOT = REPO_ROOT / "data" / "synthetic"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SHARED_SAMPLE = REPO_ROOT.parent / "shared" / "hm_sample"
DATA_DIR_ENV = "HM_DATA_DIR"
SYNTHETIC_DIR_ENV = "HM_SYNTHETIC_DIR"
# inside a synthetic dataset's folder (hm_utils.synthetic.generate)
GROUND_TRUTH_DIR = "ground_truth"                  # what the generator decided, for tests and checks
CUSTOMER_TASTE_PARQUET = "customer_taste.parquet"  # in GROUND_TRUTH_DIR
ARTICLE_TRUTH_PARQUET = "article_truth.parquet"    # in GROUND_TRUTH_DIR
COMPLETE_MARKER = ".complete"                      # written last: the generator's parameters (JSON)

SUBMISSION_K = 12


def image_relpath(article_id: int) -> str:
    """Competition image path for an article id: ``images/0XX/0XXXXXXXXX.jpg``."""
    aid = f"{int(article_id):010d}"
    return f"{IMAGES_DIR}/{aid[:3]}/{aid}.jpg"


def format_article_id(article_id: int) -> str:
    """10-digit zero-padded article id, as the competition writes it."""
    return f"{int(article_id):010d}"


# --------------------------------------------------------------- profiles ---
@dataclass(frozen=True)
class Profile:
    """One parameter set for the whole series.

    tiny: tests and CI (seconds per notebook); demo: the default, a few minutes
    on a laptop CPU; full: real competition data at the original's settings.
    """
    name: str
    # synthetic dataset size (used only when no real data is found)
    n_articles: int
    n_customers: int
    n_transactions: int
    synthetic_image_size: tuple[int, int]      # (height, width) of generated JPEGs
    # model
    image_size: tuple[int, int]                # (height, width) fed to the model
    backbone: str                              # efficientnet_lite0 | resnet50 | efficientnetb0 | mobilenetv3small | small_cnn
    pooling: str                               # flatten | avg
    embedding_dim: int
    epochs: int
    batch_size: int
    max_triplets: int | None                   # cap on training triplets (None = all)
    # "imagenet": the backbone's ImageNet weights (efficientnet_lite0: from its pip package, offline;
    # see hm_utils.model.siamese.resolve_weights); None: random (untrained)
    weights: str | None = "imagenet"
    # ranking
    n_candidates: int = 100
    holdout_days: int = 7

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> "Profile":
        return replace(self, **changes)


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny", n_articles=300, n_customers=400, n_transactions=8_000,
        synthetic_image_size=(96, 64), image_size=(96, 64), backbone="efficientnet_lite0",
        pooling="avg", embedding_dim=32, epochs=2, batch_size=32, max_triplets=2_000,
        weights="imagenet", n_candidates=50,
    ),
    "demo": Profile(
        name="demo", n_articles=3_000, n_customers=10_000, n_transactions=300_000,
        synthetic_image_size=(300, 200), image_size=(300, 200), backbone="efficientnet_lite0",
        pooling="avg", embedding_dim=550, epochs=8, batch_size=64, max_triplets=None,
        weights="imagenet", n_candidates=100,
    ),
    "full": Profile(
        name="full", n_articles=105_542, n_customers=1_371_980, n_transactions=31_788_324,
        synthetic_image_size=(300, 200), image_size=(300, 200), backbone="efficientnet_lite0",
        pooling="avg", embedding_dim=550, epochs=10, batch_size=64, max_triplets=None,
        weights="imagenet", n_candidates=100,
    ),
}
DEFAULT_PROFILE = "demo"


def get_profile(name: str = DEFAULT_PROFILE) -> Profile:
    """The Profile called ``name`` (tiny, demo or full); ValueError names the choices."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None


# ------------------------------------------------------------ data source ---
def has_competition_files(path: Path | str | None) -> bool:
    """True when ``path`` holds the three competition CSV files."""
    if path is None:
        return False
    p = Path(path)
    return all((p / f).is_file() for f in COMPETITION_FILES)


def find_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """Where the competition files are, in the order DESIGN.md gives:
    the ``data_dir`` argument, ``$HM_DATA_DIR``, the Kaggle input folder,
    ``data/h-and-m-personalized-fashion-recommendations/`` in the checkout.
    Returns None when none of them holds the files (the caller then uses the
    synthetic dataset). A ``data_dir`` given explicitly but incomplete is an
    error naming the missing files, never a silent fall-back.
    """
    if data_dir not in (None, ""):
        p = Path(data_dir).expanduser()
        missing = [f for f in COMPETITION_FILES if not (p / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"data directory {p} is missing {', '.join(missing)}; expected the competition "
                f"layout: {', '.join(COMPETITION_FILES)} and {IMAGES_DIR}/0XX/0XXXXXXXXX.jpg"
            )
        return p
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return find_data_dir(env)
    for cand in (KAGGLE_INPUT, REPO_DATA):
        if has_competition_files(cand):
            return cand
    return None


def synthetic_dir(profile: str, seed: int) -> Path:
    """Folder of the synthetic dataset for a profile and seed
    (``$HM_SYNTHETIC_DIR`` or ``data/synthetic/``, then ``<profile>_seed<seed>``)."""
    root = Path(os.environ.get(SYNTHETIC_DIR_ENV, SYNTHETIC_ROOT))
    return root / f"{profile}_seed{seed}"

# ------------------------------------------------- training outputs (03, read by 04 and 05) ---
TRAINING_HISTORY = "models/training_history.parquet"   # model, epoch, loss, val_loss, seconds
TRAINING_REPORT = "models/training_report.json"        # per model: counts, accuracies, losses, timings
TRIPLET_SPLIT = "models/triplet_split.parquet"          # the triplets 03 trained on; held_out: its validation side
HELD_OUT = "held_out"                                   # TRIPLET_SPLIT column: True for the validation triplets

# -------------------------------------------- backbone feature store (03, read by 04 and 05) ---
FEATURES_DIR = "features"              # WORK_DIR/features/: <name>.npy, index.parquet, manifest.json (model/feature_store.py)
FEATURES_INDEX = "index.parquet"       # article_id int32, has_image bool, ok bool; row order = articles.parquet
FEATURES_MANIFEST = "manifest.json"    # settings, article fingerprint and, per feature set, backbone and weights
FEATURE_OK = "ok"                      # index column: the image was read and the row holds its features
BACKBONE_FEATURES = "backbone"         # the run's backbone (pretrained when the weights are)
UNTRAINED_FEATURES = "untrained"       # the same architecture with random weights (seed = SEED): a reference
EXPORT_FROM_FEATURES, EXPORT_FROM_IMAGES = "features", "images"  # notebook 04's export_path

# ----------------------------------------------------- ranker evaluation (06, read by 07) ---
EVALUATION_DIR = "evaluation"                                    # WORK_DIR/evaluation/ (notebook 06)
RANKERS_BY_WEEK = "evaluation/rankers_by_week.parquet"           # ranker, week_start, map12, n_scored, ...
AP_BY_CUSTOMER_WEEK = "evaluation/ap_by_customer_week.parquet"   # ranker, week_start, customer_key, ap
WEIGHTS_BY_WEEK = "evaluation/weights_by_week.parquet"           # tuned ranker, week_start, sim, pop, rep
SLICES_BY_WEEK = "evaluation/slices_by_week.parquet"             # ranker, week_start, slice, AP sums, hits
HOLDOUT_SPLIT = "evaluation/holdout_split.json"                  # 06's split: days, rolling week starts (07 reads it)
HOLDOUT_CUSTOMERS = "evaluation/holdout_customers.parquet"       # 06's split: customer_key scored in the held-out week
WEEKS_SUBDIR = "weeks"             # predictions/weeks/<YYYY-MM-DD>/<ranker>.parquet: each rolling week's lists
EVAL_WEEKS = {"tiny": 2, "demo": 4, "full": 4}   # rolling weeks scored per profile (the held-out one + earlier)
# the learned ranker's candidate quotas x this per profile (hm_utils.ranking.candidate_curve.scaled_settings): on the demo the
# candidate-count curve still gains 2 recall points per 10 more candidates at x2 (benchmarks/RESULTS_new_articles.md);
# full stays x1 until 06's time at scale is measured with more
CANDIDATE_SCALE = {"tiny": 1.0, "demo": 2.0, "full": 1.0}
BOOTSTRAP_SAMPLES = 1000                         # paired bootstrap resamples of customer-weeks
RECALL_K = 100                                   # recall@100 of ranked / candidate lists
BASELINE_RANKER = "repurchase"                   # every interval is a difference to this ranker
