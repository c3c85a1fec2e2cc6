"""Training the siamese embedding model on mined triplets.

The approach (Schroff, Kalenichenko, Philbin 2015, "FaceNet"): one tower
(:func:`hm_utils.model.siamese.build_embedding_model`) embeds anchor, positive and
negative articles with shared weights; the triplet loss pulls each anchor
towards its positive (bought by the same customer) and pushes it from its
negative. InfoNCE with in-batch negatives (van den Oord, Li, Vinyals 2018) is
the alternative loss.

Settings: one frozen :class:`TrainingSettings` (the model, the loss, the optimiser,
the split), built from a profile and the notebook's parameters
(:meth:`TrainingSettings.from_profile`), passed whole to :func:`train_siamese`
and recorded whole in notebook 03's key figures.

Features: the backbone is frozen, so its output for an article never changes.
:func:`train_siamese` then trains only the head (tabular encoder + head) on
backbone features computed once (a :class:`hm_utils.model.feature_cache.FeatureCache`:
notebook 03 passes the run's feature store, :func:`hm_utils.model.feature_store.load_features`,
whose weights digest is checked against the backbone); the saved model is the whole
tower (backbone + the trained head, sharing its weights). Without the features
(``use_cache=False``, or a trainable backbone such as ``small_cnn``, or the top of a
backbone made trainable by :func:`hm_utils.model.fine_tuning.set_trainable_top`: fine-tuning, BatchNorm kept
frozen) every epoch decodes the three images of every triplet and runs the backbone.

Validation: triplets are split by customer (all of a customer's triplets on
one side), ``validation_split`` of the customers held out. Triplet accuracy
(share of triplets with d(a, p) < d(a, n), squared L2,
:func:`hm_utils.core.metrics.triplet_accuracy`) is reported for the untrained and the
trained model. The split itself comes back with the model (:class:`TrainingRun`),
so that notebook 03 can hand its held-out triplets on to notebook 05
(:func:`hm_utils.core.workdir.write_triplet_split`).
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from hm_utils.core.arrays import sorted_unique  # noqa: E402
from hm_utils.core.checks import require_columns  # noqa: E402
from hm_utils.core.config import (ANCHOR, ARTICLE_ID, CUSTOMER_KEY, HAS_IMAGE, IMAGE_ABS_PATH, NEGATIVE,  # noqa: E402
                                  POSITIVE, get_profile)
from hm_utils.core.metrics import rows_accuracy  # noqa: E402
from hm_utils.core.settings import StageSettings  # noqa: E402
from hm_utils.data.images import article_image_paths, image_dataset, load_image  # noqa: E402
from hm_utils.embeddings.health import health_records, plain  # noqa: E402
from hm_utils.model.epoch_selection import held_out_report  # noqa: E402
from hm_utils.model.feature_cache import FeatureCache, compute_feature_cache  # noqa: E402
from hm_utils.model.fine_tuning import copy_model  # noqa: E402
from hm_utils.model.losses import make_loss  # noqa: E402
from hm_utils.model.siamese import (HIDDEN_UNITS, assemble_embedding_model, build_backbone, build_head,  # noqa: E402
                                    build_siamese, load_embedding_model, model_variant, tabular_features, tabular_stats)
from hm_utils.model.triplet_datasets import (cached_triplet_dataset, image_triplet_dataset,  # noqa: E402
                                             product_triplet_rows)

_DEMO = get_profile("demo")   # TrainingSettings() is the demo profile's model
MIN_TRIPLETS_FOR_VALIDATION = 10  # below this, no validation split (too few to hold any out)
# AdamW learning rate. On the demo profile (frozen random ResNet50, average pooling: features of mean ~4,
# std ~4) 1e-3 and 3e-4 make the validation loss jump from epoch to epoch and stop at ~0.72-0.74 triplet
# accuracy; 1e-4 trains smoothly to ~0.91 (image only) and ~0.95 (combined) in 8 epochs.
LEARNING_RATE = 1e-4
# A memory-mapped feature store up to this size is read into memory for training (gathers from memory
# are faster than reads from the map); a bigger one is read batch by batch.
IN_MEMORY_FEATURES_BYTES = 1 << 30


# ------------------------------------------------------------- settings ---
XLA_MIN_TRIPLETS = 50_000   # training triplets from which jit_compile=None turns XLA on


def use_xla(jit_compile: bool | None, cached: bool, n_train: int) -> bool:
    """Whether the head's training step is compiled by XLA: never without stored features
    (``cached`` False: the backbone is in the step); else ``jit_compile`` when given, and with
    None when ``n_train`` (training triplets) >= :data:`XLA_MIN_TRIPLETS`."""
    if not cached:
        return False
    if jit_compile is None:
        return int(n_train) >= XLA_MIN_TRIPLETS
    return bool(jit_compile)


@dataclass(frozen=True)
class TrainingSettings(StageSettings):
    """Everything that decides how a siamese model is trained (one run of notebook 03).

    Model (:func:`hm_utils.model.siamese.build_embedding_model`): backbone, pooling, weights
    (None: random, untrained; "imagenet"; or a weights file), image_size (H, W),
    embedding_dim, hidden_units, normalize (L2-normalise the embedding; False as the
    original). Loss: "triplet" (FaceNet, ``margin``) or "infonce" (``temperature``).
    Optimiser: AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization")
    with learning_rate and weight_decay (4e-3, Keras's default), ``epochs`` of
    ``batch_size`` triplets. Data: validation_split (share of customers held out,
    :func:`split_by_customer`), max_triplets (seeded random subset when given), seed.
    use_cache: with a frozen backbone, train the
    head on backbone features computed once instead of decoding images every epoch.
    Notebook 03's run: train_strategy (which of 02's mined triplets), fine_tune_layers
    (N > 0 also trains the backbone's last N weight layers, BatchNorm frozen, from the
    photos), untrained_reference (also store an untrained backbone's features, the
    reference of 05's quality table), compare_infonce (also train image-only with the
    other loss; None: when stored features make it cheap). head: "residual" (linear,
    L2-normalised, starts at the projected pretrained features) or "original"
    (:func:`hm_utils.model.siamese.build_head`); symmetric: InfoNCE in both directions; patience:
    epochs without a better held-out next-purchase recall before training stops
    (:mod:`hm_utils.model.epoch_selection`; ``epochs`` is then a maximum); selection_k: the k of that recall@k;
    selection_rule: "interval" (the best epoch is kept only when its gain over the untrained start has a 95%
    paired interval above 0, else the start) or "best".
    product_positives: that many catalogue triplets per training purchase triplet (0: none), whose positive
    is another colour of the anchor's product (:func:`product_triplet_rows`); held_out_products: the share of
    products (seeded) never used there, on which a same-product figure can then be measured;
    by_hand_triplets: at most that many triplets (a seeded sample) for notebook 03's head built by hand, a
    teaching view of one epoch (at competition scale all 872,843 triplets took 14 minutes there).
    jit_compile: compile the head's training step with XLA (``Model.compile(jit_compile=...)``); None:
    when the head trains on stored features on at least :data:`XLA_MIN_TRIPLETS` training triplets,
    where the step ran 1.25x (image-only) and 1.49x (combined) the triplets/s on 2 cores and its few
    seconds of compiling are repaid (``benchmarks/RESULTS_backbone.md``). XLA rounds differently: the
    losses move in the fourth digit. Never with a backbone in the training step (fine-tuning).

    The defaults are the demo profile's (pretrained EfficientNet-Lite0, average pooling; the original
    notebook's ResNet50 with flatten pooling is ``backbone="resnet50", pooling="flatten"``);
    :meth:`~hm_utils.core.settings.StageSettings.from_profile` takes a profile's, and
    :meth:`~hm_utils.core.settings.StageSettings.from_notebook` notebook 03's parameters on top.
    ``weights="random"`` means None.
    """
    backbone: str = _DEMO.backbone
    pooling: str = _DEMO.pooling
    weights: str | None = _DEMO.weights
    image_size: tuple[int, int] = tuple(_DEMO.image_size)
    embedding_dim: int = _DEMO.embedding_dim
    hidden_units: int = HIDDEN_UNITS
    normalize: bool = False
    loss: str = "triplet"
    margin: float = 0.2
    temperature: float = 0.1
    epochs: int = _DEMO.epochs
    batch_size: int = _DEMO.batch_size
    learning_rate: float = LEARNING_RATE
    weight_decay: float = 4e-3
    validation_split: float = 0.2
    max_triplets: int | None = None
    seed: int = 42
    use_cache: bool = True
    train_strategy: str = "original"
    fine_tune_layers: int = 0
    untrained_reference: bool = True
    compare_infonce: bool | None = None
    head: str = "residual"
    symmetric: bool = False
    patience: int = 2
    selection_k: int = 100
    selection_rule: str = "interval"
    product_positives: float = 0.0
    held_out_products: float = 0.2
    by_hand_triplets: int = 20_000
    jit_compile: bool | None = None

    def __post_init__(self):
        if isinstance(self.weights, str) and self.weights.strip().lower() == "random":
            object.__setattr__(self, "weights", None)
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))

    @classmethod
    def profile_values(cls, profile) -> dict:
        """The profile's backbone, pooling, weights, image_size, embedding_dim, epochs, batch_size and
        max_triplets; the class defaults (the demo profile's) for the rest."""
        return {"backbone": profile.backbone, "pooling": profile.pooling, "weights": profile.weights,
                "image_size": tuple(profile.image_size), "embedding_dim": profile.embedding_dim,
                "epochs": profile.epochs, "batch_size": profile.batch_size, "max_triplets": profile.max_triplets}


class TripletSplit(NamedTuple):
    """Triplets split by customer: train and validation (same columns, index reset) and a note
    saying how many triplets and customers each side has, or why there is no validation side."""
    train: pd.DataFrame
    validation: pd.DataFrame
    note: str


@dataclass
class TrainingRun:
    """What :func:`train_siamese` gives back: ``model``, the one-tower Keras embedding model;
    ``history``, a dict of lists (``epoch``, ``loss``, ``val_loss`` (nan without validation),
    ``seconds``); ``report``, a JSON-able dict (triplet counts, validation note, untrained /
    trained triplet accuracy on validation and training triplets, final losses, seconds per
    epoch, whether the cache was used, pretrained weights or not, feature extraction seconds;
    with stored features ``health`` of the trained embedding; with epoch selection ``selection_curve``,
    ``best_epoch``, ``selection_recall`` and ``heldout``, the report customers' paired comparison;
    None where a figure could not be measured); ``split``, the :class:`TripletSplit` the model
    was trained and validated on (after the cap and the drop of triplets without features)."""
    model: keras.Model
    history: dict
    report: dict
    split: TripletSplit


# ------------------------------------------------------------- strategy ---
# ------------------------------------------------------------- triplets ---
def split_by_customer(triplets: pd.DataFrame, validation_split: float = 0.2, seed: int = 42,
                      min_triplets: int = MIN_TRIPLETS_FOR_VALIDATION) -> TripletSplit:
    """Hold out ``validation_split`` of the customers (all their triplets).

    Returns a :class:`TripletSplit` (train, validation, note). With fewer than ``min_triplets`` triplets,
    fewer than 2 customers, or ``validation_split`` <= 0, the validation frame
    is empty and ``note`` says why (never an error). Customers without a
    ``customer_key`` column: each triplet is its own group.
    """
    n = len(triplets)
    if validation_split <= 0:
        return TripletSplit(triplets, triplets.iloc[:0], "validation disabled (validation_split = 0)")
    keys = triplets[CUSTOMER_KEY].to_numpy() if CUSTOMER_KEY in triplets.columns else np.arange(n)
    customers = sorted_unique(keys)
    if n < min_triplets or len(customers) < 2:
        return TripletSplit(triplets, triplets.iloc[:0], (f"only {n} triplets from {len(customers)} customers: too "
                                                          f"few for a validation split (need {min_triplets}); "
                                                          "validation skipped"))
    rng = np.random.default_rng(seed)
    n_val = min(max(1, int(round(validation_split * len(customers)))), len(customers) - 1)
    val_customers = rng.choice(customers, size=n_val, replace=False)
    is_val = np.isin(keys, val_customers)
    return TripletSplit(triplets[~is_val].reset_index(drop=True), triplets[is_val].reset_index(drop=True),
                        f"{(~is_val).sum()} training and {is_val.sum()} validation triplets "
                        f"({len(customers) - n_val} / {n_val} customers)")


class EpochTimer(keras.callbacks.Callback):
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


# ------------------------------------------------------------- training steps ---
def effective_normalize(settings: TrainingSettings) -> bool:
    """Whether the embedding model ends in an L2 normalisation: always for the residual head; for the
    original head when ``normalize`` is set or the loss is InfoNCE. InfoNCE compares cosines only (it
    normalises inside the loss), so the norms of an un-normalised output are left to chance: the exported
    vectors, and the squared-L2 triplet accuracy read from them, then measure something the loss never
    shaped (on the demo: held-out accuracy 0.477 by squared L2 against 0.875 by cosine, same model)."""
    return settings.head == "residual" or bool(settings.normalize) or settings.loss == "infonce"



def cap_triplets(triplets: pd.DataFrame, max_triplets: int | None, seed: int) -> pd.DataFrame:
    """Check the triplet columns (anchor, positive, negative: :func:`hm_utils.core.checks.require_columns`) and
    keep a seeded random subset of ``max_triplets`` rows when there are more (index reset)."""
    require_columns(triplets, [ANCHOR, POSITIVE, NEGATIVE], "triplets table")
    if max_triplets is not None and len(triplets) > max_triplets:
        triplets = triplets.sample(n=int(max_triplets), random_state=int(seed)).reset_index(drop=True)
    return triplets


def _tabular_inputs(triplets: pd.DataFrame, articles: pd.DataFrame, variant: str):
    """(needed article ids int64 [m] sorted, articles with int64 ids, tabular [n, 11] or None,
    its (mean, variance) or None); ValueError naming triplet article ids not in ``articles``."""
    needed = sorted_unique(triplets[[ANCHOR, POSITIVE, NEGATIVE]].to_numpy(np.int64).ravel()) if len(triplets) \
        else np.zeros(0, np.int64)
    art = articles.copy()
    art[ARTICLE_ID] = art[ARTICLE_ID].astype(np.int64)
    unknown = np.setdiff1d(needed, art[ARTICLE_ID].to_numpy())
    if len(unknown):
        raise ValueError(f"{len(unknown)} triplet article id(s) are not in the articles table, e.g. {unknown[:5].tolist()}")
    tab_all = tabular_features(art) if variant == "combined" else None
    return needed, art, tab_all, tabular_stats(tab_all) if tab_all is not None else None


def _training_backbone(settings: TrainingSettings, backbone_model, feature_cache, log) -> tuple[keras.Model, bool]:
    """(backbone, cached): the caller's backbone (a trainable one copied, so the caller's object is never
    trained) or a new one; cached: whether the head trains on backbone features (frozen backbone and
    ``use_cache``). A ``feature_cache`` needs its ``backbone_model``, and its digest must match."""
    s = settings
    bb = backbone_model or build_backbone(s.backbone, s.image_size, s.pooling, s.weights)
    if backbone_model is not None and bb.trainable:
        # a trainable backbone is trained by this call: work on a copy, so that a model trained
        # earlier with the same backbone object keeps the weights it was trained with
        bb = copy_model(bb)
    if feature_cache is not None and backbone_model is None:
        raise ValueError("feature_cache given without the backbone_model that computed it; pass both "
                         "(a new backbone would not match the cached features)")
    cached = s.use_cache and not bb.trainable
    if s.use_cache and bb.trainable:
        log(f"backbone {bb.layers[1].name} is trainable: no feature cache, images are decoded every epoch")
    if cached and feature_cache is not None and feature_cache.digest is not None:
        from hm_utils.model.inference import model_digest
        if model_digest(bb) != feature_cache.digest:
            raise ValueError(f"feature_cache was computed by a backbone with other weights (digest "
                             f"{feature_cache.digest}) than backbone_model ({model_digest(bb)}); pass the "
                             "backbone that computed it")
    return bb, cached


def triplet_rows(triplets: pd.DataFrame, ids: np.ndarray, ok: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """The triplets whose three articles are usable (``ok`` [n] bool aligned with ``ids`` [n]), index
    reset, and their rows into ``ids`` (int64 [m, 3]: anchor, positive, negative). Dropped triplets
    are a warning naming up to 5 articles without a readable image."""
    pos = pd.Series(np.arange(len(ids)), index=ids)[ok]
    rows = np.stack([pd.Series(triplets[c].to_numpy(np.int64)).map(pos).fillna(-1).to_numpy(np.int64)
                     for c in (ANCHOR, POSITIVE, NEGATIVE)], axis=1) if len(triplets) else np.zeros((0, 3), np.int64)
    keep = (rows >= 0).all(axis=1)
    if (~keep).any():
        bad = sorted_unique(triplets[[ANCHOR, POSITIVE, NEGATIVE]].to_numpy(np.int64)[~keep].ravel())
        have = set(pos.index.tolist())
        bad = [int(a) for a in bad if a not in have][:5]
        warnings.warn(f"{(~keep).sum()} of {len(triplets)} triplets dropped: an article has no readable "
                      f"image (e.g. article {bad})", stacklevel=3)
    return triplets[keep].reset_index(drop=True), rows[keep]


def _split_rows(trip: pd.DataFrame, rows: np.ndarray, split: TripletSplit) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``trip``'s training and validation triplets (the split keeps order within each side)."""
    if not len(split.validation):
        return rows, rows[:0]
    is_val = np.isin(trip[CUSTOMER_KEY].to_numpy(), sorted_unique(split.validation[CUSTOMER_KEY].to_numpy()))
    return rows[~is_val], rows[is_val]


def _compiled_models(bb, variant, settings, cached, feature_cache, paths, tab, stats, rows, image_size,
                     xla: bool = False):
    """(tower, train_model, make_ds, embed, local, head, embed_all): the one-tower model and the siamese model
    that trains it (compiled with AdamW and the loss, by XLA when ``xla``), a maker of (shuffled) datasets of
    triplet rows, a function that embeds every article the rows use, the map of rows into that embedding's
    rows, the head, and (cached only, else None) a function embedding every row of the feature cache."""
    s = settings
    head = build_head(bb.output_shape[-1], variant, s.embedding_dim, s.hidden_units, effective_normalize(s), stats,
                      head=s.head, seed=s.seed)
    tower = assemble_embedding_model(bb, head, variant)
    embed_all = None
    if cached:
        train_model = build_siamese(head)
        feats = feature_cache.features
        if isinstance(feats, np.memmap) and feats.nbytes <= IN_MEMORY_FEATURES_BYTES:
            feats = np.array(feats)  # a small store: gathering from memory is faster than reading the map
        feats_t = feats if isinstance(feats, np.memmap) else tf.constant(feats)
        tab_t = tf.constant(tab) if tab is not None else None

        def make_ds(r, shuffle):
            return cached_triplet_dataset(r, feats_t, tab_t, s.batch_size, shuffle, s.seed)
        # evaluate only the articles of the triplets (a store holds every article)
        used = sorted_unique(rows)

        def embed():
            return _head_embeddings(head, feats, tab, used)

        def embed_all():
            return _head_embeddings(head, feats, tab)

        def local(r):
            return np.searchsorted(used, r)
    else:
        train_model = build_siamese(tower)

        def make_ds(r, shuffle):
            return image_triplet_dataset(r, paths, tab, image_size, s.batch_size, shuffle, s.seed)

        def embed():
            return _tower_embeddings(tower, paths, tab, image_size)[0]

        def local(r):
            return r
    train_model.compile(optimizer=keras.optimizers.AdamW(learning_rate=s.learning_rate, weight_decay=s.weight_decay),
                        loss=make_loss(s.loss, margin=s.margin, temperature=s.temperature, symmetric=s.symmetric),
                        jit_compile=bool(xla))
    return tower, train_model, make_ds, embed, local, head, embed_all


def _fit(train_model, make_ds, train_rows, val_rows, epochs: int, verbose, selection=None) -> dict:
    """Train for at most ``epochs``; the history as a dict of lists (epoch, loss, val_loss, seconds, and with
    an :class:`hm_utils.model.epoch_selection.EpochSelection` ``selection``: heldout_recall, val_accuracy)."""
    timer = EpochTimer()
    with warnings.catch_warnings():
        # the image stream drops unreadable files, so its length is unknown to Keras
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        fit = train_model.fit(make_ds(train_rows, True), epochs=int(epochs),
                              validation_data=make_ds(val_rows, False) if len(val_rows) else None,
                              callbacks=[timer] + ([selection] if selection is not None else []),
                              verbose=verbose, shuffle=False)
    h = fit.history
    out = {"epoch": list(range(1, len(h["loss"]) + 1)), "loss": [float(v) for v in h["loss"]],
           "val_loss": [float(v) for v in h.get("val_loss", [float("nan")] * len(h["loss"]))],
           "seconds": [float(s) for s in timer.seconds]}
    if selection is not None:
        curve = {r["epoch"]: r for r in selection.curve}
        out["heldout_recall"] = [float(curve[e]["recall"]) for e in out["epoch"]]
        out["val_accuracy"] = [float(curve[e]["accuracy"]) for e in out["epoch"]]
    return out


def _accuracies(embed, local, train_rows, eval_rows, rows, when: str) -> dict:
    """``<when>_accuracy`` (on ``eval_rows``) and ``<when>_train_accuracy``; nan without triplets."""
    emb = embed() if len(rows) else None
    if emb is None:
        return {f"{when}_accuracy": float("nan"), f"{when}_train_accuracy": float("nan")}
    return {f"{when}_accuracy": rows_accuracy(emb, local(eval_rows)),
            f"{when}_train_accuracy": rows_accuracy(emb, local(train_rows))}


def _finish_report(report: dict, history: dict, t_start: float) -> dict:
    """Final losses, seconds per epoch (the median of all epochs but the first, which includes tracing),
    epochs and total seconds; every non-finite float becomes None (JSON has no NaN)."""
    report["final_loss"] = history["loss"][-1] if history["loss"] else float("nan")
    report["final_val_loss"] = history["val_loss"][-1] if history["val_loss"] else float("nan")
    secs = history["seconds"]
    report["seconds_per_epoch"] = float(np.median(secs[1:] if len(secs) > 1 else secs)) if secs else float("nan")
    report["epochs"] = len(secs)
    report["total_seconds"] = round(time.perf_counter() - t_start, 3)
    return plain(report)



# ------------------------------------------------------------- training ---
def train_siamese(triplets: pd.DataFrame, articles: pd.DataFrame, images: pd.DataFrame,
                  settings: TrainingSettings, variant: str = "image_only", *,
                  backbone_model: keras.Model | None = None, feature_cache: FeatureCache | None = None,
                  cache_path: str | os.PathLike | None = None, verbose: int | str = "auto",
                  log=print, transactions: pd.DataFrame | None = None) -> TrainingRun:
    """Train the embedding model ``variant`` ("image_only" or "combined") as a siamese network on triplets.

    triplets: ``anchor``, ``positive``, ``negative`` (article ids) and ``customer_key`` (for the
    customer-wise validation split); articles: ``article_id`` + ``config.TABULAR_COLUMNS``; images:
    ``article_id``, ``has_image``, ``abs_path``; settings: a :class:`TrainingSettings`.
    ``backbone_model`` / ``feature_cache`` reuse a frozen backbone and its features across variants
    (without a cache covering the triplets' articles, one is computed, in a ``.npy`` memory map at
    ``cache_path`` when given); a trainable ``backbone_model`` is copied first, so the caller's object
    is never changed. ``verbose`` is Keras's; ``log`` receives one-line notes.

    ``transactions`` (with stored features and held-out customers): their next purchases choose the epoch and
    judge the kept head against the features (:func:`hm_utils.model.epoch_selection.make_selection`).

    Steps: cap the triplets (:func:`cap_triplets`); build or copy the backbone; features per article
    (cached) or image paths; drop triplets without (:func:`triplet_rows`); split by customer
    (:func:`split_by_customer`); build and compile the models; accuracy before; fit; accuracy after.
    Returns a :class:`TrainingRun` (model, history, report, split).
    """
    s = settings
    keras.utils.set_random_seed(int(s.seed))
    t_start = time.perf_counter()
    n_given = len(triplets)
    triplets = cap_triplets(triplets, s.max_triplets, s.seed)
    report: dict = {"variant": variant, "backbone": s.backbone, "pooling": s.pooling, "loss": s.loss,
                    "embedding_dim": int(s.embedding_dim), "normalize": effective_normalize(s), "head": s.head,
                    "pretrained": s.weights is not None, "weights": None if s.weights is None else str(s.weights),
                    "n_triplets_given": int(n_given)}
    needed, art, tab_all, stats = _tabular_inputs(triplets, articles, variant)

    bb, cached = _training_backbone(s, backbone_model, feature_cache, log)
    image_size = tuple(int(v) for v in bb.input_shape[1:3])
    report["trainable_backbone"] = bool(bb.trainable)
    report["used_cache"] = bool(cached)
    paths = None
    if cached:
        if feature_cache is None or not np.isin(needed, feature_cache.article_ids).all():
            feature_cache = compute_feature_cache(bb, needed, article_image_paths(images, needed),
                                                  batch_size=max(s.batch_size, 32), cache_path=cache_path)
        report["feature_seconds"] = round(float(feature_cache.seconds), 3)
        report["feature_dim"] = int(feature_cache.features.shape[1])
        ids, ok = feature_cache.article_ids, feature_cache.ok
    else:
        ids = needed
        paths = article_image_paths(images, ids)
        ok = np.array([p is not None for p in paths], bool)
    trip, rows = triplet_rows(triplets, ids, ok)
    report["n_triplets_dropped_no_image"] = int(len(triplets) - len(trip))
    split = split_by_customer(trip, s.validation_split, s.seed)
    train_rows, val_rows = _split_rows(trip, rows, split)
    report.update(n_triplets=int(len(trip)), n_train=int(len(train_rows)), n_validation=int(len(val_rows)),
                  validation_note=split.note)
    log(f"{variant}: {len(trip)} triplets ({n_given} given); {split.note}")
    if s.product_positives > 0:
        extra, held = product_triplet_rows(art, ids, ok, int(round(s.product_positives * len(train_rows))),
                                           s.seed, s.held_out_products)
        train_rows = np.concatenate([train_rows, extra])
        rows = np.concatenate([rows, extra])  # the articles the accuracies embed
        report.update(n_product_triplets=int(len(extra)), held_out_products=held.tolist())
        log(f"{variant}: {len(extra)} catalogue triplets (another colour of the anchor's product as the "
            f"positive) added to the training triplets; {len(held)} products held out from them")

    tab = None if tab_all is None else tab_all[pd.Series(np.arange(len(art)), index=art[ARTICLE_ID]).loc[ids].to_numpy()]
    report["jit_compile"] = use_xla(s.jit_compile, cached, len(train_rows))
    tower, train_model, make_ds, embed, local, head, embed_all = _compiled_models(
        bb, variant, s, cached, feature_cache, paths, tab, stats, rows, image_size, report["jit_compile"])
    eval_rows = val_rows if len(val_rows) else train_rows
    report["accuracy_on"] = "validation" if len(val_rows) else "training"
    report.update(_accuracies(embed, local, train_rows, eval_rows, rows, "untrained"))
    selection, queries, untrained_emb = None, None, None
    if transactions is not None:
        from hm_utils.model.epoch_selection import make_selection
        selection, queries, untrained_emb = make_selection(
            transactions, feature_cache if embed_all is not None else None, split, val_rows, head, embed_all, s,
            variant, log)
    if len(train_rows) and s.epochs > 0:
        history = _fit(train_model, make_ds, train_rows, val_rows, s.epochs, verbose, selection)
    else:
        history = {"epoch": [], "loss": [], "val_loss": [], "seconds": []}
        log(f"{variant}: no training triplets, model left untrained")
    report.update(_accuracies(embed, local, train_rows, eval_rows, rows, "trained"))
    if embed_all is not None:
        report.update(held_out_report(embed_all(), feature_cache, selection, queries, s.seed, untrained_emb))
    return TrainingRun(tower, history, _finish_report(report, history, t_start), split)


# ------------------------------------------------------------- notebook helpers ---
def accuracy_frame(reports: dict[str, dict]) -> pd.DataFrame:
    """One row per model: triplets, untrained / trained triplet accuracy, final losses, seconds per epoch."""
    cols = ["n_triplets", "n_train", "n_validation", "accuracy_on", "untrained_accuracy", "trained_accuracy",
            "final_loss", "final_val_loss", "seconds_per_epoch", "used_cache", "pretrained"]
    return pd.DataFrame([{"model": k, **{c: r.get(c) for c in cols}} for k, r in reports.items()])


def reload_max_difference(model: keras.Model, path, articles: pd.DataFrame, images: pd.DataFrame | None = None,
                          n: int = 8, seed: int = 0) -> float:
    """Load the saved model at ``path`` and embed ``n`` inputs with both it and
    ``model``; returns the largest absolute difference (0.0 means identical
    embeddings). With ``images`` (article_id, has_image, abs_path): ``n`` random
    articles with an image, decoded with :func:`hm_utils.data.images.load_image`.
    Without: ``n`` seeded random images (uniform 0..255; the weights either match
    or not, any input shows it, and no photo is decoded) with the tabular rows of
    ``n`` random articles."""

    h, w = model.input["image"].shape[1:3]
    rng = np.random.default_rng(seed)
    if images is not None:
        tbl = images[images[HAS_IMAGE].astype(bool)] if HAS_IMAGE in images.columns else images
        tbl = tbl.sample(n=min(n, len(tbl)), random_state=seed) if len(tbl) else tbl
        if not len(tbl):
            raise ValueError("no article with an image to compare embeddings on")
        x = {"image": np.stack([load_image(p, (h, w)) for p in tbl[IMAGE_ABS_PATH]])}
        ids = tbl[ARTICLE_ID].astype(np.int64)
    else:
        x = {"image": rng.uniform(0, 255, (n, h, w, 3)).astype(np.float32)}
        ids = articles[ARTICLE_ID].astype(np.int64).sample(n=n, replace=len(articles) < n, random_state=seed)
    if model_variant(model) == "combined":
        art = articles.set_index(articles[ARTICLE_ID].astype(np.int64))
        x["tabular"] = tabular_features(art.loc[ids].reset_index(drop=True))
    again = load_embedding_model(path)
    return float(np.abs(again.predict(x, verbose=0) - model.predict(x, verbose=0)).max())


def feature_triplet_dataset(triplets: pd.DataFrame, cache: FeatureCache, batch_size: int, seed: int = 0,
                            shuffle: bool = True) -> tuple[tf.data.Dataset, int]:
    """The siamese head's training data from stored features, as :func:`train_siamese` feeds it (image-only
    variant): batches of ``batch_size`` triplets, x = the anchor's, positive's and negative's features
    [B, F] each, y = their rows in the store [B, 3]; and the number of triplets in it. Triplets with an
    article without features are dropped with a warning (:func:`triplet_rows`)."""
    _, rows = triplet_rows(triplets, cache.article_ids, cache.ok)
    feats = cache.features if isinstance(cache.features, np.memmap) else tf.constant(cache.features)
    return cached_triplet_dataset(rows, feats, None, batch_size, shuffle, seed), len(rows)


def training_key_figures(reports: dict[str, dict], health: dict[str, dict], comparison: pd.DataFrame) -> dict:
    """Notebook 03's key figures of its training runs, for ``record_metrics``: the triplet counts of the split
    (the image-only run's: every variant uses the same split), per model the accuracies, losses, epochs,
    timing and whether XLA compiled the step (``models``), the health of each embedding
    (:func:`hm_utils.embeddings.health.health_records`), the held-out report and the kept epoch per model, and
    the held-out comparison table (NaN as None).
    ``reports``: :attr:`TrainingRun.report` by model name; ``health``: the reports' ``health`` entries;
    ``comparison``: :func:`hm_utils.model.epoch_selection.heldout_frame` of the reports."""
    first = reports["image_only"]
    per_model = ("untrained_accuracy", "trained_accuracy", "accuracy_on", "final_loss", "final_val_loss",
                 "seconds_per_epoch", "epochs", "loss", "used_cache", "trainable_backbone", "head", "jit_compile")
    return {
        **{k: first[k] for k in ("n_triplets", "n_train", "n_validation", "validation_note")},
        "models": {name: {k: r[k] for k in per_model} for name, r in reports.items()},
        "health": health_records(health),
        "heldout": {name: r.get("heldout") for name, r in reports.items()},
        "best_epoch": {name: r.get("best_epoch") for name, r in reports.items()},
        "comparison": {name: {k: (None if pd.isna(v) else v) for k, v in row.items()}
                       for name, row in comparison.iterrows()},
    }
