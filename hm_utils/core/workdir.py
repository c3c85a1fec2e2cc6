"""Every file one notebook hands to the next: where it lives in ``WORK_DIR`` and how it is read and written.

One home for the hand-off files, so that a notebook never rebuilds what an earlier one decided: it reads
the file that notebook wrote. Each reader names the notebook that writes the file when it is missing
(:func:`hm_utils.core.storage.require_file`); each writer is atomic (temporary name, then rename).

The triplets file (02) is written and read by :mod:`hm_utils.triplets.mining` (its schema is that
stage's). The backbone feature store (``features/``) keeps its own module, :mod:`hm_utils.model.feature_store`: it is a cache
with a manifest (reused while the weights and photos are unchanged), not a decision of one notebook.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hm_utils.core import config as C
from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import (ARTICLE_ID, CUSTOMER_KEY, EMBEDDING, EMBEDDING_FILES, EMBEDDING_ORIGINAL, HELD_OUT,
                                  HOLDOUT_CUSTOMERS, HOLDOUT_SPLIT, HOLDOUT_SUBDIR, PREDICTIONS_DIR, TRAINING_HISTORY,
                                  TRAINING_REPORT, TRIPLET_SPLIT, WEEKS_SUBDIR)
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import predictions_frame
from hm_utils.core.storage import read_json, require_file, write_json, write_parquet

# ---------------------------------------------------------------- tables (01) ---
# Written by notebook 01 (:func:`hm_utils.data.loading.prepare_data`).
_TABLES_BY = "01_data_preparation"


def load_articles(work_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``articles.parquet`` from notebook 01 as a DataFrame (the 25 article columns, ids and codes int32;
    only ``columns`` when given)."""
    return pd.read_parquet(require_file(Path(work_dir) / C.ARTICLES_PARQUET, _TABLES_BY), columns=columns)


