"""Training the siamese embedding model on mined triplets.

The approach (Schroff, Kalenichenko, Philbin 2015, "FaceNet"): one tower
(:func:`hm_utils.model.build_embedding_model`) embeds anchor, positive and
negative articles with shared weights; the triplet loss pulls each anchor
towards its positive (bought by the same customer) and pushes it from its
negative. InfoNCE with in-batch negatives (van den Oord, Li, Vinyals 2018) is
the alternative loss.

Feature cache: the backbone is frozen, so its output for an article never
changes. :func:`compute_feature_cache` streams every needed image from disk
once (``tf.data``, parallel reduced-scale JPEG decoding, see
:mod:`hm_utils.images`) and keeps the features ([n_articles, F] float32 in
memory, or a ``.npy`` memory map on disk for big runs). Every epoch then trains
only the head (tabular encoder + head) on gathered features; the saved model is
the whole tower (backbone + the trained head, sharing its weights). Without the
cache (``use_cache=False``, or a trainable backbone such as ``small_cnn``) every
epoch decodes the three images of every triplet and runs the backbone.
Notebook 03 passes the run's feature store instead (:func:`hm_utils.features.load_features`:
every article, computed once per run and shared with notebooks 04 and 05); its
weights digest is checked against the backbone. :func:`set_trainable_top` makes the
top of a backbone trainable (fine-tuning, BatchNorm kept frozen), which then trains
from the images.

Validation: triplets are split by customer (all of a customer's triplets on
one side), ``validation_split`` of the customers held out. Triplet accuracy
(share of triplets with d(a, p) < d(a, n), squared L2,
:func:`hm_utils.metrics.triplet_accuracy`) is reported for the untrained and the
trained model.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from .config import ANCHOR, ARTICLE_ID, CUSTOMER_KEY, HAS_IMAGE, NEGATIVE, POSITIVE  # noqa: E402
from .images import image_dataset, read_and_decode, report_unreadable  # noqa: E402
from .losses import make_loss  # noqa: E402
from .metrics import triplet_accuracy  # noqa: E402
from .model import (assemble_embedding_model, build_backbone, build_head, build_siamese,  # noqa: E402
                    tabular_features, tabular_stats)

MIN_TRIPLETS_FOR_VALIDATION = 10  # below this, no validation split (too few to hold any out)
# AdamW learning rate. On the demo profile (frozen random ResNet50, average pooling: features of mean ~4,
# std ~4) 1e-3 and 3e-4 make the validation loss jump from epoch to epoch and stop at ~0.72-0.74 triplet
# accuracy; 1e-4 trains smoothly to ~0.91 (image only) and ~0.95 (combined) in 8 epochs.
LEARNING_RATE = 1e-4
DISTRIBUTE = ("default", "mirrored")
# A memory-mapped feature store up to this size is read into memory for training (gathers from memory
# are faster than reads from the map); a bigger one is read batch by batch.
IN_MEMORY_FEATURES_BYTES = 1 << 30


# ------------------------------------------------------------- strategy ---
def get_distribution_strategy(distribute: str = "default") -> tf.distribute.Strategy:
    """"default": ``tf.distribute.get_strategy()`` (one device); "mirrored":
    ``tf.distribute.MirroredStrategy()`` (data parallel over all local GPUs)."""
    if distribute == "default":
        return tf.distribute.get_strategy()
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"unknown distribute {distribute!r}; choose one of {DISTRIBUTE}")


# ------------------------------------------------------------- image table ---
def article_image_paths(images: pd.DataFrame, article_ids) -> np.ndarray:
    """Absolute image path per article id (object array [n]; None where the
    article has no image). ``images`` is :func:`hm_utils.loading.load_images`'s
    table (article_id, has_image, abs_path)."""
    col = "abs_path" if "abs_path" in images.columns else "path"
    if col not in images.columns:
        raise KeyError(f"images table needs an 'abs_path' (or 'path') column; has {list(images.columns)}")
    tbl = images
    if HAS_IMAGE in tbl.columns:
        tbl = tbl[tbl[HAS_IMAGE].astype(bool)]
    lookup = dict(zip(tbl[ARTICLE_ID].astype(np.int64), tbl[col].astype(str)))
    return np.array([lookup.get(int(a)) for a in np.asarray(article_ids)], dtype=object)


# ------------------------------------------------------------- feature cache ---
@dataclass
class FeatureCache:
    """Backbone features per article, computed once.

    article_ids: int64 [n]; features: float32 (or float16) [n, F], zeros where
    not ``ok`` (in memory, or a ``np.memmap``); ok: bool [n], False where the
    image was missing or unreadable; seconds: wall time of the extraction;
    unreadable: what could not be read (paths from :func:`compute_feature_cache`,
    article ids from :func:`hm_utils.features.load_features`); digest: the
    backbone's weights digest (:func:`hm_utils.export.model_digest`) when known,
    which :func:`train_siamese` checks against its backbone; images_per_second.
    """
    article_ids: np.ndarray
    features: np.ndarray
    ok: np.ndarray
    seconds: float = 0.0
    unreadable: list = field(default_factory=list)
    digest: str | None = None

    @property
    def images_per_second(self) -> float:
        n = int(self.ok.sum())
        return n / self.seconds if self.seconds > 0 else float("nan")

    def rows(self, article_ids) -> np.ndarray:
        """Row of each article id in the cache, int64; -1 where absent or not ok."""
        pos = pd.Series(np.arange(len(self.article_ids)), index=self.article_ids)
        pos = pos[self.ok]
        return pd.Series(np.asarray(article_ids, np.int64)).map(pos).fillna(-1).to_numpy(np.int64)


def compute_feature_cache(backbone_model: keras.Model, article_ids, paths, batch_size: int = 64,
                          reduced_scale: bool = True, dtype: str = "float32",
                          cache_path: str | os.PathLike | None = None, progress: bool = True) -> FeatureCache:
    """Run the (frozen) backbone once over every article's image.

    article_ids: [n] ints; paths: [n] image paths (None/"" = no image); the
    image size is the backbone's input size. Images stream from disk via
    :func:`hm_utils.images.image_dataset`; unreadable files are skipped and
    reported (warning naming them). ``cache_path`` (a ``.npy`` file, e.g.
    ``WORK_DIR/cache/features.npy``) writes the features into a memory map
    instead of RAM, for runs too big for memory. Returns a :class:`FeatureCache`.
    """
    article_ids = np.asarray(article_ids, dtype=np.int64)
    paths = np.asarray(paths, dtype=object)
    if len(paths) != len(article_ids):
        raise ValueError(f"{len(article_ids)} article ids but {len(paths)} paths")
    has = np.array([p is not None and str(p) != "" and str(p) != "nan" for p in paths], dtype=bool)
    idx_with = np.flatnonzero(has)
    h, w = backbone_model.input_shape[1:3]
    feat_dim = int(backbone_model.output_shape[-1])
    if cache_path is not None:
        Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
        features = np.lib.format.open_memmap(cache_path, mode="w+", dtype=dtype, shape=(len(article_ids), feat_dim))
    else:
        features = np.zeros((len(article_ids), feat_dim), dtype=dtype)
    ok = np.zeros(len(article_ids), dtype=bool)
    sub_paths = [str(p) for p in paths[idx_with]]
    t0 = time.perf_counter()
    seen = []
    ds = image_dataset(sub_paths, (h, w), batch_size=batch_size, reduced_scale=reduced_scale)
    n_batches = -(-len(sub_paths) // batch_size) if sub_paths else 0

    @tf.function(reduce_retracing=True)
    def _forward(x):
        return backbone_model(x, training=False)

    for idx, imgs in tqdm(ds, total=n_batches, desc="backbone features", unit="batch", disable=not progress):
        idx = idx.numpy()
        rows = idx_with[idx]
        features[rows] = _forward(imgs).numpy().astype(dtype, copy=False)
        ok[rows] = True
        seen.append(idx)
    seconds = time.perf_counter() - t0
    unreadable = report_unreadable(sub_paths, np.concatenate(seen) if seen else np.zeros(0, np.int64))
    if isinstance(features, np.memmap):
        features.flush()
    return FeatureCache(article_ids, features, ok, seconds, [sub_paths[i] for i in unreadable])


# ------------------------------------------------------------- triplets ---
def split_by_customer(triplets: pd.DataFrame, validation_split: float = 0.2, seed: int = 42,
                      min_triplets: int = MIN_TRIPLETS_FOR_VALIDATION) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Hold out ``validation_split`` of the customers (all their triplets).

    Returns (train, validation, note). With fewer than ``min_triplets`` triplets,
    fewer than 2 customers, or ``validation_split`` <= 0, the validation frame
    is empty and ``note`` says why (never an error). Customers without a
    ``customer_key`` column: each triplet is its own group.
    """
    n = len(triplets)
    if validation_split <= 0:
        return triplets, triplets.iloc[:0], "validation disabled (validation_split = 0)"
    keys = triplets[CUSTOMER_KEY].to_numpy() if CUSTOMER_KEY in triplets.columns else np.arange(n)
    customers = np.unique(keys)
    if n < min_triplets or len(customers) < 2:
        return triplets, triplets.iloc[:0], (f"only {n} triplets from {len(customers)} customers: too few for a "
                                             f"validation split (need {min_triplets}); validation skipped")
    rng = np.random.default_rng(seed)
    n_val = min(max(1, int(round(validation_split * len(customers)))), len(customers) - 1)
    val_customers = rng.choice(customers, size=n_val, replace=False)
    is_val = np.isin(keys, val_customers)
    return (triplets[~is_val].reset_index(drop=True), triplets[is_val].reset_index(drop=True),
            f"{(~is_val).sum()} training and {is_val.sum()} validation triplets "
            f"({len(customers) - n_val} / {n_val} customers)")


