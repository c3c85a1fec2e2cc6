"""Metric-learning losses for the siamese embedding model.

* :func:`triplet_loss`: FaceNet's triplet loss (Schroff, Kalenichenko, Philbin,
  "FaceNet: A Unified Embedding for Face Recognition and Clustering", CVPR 2015).
* :func:`info_nce_loss`: InfoNCE with in-batch negatives (van den Oord, Li,
  Vinyals, "Representation Learning with Contrastive Predictive Coding", 2018).

Both take embeddings as float32 tensors [B, D] (any backend tensor or numpy
array) and return a float32 scalar, the mean over the batch. The Keras wrappers
:class:`TripletLoss` and :class:`InfoNCELoss` work on a siamese model whose
output packs the three towers as [B, 3, D] (anchor, positive, negative along
axis 1, see :func:`hm_utils.model.siamese.build_siamese`); ``y_true`` is ignored.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
from keras import ops  # noqa: E402


def squared_distance(x, y):
    """Squared Euclidean distance row by row: [B, D], [B, D] -> [B] (same dtype)."""
    return ops.sum(ops.square(x - y), axis=-1)


def triplet_losses(anchor, positive, negative, margin: float = 0.2):
    """Per-triplet FaceNet loss, [B]: max(||a - p||^2 - ||a - n||^2 + margin, 0).

    Squared L2 distances, as in Schroff et al. (2015), eq. 1. ``margin`` is in
    squared-distance units (0.2 in FaceNet, for L2-normalised embeddings).
    """
    return ops.relu(squared_distance(anchor, positive) - squared_distance(anchor, negative) + margin)


def triplet_loss(anchor, positive, negative, margin: float = 0.2):
    """FaceNet triplet loss (Schroff, Kalenichenko, Philbin 2015): the mean over the
    batch of max(||a - p||^2 - ||a - n||^2 + margin, 0).

    anchor, positive, negative: float [B, D] embeddings. Returns a scalar.
    0 when every negative is farther from its anchor than the positive by more
    than ``margin``; equals ``margin`` when the three embeddings coincide.
    """
    return ops.mean(triplet_losses(anchor, positive, negative, margin))


def _l2_normalize(x, epsilon: float = 1e-12):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), epsilon))


_MASKED = -1e9  # logit of a column that is the row's own article (a false negative): never a negative


def _same(x, y):
    """[B, B] bool: x_i == y_j, for identifiers x, y [B]."""
    return ops.equal(ops.expand_dims(x, 1), ops.expand_dims(y, 0))


def info_nce_losses(anchor, positive, negative=None, temperature: float = 0.1, symmetric: bool = False,
                    ids=None):
    """Per-anchor InfoNCE loss, [B] (van den Oord, Li, Vinyals 2018), in-batch negatives.

    The embeddings are L2-normalised; logits[i, j] = cos(a_i, p_j) / temperature
    for every pair in the batch (plus cos(a_i, n_j) / temperature for the mined
    negatives when ``negative`` is given, as extra columns). Row i's loss is the
    cross-entropy against its own positive (the diagonal):
    ``logsumexp_j(logits[i, j]) - logits[i, i]``. Every other positive in the
    batch serves as a negative for anchor i.

    ``ids`` [B, 3] (identifiers of the anchor, positive and negative ARTICLES, e.g.
    feature-store rows; what the training datasets pass as ``y_true``): a column whose
    article is row i's positive or row i's anchor article is not a negative for row i
    (masked out, the diagonal kept): without this, a popular article bought in two
    triplets of one batch is pushed away from itself, and an anchor article that is
    another row's positive is a "negative" of cosine 1.

    Asymmetric by default (anchors classify positives). With ``symmetric=True``
    the positive -> anchor direction is added (positive i classifies the batch's
    anchors) and the two are averaged, as in CLIP (Radford et al. 2021).
    """
    a = _l2_normalize(anchor)
    p = _l2_normalize(positive)
    b = ops.shape(a)[0]
    ap = ops.matmul(a, ops.transpose(p)) / temperature  # [B, B]
    eye = ops.cast(ops.eye(b), "bool")
    if ids is not None:
        ids = ops.cast(ids, "float32")
        aid, pid = ids[:, 0], ids[:, 1]
        own = ops.logical_or(_same(pid, pid), _same(aid, pid))  # row i: columns that are p_i's or a_i's article
        ap = ops.where(ops.logical_and(own, ops.logical_not(eye)), _MASKED, ap)
    logits = ap
    if negative is not None:
        n = _l2_normalize(negative)
        an = ops.matmul(a, ops.transpose(n)) / temperature
        if ids is not None:
            nid = ids[:, 2]
            an = ops.where(ops.logical_or(_same(pid, nid), _same(aid, nid)), _MASKED, an)
        logits = ops.concatenate([ap, an], axis=1)  # [B, 2B]
    loss = ops.logsumexp(logits, axis=1) - ops.diagonal(ap)
    if symmetric:
        pa = ops.matmul(p, ops.transpose(a)) / temperature  # row i: positive i against every anchor
        if ids is not None:
            own = ops.logical_or(_same(aid, aid), _same(pid, aid))
            pa = ops.where(ops.logical_and(own, ops.logical_not(eye)), _MASKED, pa)
        loss = 0.5 * (loss + ops.logsumexp(pa, axis=1) - ops.diagonal(pa))
    return loss


def info_nce_loss(anchor, positive, temperature: float = 0.1, negative=None, symmetric: bool = False, ids=None):
    """InfoNCE with in-batch negatives (van den Oord, Li, Vinyals 2018): the mean
    over the batch of :func:`info_nce_losses`.

    anchor, positive: float [B, D] (normalised here, any scale accepted);
    temperature: softmax temperature (0.1 by default); negative: optional
    [B, D] mined negatives added as extra columns; ids: optional [B, 3] article
    identifiers (a row's own articles are never its negatives). Returns a scalar.
    """
    return ops.mean(info_nce_losses(anchor, positive, negative, temperature, symmetric, ids))


def _unpack(y_pred):
    """[B, 3, D] siamese output -> anchor, positive, negative, each [B, D]."""
    return y_pred[:, 0, :], y_pred[:, 1, :], y_pred[:, 2, :]


@keras.saving.register_keras_serializable(package="hm_utils")
class TripletLoss(keras.losses.Loss):
    """Keras loss: FaceNet triplet loss (Schroff et al. 2015) on a packed siamese
    output ``y_pred`` float32 [B, 3, D] (anchor, positive, negative). ``y_true``
    is ignored (pass zeros). Returns per-triplet losses [B]; Keras averages them."""

    def __init__(self, margin: float = 0.2, name: str = "triplet_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        a, p, n = _unpack(y_pred)
        return triplet_losses(a, p, n, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="hm_utils")
class InfoNCELoss(keras.losses.Loss):
    """Keras loss: InfoNCE with in-batch negatives (van den Oord et al. 2018) on a
    packed siamese output ``y_pred`` float32 [B, 3, D]. The mined negatives are
    used as extra negatives when ``use_negatives`` (default True). ``y_true``: the
    articles' identifiers [B, 3] (anchor, positive, negative; the training datasets
    pass feature-store rows), so that a row's own articles are never its negatives;
    zeros of shape [B] (no identifiers) masks nothing. Returns per-anchor losses [B]."""

    def __init__(self, temperature: float = 0.1, use_negatives: bool = True, symmetric: bool = False,
                 name: str = "info_nce_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)
        self.use_negatives = bool(use_negatives)
        self.symmetric = bool(symmetric)

    def call(self, y_true, y_pred):
        a, p, n = _unpack(y_pred)
        ids = y_true if len(y_true.shape) == 2 and y_true.shape[-1] == 3 else None
        return info_nce_losses(a, p, n if self.use_negatives else None, self.temperature, self.symmetric, ids)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature,
                "use_negatives": self.use_negatives, "symmetric": self.symmetric}


LOSSES = ("triplet", "infonce")


def make_loss(name: str = "triplet", margin: float = 0.2, temperature: float = 0.1,
              symmetric: bool = False) -> keras.losses.Loss:
    """The Keras loss called ``name`` ("triplet" or "infonce", ``symmetric`` for InfoNCE); ValueError
    names the choices."""
    if name == "triplet":
        return TripletLoss(margin=margin)
    if name == "infonce":
        return InfoNCELoss(temperature=temperature, symmetric=symmetric)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