def load_customers(work_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``customers.parquet`` from notebook 01 (``customer_key`` int32 + the 7 columns)."""
    return pd.read_parquet(require_file(Path(work_dir) / C.CUSTOMERS_PARQUET, _TABLES_BY), columns=columns)


def load_transactions(work_dir: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """``transactions.parquet`` from notebook 01: ``t_dat`` datetime64, ``customer_key`` int32,
    ``article_id`` int32, ``price`` float32, ``sales_channel_id`` Int8 (nullable)."""
    path = require_file(Path(work_dir) / C.TRANSACTIONS_PARQUET, _TABLES_BY)
    table = pq.read_table(path, columns=columns)
    return table.to_pandas(date_as_object=False, types_mapper={pa.int8(): pd.Int8Dtype()}.get)


def load_data_source(work_dir: str | Path) -> dict:
    """``data_source.json`` written by notebook 01 (data_dir, source, counts)."""
    return read_json(require_file(Path(work_dir) / C.DATA_SOURCE_JSON, _TABLES_BY))


def load_images(work_dir: str | Path) -> pd.DataFrame:
    """``images.parquet`` from notebook 01 (``article_id`` int32, ``path`` relative to the data folder,
    ``has_image`` bool) plus ``config.IMAGE_ABS_PATH`` (``abs_path``, str): the image file's absolute path."""
    images = pd.read_parquet(require_file(Path(work_dir) / C.IMAGES_PARQUET, _TABLES_BY))
    root = Path(load_data_source(work_dir)["data_dir"])
    images[C.IMAGE_ABS_PATH] = [str(root / p) for p in images[C.IMAGE_PATH]]
    return images



# --------------------------------------------------------- models and training (03) ---
def training_history_frame(histories: dict[str, dict]) -> pd.DataFrame:
    """Long table of training histories: model (str), epoch (int), loss,
    val_loss, seconds (float), and where a history has them (epoch selection,
    :mod:`hm_utils.model.epoch_selection`) heldout_recall and val_accuracy (float); one row per model and epoch."""
    extra = ("heldout_recall", "val_accuracy")
    frames = [pd.DataFrame({"model": name, **{k: h[k] for k in ("epoch", "loss", "val_loss", "seconds")},
                            **{k: h[k] for k in extra if len(h.get(k, [])) == len(h["epoch"])}})
              for name, h in histories.items() if len(h.get("epoch", []))]
    if not frames:
        return pd.DataFrame({"model": pd.Series(dtype="str"), "epoch": pd.Series(dtype="int64"),
                             "loss": pd.Series(dtype="float64"), "val_loss": pd.Series(dtype="float64"),
                             "seconds": pd.Series(dtype="float64")})
    return pd.concat(frames, ignore_index=True)


def write_training_outputs(work_dir, histories: dict[str, dict], reports: dict[str, dict]) -> dict:
    """Write ``models/training_history.parquet`` (:func:`training_history_frame`) and
    ``models/training_report.json`` (the reports of :func:`hm_utils.model.training.train_siamese`)
    atomically; returns their paths."""

    work_dir = Path(work_dir)
    return {"history": write_parquet(training_history_frame(histories), work_dir / TRAINING_HISTORY),
            "report": write_json(reports, work_dir / TRAINING_REPORT)}


def write_triplet_split(work_dir, train: pd.DataFrame, validation: pd.DataFrame) -> Path:
    """Write the triplets notebook 03 trained on (``train``) and held out (``validation``), as
    :func:`hm_utils.model.training.train_siamese` split them (``TrainingRun.split``), to
    ``models/triplet_split.parquet`` (``config.TRIPLET_SPLIT``): their columns (customer_key,
    anchor, positive, negative, ...) plus bool ``held_out``; training rows first, each side in
    its own order. Atomic; returns the path."""

    table = pd.concat([train.assign(**{HELD_OUT: False}), validation.assign(**{HELD_OUT: True})],
                      ignore_index=True)
    return write_parquet(table, Path(work_dir) / TRIPLET_SPLIT)


def read_triplet_split(work_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, held_out): what :func:`write_triplet_split` wrote, each with the columns it was
    given (``held_out`` dropped), in the order written, index reset. FileNotFoundError naming
    notebook 03 when the file is missing."""

    table = pd.read_parquet(require_file(Path(work_dir) / TRIPLET_SPLIT, "03_model_training"))
    held = table[HELD_OUT].to_numpy(bool)
    table = table.drop(columns=HELD_OUT)
    return table[~held].reset_index(drop=True), table[held].reset_index(drop=True)


# ------------------------------------------------------------ embeddings (04) ---
def _parse_article_ids(col: pa.ChunkedArray, path) -> np.ndarray:
    """``article_id`` column (int, or zero-padded string as the original publishes) -> int32 [n];
    ValueError naming the file and the first value that is not an id."""
    s = col.to_pandas()
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        out = s.to_numpy(dtype=np.int64)
    else:
        num = pd.to_numeric(s.astype(str).str.strip(), errors="coerce")
        bad = num.isna()
        if bad.any():
            raise ValueError(f"{path}: column {ARTICLE_ID!r} has values that are not article ids, "
                             f"e.g. {s[bad].iloc[0]!r} (row {int(np.argmax(bad.to_numpy()))})")
        out = num.to_numpy(dtype=np.int64)
    if out.size and (out.min() < 0 or out.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{path}: column {ARTICLE_ID!r} has ids outside the int32 range")
    return out.astype(np.int32)


def load_embeddings(path: str | Path, name: str | None = None, keep_raw: bool = False) -> ArticleEmbeddings:
    """An embeddings parquet file (04's, or the original notebook's) as :class:`ArticleEmbeddings`.

    ``name``: the variant (``image_only``, ``combined``; default the file's stem). ``keep_raw``:
    also keep the vectors as in the file (``raw``, ``present``, ``given_ids`` in file order;
    :meth:`ArticleEmbeddings.aligned`), what 04 and 05 analyse; the rankers need only the unit
    rows. Reading and its errors as :func:`_read_embedding_arrays`.
    """
    ids, matrix, present = _read_embedding_arrays(path)
    return ArticleEmbeddings(ids, matrix, present, name=name or Path(path).stem, keep_raw=keep_raw)


def load_embedding_files(work_dir, files: dict[str, str] | None = None) -> dict[str, ArticleEmbeddings]:
    """The embedding files notebook 04 wrote, by variant (``image_only``, ``combined``; ``config.EMBEDDING_FILES``).

    A missing file is skipped with a warning naming it (the embedding rankers
    for it are then left out); an unreadable one raises. Returns
    ``{name: ArticleEmbeddings}`` in the order of ``files``.
    """
    out = {}
    for name, fname in (files or EMBEDDING_FILES).items():
        path = Path(work_dir) / fname
        if not path.is_file():
            warnings.warn(f"{path} not found (written by 04_embedding_export); rankers using the "
                          f"{name!r} embeddings are left out", stacklevel=2)
            continue
        out[name] = load_embeddings(path, name)
    return out


def _read_embedding_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read an embeddings parquet file into arrays.

    Accepts our files (``embedding`` list<float32>, null when missing) and the
    original notebook's published ones (``embeding``, missing stored as
    ``[nan]``; ``article_id`` int or zero-padded string; list<double> values).

    Output: ``(article_ids int32 [n], matrix float32 [n, d], has_embedding bool
    [n])`` in file order; rows without an embedding (null, empty, ``[nan]`` or
    all-NaN) are zero rows with ``has_embedding`` False. A row whose length
    differs from the others, or that is partly NaN, is a ValueError naming
    the file and the article id. Duplicate article ids are a ValueError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (embeddings are written by notebook 04_embedding_export)")
    names = pq.read_schema(path).names
    emb_col = EMBEDDING if EMBEDDING in names else EMBEDDING_ORIGINAL if EMBEDDING_ORIGINAL in names else None
    if emb_col is None or ARTICLE_ID not in names:
        raise ValueError(f"{path}: expected columns {ARTICLE_ID!r} and {EMBEDDING!r} (or the original "
                         f"{EMBEDDING_ORIGINAL!r}); found {names}")
    table = pq.read_table(path, columns=[ARTICLE_ID, emb_col])
    ids = _parse_article_ids(table[ARTICLE_ID], path)
    if len(ids) != len(sorted_unique(ids)):
        u, c = np.unique(ids, return_counts=True)
        raise ValueError(f"{path}: article {int(u[c > 1][0])} appears more than once")
    col = table[emb_col].combine_chunks() if table.num_rows else pa.array([], pa.list_(pa.float32()))
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type):
        col = col.cast(pa.list_(col.type.value_type))
    if not pa.types.is_list(col.type):
        raise ValueError(f"{path}: column {emb_col!r} is {col.type}, expected a list of floats")
    col = col.cast(pa.list_(pa.float32()))
    n = len(ids)
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    ends = np.cumsum(lengths)
    # NaN entries per row from a running count; an all-NaN row (incl. the original's [nan]) is missing
    nan_running = np.concatenate([[0], np.cumsum(np.isnan(values))])
    nan_count = nan_running[ends] - nan_running[ends - lengths]
    present = (lengths > 0) & (nan_count < lengths)
    d = int(np.bincount(lengths[present]).argmax()) if present.any() else 0
    wrong = present & (lengths != d)
    if wrong.any():
        r = int(np.argmax(wrong))
        raise ValueError(f"{path}: article {int(ids[r])} has an embedding of length {int(lengths[r])}, "
                         f"the others have {d}")
    partial = present & (nan_count > 0)
    if partial.any():
        r = int(np.argmax(partial))
        raise ValueError(f"{path}: article {int(ids[r])} has an embedding with NaN entries")
    matrix = np.zeros((n, d), dtype=np.float32)
    if d and present.any():
        take = np.repeat(present, lengths)
        matrix[present] = values[take].reshape(-1, d)
    return ids, matrix, present


# ------------------------------------------------- splits and predictions (06, 07) ---
# Notebook 06 writes the held-out split it decided (HoldoutSplit) and every ranker's prediction lists;
# notebook 07 reads both and never recomputes the split.
@dataclass(frozen=True)
class HoldoutSplit:
    """The held-out split notebook 06 scored its rankers on.

    ``days``: length of each scored week in days; ``week_starts``: first day
    (``YYYY-MM-DD``) of every rolling week scored, oldest first -- the last one
    starts the held-out week (:func:`hm_utils.data.purchase_history.week_windows`); ``customers``:
    int64 [n] sorted keys of the customers who bought in the held-out week (the
    customers scored); ``rankers``: the rankers 06 scored and wrote prediction lists for
    (ablations left out), which 07 ensembles; ``bootstrap_samples``: resamples per interval. The training rows of the held-out week are every transaction
    before ``holdout_start``; its rows, those from ``holdout_start`` for ``days`` days
    (:func:`hm_utils.data.purchase_history.split_week`).
    """
    days: int
    week_starts: tuple[str, ...]
    customers: np.ndarray = field(repr=False, compare=False)
    rankers: tuple[str, ...] = ()
    bootstrap_samples: int = 1000

    @property
    def holdout_start(self) -> pd.Timestamp:
        """First day of the held-out week (the last rolling week)."""
        return pd.Timestamp(self.week_starts[-1])


def write_holdout_split(work_dir, split: HoldoutSplit) -> Path:
    """Write ``split`` atomically: :data:`~hm_utils.core.config.HOLDOUT_SPLIT` (JSON: days,
    week_starts, holdout_start, customers = their number, rankers, bootstrap_samples) and the customer keys in
    :data:`~hm_utils.core.config.HOLDOUT_CUSTOMERS` (one int64 column ``customer_key``).
    Returns the JSON path."""
    if not split.week_starts:
        raise ValueError("a held-out split needs at least one week start")
    keys = np.asarray(split.customers, np.int64)
    work_dir = Path(work_dir)
    write_parquet(pd.DataFrame({CUSTOMER_KEY: keys}), work_dir / HOLDOUT_CUSTOMERS)
    return write_json({"days": int(split.days), "week_starts": [str(w) for w in split.week_starts],
                       "holdout_start": str(split.week_starts[-1]), "customers": int(len(keys)),
                       "rankers": [str(r) for r in split.rankers], "bootstrap_samples": int(split.bootstrap_samples)},
                      work_dir / HOLDOUT_SPLIT)


def read_holdout_split(work_dir) -> HoldoutSplit:
    """The split :func:`write_holdout_split` wrote (FileNotFoundError naming notebook 06 when
    missing; ValueError when the customer file does not hold the number the JSON records)."""
    work_dir = Path(work_dir)
    meta = read_json(require_file(work_dir / HOLDOUT_SPLIT, "06_candidate_ranking"))
    path = require_file(work_dir / HOLDOUT_CUSTOMERS, "06_candidate_ranking")
    keys = pd.read_parquet(path, columns=[CUSTOMER_KEY])[CUSTOMER_KEY].to_numpy(np.int64)
    if len(keys) != meta["customers"]:
        raise ValueError(f"{path}: {len(keys)} customers, but {work_dir / HOLDOUT_SPLIT} records "
                         f"{meta['customers']}; rerun 06_candidate_ranking")
    return HoldoutSplit(int(meta["days"]), tuple(meta["week_starts"]), keys, tuple(meta.get("rankers", ())),
                        int(meta.get("bootstrap_samples", 1000)))


def predictions_path(work_dir, name: str, subdir: str = HOLDOUT_SUBDIR) -> Path:
    """``WORK_DIR/predictions/<subdir>/<name>.parquet`` (subdir ``holdout``, ``full``, ``ensemble``
    or ``weeks/<YYYY-MM-DD>``)."""
    return Path(work_dir) / PREDICTIONS_DIR / subdir / f"{name}.parquet"


def week_predictions_path(work_dir, week_start, name: str) -> Path:
    """``WORK_DIR/predictions/weeks/<YYYY-MM-DD>/<name>.parquet`` (written by
    :func:`hm_utils.ranking.evaluation.evaluate_rolling`)."""
    return predictions_path(work_dir, name, f"{WEEKS_SUBDIR}/{pd.Timestamp(week_start).date()}")


def write_predictions(work_dir, name: str, customer_keys, matrix, subdir: str = HOLDOUT_SUBDIR) -> Path:
    """Write :func:`predictions_path` atomically: ``customer_key`` int32 + ``p1..p12`` int32
    (:func:`hm_utils.core.lists.predictions_frame`)."""
    return write_parquet(predictions_frame(customer_keys, matrix), predictions_path(work_dir, name, subdir))


def read_predictions(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a predictions parquet: ``(customer_keys int64 [n], matrix int32 [n, 12])``."""
    df = pd.read_parquet(path)
    if CUSTOMER_KEY not in df.columns:
        raise ValueError(f"{path}: predictions file needs a {CUSTOMER_KEY!r} column; has {list(df.columns)}")
    cols = [c for c in df.columns if c != CUSTOMER_KEY]
    return df[CUSTOMER_KEY].to_numpy(np.int64), df[cols].to_numpy(np.int32)