# ------------------------------------------------------------- datasets ---
ROLES = ("anchor", "positive", "negative")


def _cached_dataset(rows: np.ndarray, features, tabular: tf.Tensor | None, batch_size: int,
                    shuffle: bool, seed: int) -> tf.data.Dataset:
    """(x, y) batches for the siamese head: x = {role_features [B, F], role_tabular [B, 11]}, y zeros [B].

    ``features``: a tensor (in memory), or a ``np.memmap`` (on-disk cache), whose
    rows are then read batch by batch instead of being loaded whole."""
    ds = tf.data.Dataset.from_tensor_slices(rows.astype(np.int64))
    if shuffle:
        ds = ds.shuffle(max(len(rows), 1), seed=seed, reshuffle_each_iteration=True)
    if isinstance(features, np.memmap):
        mm, dim = features, int(features.shape[1])

        def take(idx):
            f = tf.numpy_function(lambda i: np.asarray(mm[i], dtype=np.float32), [idx], tf.float32)
            f.set_shape([None, dim])
            return f
    else:
        def take(idx):
            return tf.cast(tf.gather(features, idx), tf.float32)

    def gather(r):
        x = {}
        for j, role in enumerate(ROLES):
            x[f"{role}_features"] = take(r[:, j])
            if tabular is not None:
                x[f"{role}_tabular"] = tf.gather(tabular, r[:, j])
        return x, tf.zeros([tf.shape(r)[0]], tf.float32)

    return ds.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _image_dataset_triplets(rows: np.ndarray, paths: np.ndarray, tabular: np.ndarray | None,
                            image_size: tuple[int, int], batch_size: int, shuffle: bool, seed: int,
                            reduced_scale: bool = True) -> tf.data.Dataset:
    """(x, y) batches for the full siamese tower: every triplet's three images
    decoded from disk each epoch (no cache). Triplets with an unreadable image are dropped."""
    paths_t = tf.constant([str(p) for p in paths])
    tab_t = tf.constant(tabular, tf.float32) if tabular is not None else None
    size = (int(image_size[0]), int(image_size[1]))
    ds = tf.data.Dataset.from_tensor_slices(rows.astype(np.int64))
    if shuffle:
        ds = ds.shuffle(max(len(rows), 1), seed=seed, reshuffle_each_iteration=True)

    def load(r):
        x = {}
        for j, role in enumerate(ROLES):
            x[f"{role}_image"] = read_and_decode(paths_t[r[j]], size, reduced_scale)
            if tab_t is not None:
                x[f"{role}_tabular"] = tab_t[r[j]]
        return x, tf.constant(0.0)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


class _EpochTimer(keras.callbacks.Callback):
    """Wall seconds per epoch, appended to ``self.seconds``."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t0)


# ------------------------------------------------------------- evaluation ---
def _head_embeddings(head: keras.Model, features: np.ndarray, tabular: np.ndarray | None,
                     rows: np.ndarray | None = None, batch_size: int = 4096) -> np.ndarray:
    """Head embeddings float32 [len(rows), D] of ``features`` [n, F] rows ``rows`` (default
    all; ``tabular`` [n, 11] aligned with ``features``), read ``batch_size`` rows at a time
    (so a memory-mapped store is never loaded whole)."""
    rows = np.arange(len(features)) if rows is None else np.asarray(rows, np.int64)
    out = [np.zeros((0, int(head.output_shape[-1])), np.float32)]
    for start in range(0, len(rows), batch_size):
        r = rows[start:start + batch_size]
        x = {"features": np.asarray(features[r], np.float32)}
        if tabular is not None:
            x["tabular"] = np.asarray(tabular[r], np.float32)
        out.append(np.asarray(head(x, training=False), np.float32))
    return np.concatenate(out)


def _tower_embeddings(tower: keras.Model, paths: np.ndarray, tabular: np.ndarray | None,
                      image_size, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of every row of ``paths`` by the full tower (images from disk); (emb, ok)."""
    dim = int(tower.output_shape[-1])
    emb = np.zeros((len(paths), dim), np.float32)
    ok = np.zeros(len(paths), bool)
    for idx, imgs in image_dataset([str(p) for p in paths], image_size, batch_size):
        idx = idx.numpy()
        x = {"image": imgs}
        if tabular is not None:
            x["tabular"] = tf.constant(tabular[idx], tf.float32)
        emb[idx] = tower(x, training=False).numpy()
        ok[idx] = True
    return emb, ok


def rows_accuracy(embeddings: np.ndarray, rows: np.ndarray) -> float:
    """Triplet accuracy of article embeddings [n, D] on triplet rows [m, 3]
    (indices into ``embeddings``); nan when m = 0."""
    if len(rows) == 0:
        return float("nan")
    return triplet_accuracy(embeddings[rows[:, 0]], embeddings[rows[:, 1]], embeddings[rows[:, 2]])


# ------------------------------------------------------------- fine-tuning ---
def _all_layers(model: keras.Model):
    """Every layer of ``model`` in order, nested models first as themselves, then their layers."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def set_trainable_top(backbone_model: keras.Model, n_layers: int) -> list[str]:
    """Fine-tune the top of a backbone: make its last ``n_layers`` layers that hold
    weights trainable, not counting BatchNormalization layers, which all stay frozen
    (they then normalise with their ImageNet statistics, as in inference; training
    them on small batches would spoil those). Everything else is frozen. Changes
    ``backbone_model`` in place; returns the names of the layers made trainable
    (``[]`` for ``n_layers`` 0, which freezes the whole backbone)."""
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    leaves = [layer for layer in _all_layers(backbone_model) if not isinstance(layer, keras.Model)]
    backbone_model.trainable = n_layers > 0
    for layer in leaves:
        layer.trainable = False
    weighted = [layer for layer in leaves
                if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]
    top = weighted[len(weighted) - min(n_layers, len(weighted)):] if n_layers else []
    for layer in top:
        layer.trainable = True
    return [layer.name for layer in top]


# ------------------------------------------------------------- training ---
def _copy_model(model: keras.Model) -> keras.Model:
    """An independent copy of ``model`` (same architecture, same current weights, own
    variables, the same ``trainable`` flag on every layer, nested ones included)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.trainable = model.trainable
    for src, dst in zip(_all_layers(model), _all_layers(copy)):
        dst.trainable = src.trainable  # parents come before their layers: theirs is set last
    return copy


def train_siamese(triplets: pd.DataFrame, articles: pd.DataFrame, images: pd.DataFrame,
                  variant: str = "image_only", backbone: str = "resnet50",
                  image_size: tuple[int, int] = (300, 200), embedding_dim: int = 550,
                  pooling: str = "flatten", normalize: bool = False, weights=None,
                  loss: str = "triplet", margin: float = 0.2, temperature: float = 0.1,
                  epochs: int = 10, batch_size: int = 64, learning_rate: float = 1e-4,
                  weight_decay: float = 4e-3, validation_split: float = 0.2, seed: int = 42,
                  distribute: str = "default", use_cache: bool = True, max_triplets: int | None = None,
                  backbone_model: keras.Model | None = None, feature_cache: FeatureCache | None = None,
                  cache_path: str | os.PathLike | None = None, hidden_units: int = 1100,
                  verbose: int | str = "auto", log=print) -> tuple[keras.Model, dict, dict]:
    """Train the embedding model as a siamese network on triplets.

    Inputs
    ------
    triplets: DataFrame with ``anchor``, ``positive``, ``negative`` (article
        ids) and ``customer_key`` (for the customer-wise validation split).
    articles: the articles table (``article_id`` + ``config.TABULAR_COLUMNS``).
    images: the images table (``article_id``, ``has_image``, ``abs_path``).
    variant, backbone, image_size (H, W), embedding_dim, pooling, normalize,
        weights, hidden_units: the model (:func:`hm_utils.model.build_embedding_model`).
    loss: "triplet" (FaceNet, ``margin``) or "infonce" (``temperature``).
    epochs, batch_size, learning_rate, weight_decay: AdamW (Loshchilov & Hutter 2019,
        "Decoupled Weight Decay Regularization"); weight_decay 4e-3 is Keras's default.
    validation_split: share of customers held out (see :func:`split_by_customer`).
    distribute: "default" or "mirrored" (training runs in the strategy's scope).
    use_cache: with a frozen backbone, compute its features once
        (:func:`compute_feature_cache`) and train only the head; otherwise decode
        images every epoch. ``backbone_model`` / ``feature_cache`` reuse a
        frozen backbone and its cache across variants; a trainable
        ``backbone_model`` is copied first, so the caller's object is never changed.
    max_triplets: random subset of that many triplets (seeded) when given.

    Returns
    -------
    (embedding_model, history, report): the one-tower Keras model; history as a
    dict of lists (``epoch``, ``loss``, ``val_loss`` (nan without validation),
    ``seconds``); report, a JSON-able dict: triplet counts, validation note,
    untrained / trained triplet accuracy (validation, and training),
    final losses, seconds per epoch, whether the cache was used, pretrained
    weights or not, feature extraction seconds; None where a figure could not
    be measured (no triplets, no validation split).
    """
    keras.utils.set_random_seed(int(seed))
    t_start = time.perf_counter()
    for c in (ANCHOR, POSITIVE, NEGATIVE):
        if c not in triplets.columns:
            raise KeyError(f"triplets table lacks column {c!r}; has {list(triplets.columns)}")
    n_given = len(triplets)
    if max_triplets is not None and n_given > max_triplets:
        triplets = triplets.sample(n=int(max_triplets), random_state=int(seed)).reset_index(drop=True)
    strategy = get_distribution_strategy(distribute)
    report: dict = {"variant": variant, "backbone": backbone, "pooling": pooling, "loss": loss,
                    "embedding_dim": int(embedding_dim), "normalize": bool(normalize),
                    "pretrained": weights is not None, "weights": None if weights is None else str(weights),
                    "distribute": distribute, "n_replicas": int(strategy.num_replicas_in_sync),
                    "n_triplets_given": int(n_given)}

    # articles needed, with features and tabular rows aligned
    needed = np.unique(triplets[[ANCHOR, POSITIVE, NEGATIVE]].to_numpy(np.int64).ravel()) if len(triplets) \
        else np.zeros(0, np.int64)
    art = articles.copy()
    art[ARTICLE_ID] = art[ARTICLE_ID].astype(np.int64)
    unknown = np.setdiff1d(needed, art[ARTICLE_ID].to_numpy())
    if len(unknown):
        raise ValueError(f"{len(unknown)} triplet article id(s) are not in the articles table, e.g. {unknown[:5].tolist()}")
    tab_all = tabular_features(art) if variant == "combined" else None
    stats = tabular_stats(tab_all) if tab_all is not None else None

    with strategy.scope():
        bb = backbone_model or build_backbone(backbone, image_size, pooling, weights)
        if backbone_model is not None and bb.trainable:
            # a trainable backbone is trained by this call: work on a copy, so that a model trained
            # earlier with the same backbone object keeps the weights it was trained with
            bb = _copy_model(bb)
        image_size = tuple(int(s) for s in bb.input_shape[1:3])
        if feature_cache is not None and backbone_model is None:
            raise ValueError("feature_cache given without the backbone_model that computed it; pass both "
                             "(a new backbone would not match the cached features)")
        cached = use_cache and not bb.trainable
        if use_cache and bb.trainable:
            log(f"backbone {bb.layers[1].name} is trainable: no feature cache, images are decoded every epoch")
        report["trainable_backbone"] = bool(bb.trainable)
        report["used_cache"] = bool(cached)

        if cached and feature_cache is not None and feature_cache.digest is not None:
            from .export import model_digest
            if model_digest(bb) != feature_cache.digest:
                raise ValueError(f"feature_cache was computed by a backbone with other weights (digest "
                                 f"{feature_cache.digest}) than backbone_model ({model_digest(bb)}); pass the "
                                 "backbone that computed it")
        if cached:
            if feature_cache is None or not np.isin(needed, feature_cache.article_ids).all():
                feature_cache = compute_feature_cache(bb, needed, article_image_paths(images, needed),
                                                      batch_size=max(batch_size, 32), cache_path=cache_path)
            report["feature_seconds"] = round(float(feature_cache.seconds), 3)
            report["feature_dim"] = int(feature_cache.features.shape[1])
            ids, ok = feature_cache.article_ids, feature_cache.ok
        else:
            ids = needed
            paths = article_image_paths(images, ids)
            ok = np.array([p is not None for p in paths], bool)
        # triplet rows into `ids`
        pos = pd.Series(np.arange(len(ids)), index=ids)[ok]
        rows = np.stack([pd.Series(triplets[c].to_numpy(np.int64)).map(pos).fillna(-1).to_numpy(np.int64)
                         for c in (ANCHOR, POSITIVE, NEGATIVE)], axis=1) if len(triplets) else np.zeros((0, 3), np.int64)
        keep = (rows >= 0).all(axis=1)
        if (~keep).any():
            bad = np.unique(triplets[[ANCHOR, POSITIVE, NEGATIVE]].to_numpy(np.int64)[~keep].ravel())
            have = set(pos.index.tolist())
            bad = [int(a) for a in bad if a not in have][:5]
            warnings.warn(f"{(~keep).sum()} of {len(triplets)} triplets dropped: an article has no readable "
                          f"image (e.g. article {bad})", stacklevel=2)
        trip = triplets[keep].reset_index(drop=True)
        rows = rows[keep]
        report["n_triplets_dropped_no_image"] = int((~keep).sum())
        train_df, val_df, note = split_by_customer(trip, validation_split, seed)
        # rows follow the split (split keeps order within each side)
        if len(val_df):
            keys = trip[CUSTOMER_KEY].to_numpy()
            is_val = np.isin(keys, np.unique(val_df[CUSTOMER_KEY].to_numpy()))
            train_rows, val_rows = rows[~is_val], rows[is_val]
        else:
            train_rows, val_rows = rows, rows[:0]
        report.update(n_triplets=int(len(trip)), n_train=int(len(train_rows)), n_validation=int(len(val_rows)),
                      validation_note=note)
        log(f"{variant}: {len(trip)} triplets ({n_given} given); {note}")

        tab = None if tab_all is None else tab_all[pd.Series(np.arange(len(art)), index=art[ARTICLE_ID]).loc[ids].to_numpy()]
        head = build_head(bb.output_shape[-1], variant, embedding_dim, hidden_units, normalize, stats)
        tower = assemble_embedding_model(bb, head, variant)
        if cached:
            train_model = build_siamese(head)
            feats = feature_cache.features
            if isinstance(feats, np.memmap) and feats.nbytes <= IN_MEMORY_FEATURES_BYTES:
                feats = np.array(feats)  # a small store: gathering from memory is faster than reading the map
            feats_t = feats if isinstance(feats, np.memmap) else tf.constant(feats)
            tab_t = tf.constant(tab) if tab is not None else None
            make_ds = lambda r, shuffle: _cached_dataset(r, feats_t, tab_t, batch_size, shuffle, seed)  # noqa: E731
            # evaluate only the articles of the triplets (a store holds every article)
            used = np.unique(rows)
            embed = lambda: _head_embeddings(head, feats, tab, used)  # noqa: E731
            local = lambda r: np.searchsorted(used, r)  # noqa: E731
        else:
            train_model = build_siamese(tower)
            make_ds = lambda r, shuffle: _image_dataset_triplets(r, paths, tab, image_size, batch_size,  # noqa: E731
                                                                 shuffle, seed)
            embed = lambda: _tower_embeddings(tower, paths, tab, image_size)[0]  # noqa: E731
            local = lambda r: r  # noqa: E731
        train_model.compile(optimizer=keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay),
                            loss=make_loss(loss, margin=margin, temperature=temperature))

        eval_rows = val_rows if len(val_rows) else train_rows
        report["accuracy_on"] = "validation" if len(val_rows) else "training"
        emb0 = embed() if len(rows) else None
        report["untrained_accuracy"] = rows_accuracy(emb0, local(eval_rows)) if emb0 is not None else float("nan")
        report["untrained_train_accuracy"] = (rows_accuracy(emb0, local(train_rows)) if emb0 is not None
                                              else float("nan"))

        timer = _EpochTimer()
        history = {"epoch": [], "loss": [], "val_loss": [], "seconds": []}
        if len(train_rows) and epochs > 0:
            with warnings.catch_warnings():
                # the image stream drops unreadable files, so its length is unknown to Keras
                warnings.filterwarnings("ignore", message="Your input ran out of data")
                fit = train_model.fit(make_ds(train_rows, True), epochs=int(epochs),
                                      validation_data=make_ds(val_rows, False) if len(val_rows) else None,
                                      callbacks=[timer], verbose=verbose, shuffle=False)
            h = fit.history
            history["epoch"] = list(range(1, len(h["loss"]) + 1))
            history["loss"] = [float(v) for v in h["loss"]]
            history["val_loss"] = [float(v) for v in h.get("val_loss", [float("nan")] * len(h["loss"]))]
            history["seconds"] = [float(s) for s in timer.seconds]
        else:
            log(f"{variant}: no training triplets, model left untrained")
        emb1 = embed() if len(rows) else None
        report["trained_accuracy"] = rows_accuracy(emb1, local(eval_rows)) if emb1 is not None else float("nan")
        report["trained_train_accuracy"] = (rows_accuracy(emb1, local(train_rows)) if emb1 is not None
                                            else float("nan"))

    report["final_loss"] = history["loss"][-1] if history["loss"] else float("nan")
    report["final_val_loss"] = history["val_loss"][-1] if history["val_loss"] else float("nan")
    secs = history["seconds"]
    # the first epoch includes tracing; report the median of the others where there are any
    report["seconds_per_epoch"] = float(np.median(secs[1:] if len(secs) > 1 else secs)) if secs else float("nan")
    report["epochs"] = len(secs)
    report["total_seconds"] = round(time.perf_counter() - t_start, 3)
    # JSON has no NaN: what could not be measured (no triplets, no validation) is None
    report = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in report.items()}
    return tower, history, report


# ------------------------------------------------------------- reporting ---
def history_frame(histories: dict[str, dict]) -> pd.DataFrame:
    """Long table of training histories: model (str), epoch (int), loss,
    val_loss, seconds (float); one row per model and epoch."""
    frames = [pd.DataFrame({"model": name, **{k: h[k] for k in ("epoch", "loss", "val_loss", "seconds")}})
              for name, h in histories.items() if len(h.get("epoch", []))]
    if not frames:
        return pd.DataFrame({"model": pd.Series(dtype="str"), "epoch": pd.Series(dtype="int64"),
                             "loss": pd.Series(dtype="float64"), "val_loss": pd.Series(dtype="float64"),
                             "seconds": pd.Series(dtype="float64")})
    return pd.concat(frames, ignore_index=True)


def accuracy_frame(reports: dict[str, dict]) -> pd.DataFrame:
    """One row per model: triplets, untrained / trained triplet accuracy, final losses, seconds per epoch."""
    cols = ["n_triplets", "n_train", "n_validation", "accuracy_on", "untrained_accuracy", "trained_accuracy",
            "final_loss", "final_val_loss", "seconds_per_epoch", "used_cache", "pretrained"]
    return pd.DataFrame([{"model": k, **{c: r.get(c) for c in cols}} for k, r in reports.items()])


def plot_training(histories: dict[str, dict], reports: dict[str, dict] | None = None, title: str | None = None):
    """Figure: loss per epoch (training solid, validation dashed) per model, and,
    given ``reports``, triplet accuracy untrained vs trained per model (bars,
    with the 0.5 chance line). Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    ncols = 2 if reports else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    for i, (name, h) in enumerate(histories.items()):
        color = f"C{i}"
        if h.get("epoch"):
            ax.plot(h["epoch"], h["loss"], "-o", color=color, label=f"{name} training")
            if np.isfinite(np.asarray(h["val_loss"], float)).any():
                ax.plot(h["epoch"], h["val_loss"], "--s", color=color, label=f"{name} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss per epoch")
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    if reports:
        ax = axes[0, 1]
        names = list(reports)
        x = np.arange(len(names))
        def num(v):
            return np.nan if v is None else float(v)
        before = [num(reports[n].get("untrained_accuracy")) for n in names]
        after = [num(reports[n].get("trained_accuracy")) for n in names]
        ax.bar(x - 0.2, before, 0.4, label="untrained", color="0.6")
        ax.bar(x + 0.2, after, 0.4, label="trained", color="C2")
        for xi, b, a in zip(x, before, after):
            for dx, v in ((-0.2, b), (0.2, a)):
                if np.isfinite(v):
                    ax.text(xi + dx, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=9)
        ax.axhline(0.5, color="k", lw=0.8, ls=":", label="chance")
        ax.set_xticks(x, names)
        ax.set_ylim(0, 1.08)
        on = {reports[n].get("accuracy_on", "validation") for n in names}
        ax.set_ylabel(f"triplet accuracy ({'/'.join(sorted(on))} triplets)")
        ax.set_title("d(anchor, positive) < d(anchor, negative)")
        ax.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------- notebook helpers ---
def training_settings(profile: str, **overrides) -> dict:
    """The notebook's settings: the profile's backbone, pooling, weights, embedding_dim,
    epochs, batch_size, image_size and max_triplets, with every override that is
    not None taking precedence (notebook parameters default to None = profile).
    ``weights``: None -> the profile's ("imagenet" for tiny/demo/full); "random" ->
    None (an untrained backbone); anything else (e.g. a file path) as given.
    Also: loss ("triplet"), normalize (False, the original),
    learning_rate (:data:`LEARNING_RATE`), validation_split (0.2), distribute ("default")."""
    from .config import get_profile

    p = get_profile(profile)
    s = {"backbone": p.backbone, "pooling": p.pooling, "embedding_dim": p.embedding_dim, "epochs": p.epochs,
         "batch_size": p.batch_size, "image_size": tuple(p.image_size), "max_triplets": p.max_triplets,
         "loss": "triplet", "normalize": False, "weights": p.weights, "learning_rate": LEARNING_RATE,
         "validation_split": 0.2, "distribute": "default"}
    unknown = set(overrides) - set(s)
    if unknown:
        raise ValueError(f"unknown training setting(s) {sorted(unknown)}; known: {sorted(s)}")
    s.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(s["weights"], str) and s["weights"].strip().lower() == "random":
        s["weights"] = None
    s["image_size"] = tuple(int(v) for v in s["image_size"])
    return s


def write_training_outputs(work_dir, histories: dict[str, dict], reports: dict[str, dict]) -> dict:
    """Write ``models/training_history.parquet`` (:func:`history_frame`) and
    ``models/training_report.json`` (the reports) atomically; returns their paths."""
    from .config import TRAINING_HISTORY, TRAINING_REPORT
    from .storage import write_json, write_parquet

    work_dir = Path(work_dir)
    return {"history": write_parquet(history_frame(histories), work_dir / TRAINING_HISTORY),
            "report": write_json(reports, work_dir / TRAINING_REPORT)}


def reload_max_difference(model: keras.Model, path, articles: pd.DataFrame, images: pd.DataFrame | None = None,
                          n: int = 8, seed: int = 0) -> float:
    """Load the saved model at ``path`` and embed ``n`` inputs with both it and
    ``model``; returns the largest absolute difference (0.0 means identical
    embeddings). With ``images`` (article_id, has_image, abs_path): ``n`` random
    articles with an image, decoded with :func:`hm_utils.images.load_image`.
    Without: ``n`` seeded random images (uniform 0..255; the weights either match
    or not, any input shows it, and no photo is decoded) with the tabular rows of
    ``n`` random articles."""
    from .images import load_image
    from .model import load_embedding_model, model_variant

    h, w = model.input["image"].shape[1:3]
    rng = np.random.default_rng(seed)
    if images is not None:
        tbl = images[images[HAS_IMAGE].astype(bool)] if HAS_IMAGE in images.columns else images
        tbl = tbl.sample(n=min(n, len(tbl)), random_state=seed) if len(tbl) else tbl
        if not len(tbl):
            raise ValueError("no article with an image to compare embeddings on")
        x = {"image": np.stack([load_image(p, (h, w)) for p in tbl["abs_path"]])}
        ids = tbl[ARTICLE_ID].astype(np.int64)
    else:
        x = {"image": rng.uniform(0, 255, (n, h, w, 3)).astype(np.float32)}
        ids = articles[ARTICLE_ID].astype(np.int64).sample(n=n, replace=len(articles) < n, random_state=seed)
    if model_variant(model) == "combined":
        art = articles.set_index(articles[ARTICLE_ID].astype(np.int64))
        x["tabular"] = tabular_features(art.loc[ids].reset_index(drop=True))
    again = load_embedding_model(path)
    return float(np.abs(again.predict(x, verbose=0) - model.predict(x, verbose=0)).max())
