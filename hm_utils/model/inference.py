"""Everything that runs a trained model fast: a backbone compiled for inference
(batch-norm folding, a frozen graph, bfloat16 on CPUs that have it), traced
calls cached with the model, the backbone shared by several towers, and the
embedding function the export calls per batch (with its first-batch check).

The export (notebook 04) sends every article image through the backbone once;
training is over, so the backbone's weights are constants. Three steps make the
forward pass cheaper without changing what it computes:

1. :func:`fold_batchnorm` merges each BatchNormalization that directly follows
   a Conv2D into that convolution's kernel and bias (Ioffe & Szegedy 2015, "Batch
   Normalization", used in inference mode: ``y = gamma * (x - mean) /
   sqrt(var + eps) + beta`` with the moving statistics is an affine map per
   channel, so ``conv(x, W) + b`` followed by it equals ``conv(x, W * s) + (b -
   mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``). Equal up to float
   rounding (about 1e-6 relative).
2. :func:`freeze` traces the model and turns its variables into graph
   constants, so TensorFlow's oneDNN kernels can reorder each convolution's
   weights once instead of on every call, and Grappler can fuse
   convolution + bias + ReLU (+ residual add) into one kernel.
3. With ``precision="bfloat16"`` Grappler's oneDNN auto-mixed-precision pass
   rewrites the frozen graph to compute in bfloat16 (inputs and outputs stay
   float32). On a CPU with AMX (Intel Sapphire Rapids and later) that runs the
   convolutions on the matrix units; results differ from float32 by about 1e-2
   relative (cosine to the float32 embedding above 0.9999 on ResNet50).

:func:`compile_for_inference` does all three and returns a callable.
:func:`hm_utils.model.numeric_precision.resolve_precision` turns ``"auto"`` into ``"bfloat16"``
on a CPU with AMX-BF16 and no visible GPU, else ``"float32"``.

Running models (the export's per-batch work, :mod:`hm_utils.export.export` only writes):
:func:`make_embed_fn` turns ``{name: model}`` into one function images [B,H,W,3]
(+ tabular [B,11]) -> ``{name: float32 [B, d]}``. ``hm_utils.model.siamese`` towers
(:func:`tower_parts`) run as a compiled backbone (once per batch for towers whose
backbones hold identical weights, :func:`shared_backbone`; identity by
:func:`model_digest`) plus a traced head each; other keras models run whole as
traced graphs. Traced functions are kept with their model, weakly
(:func:`cached_traces`), so a later export with the same model reuses them.

Measured on 2 cores of such a CPU (ResNet50 without top, 300 x 200, batch 32,
forward pass only): float32 29.7 img/s; folded + frozen float32 39 img/s;
folded + frozen bfloat16 195 img/s. See ``benchmarks/RESULTS_export.md``.
"""
from __future__ import annotations

import hashlib
import warnings
import weakref
from typing import Callable, Sequence

import numpy as np

from hm_utils.model.numeric_precision import (BFLOAT16_MIN_COSINE, CHECK_IMAGES, FLOAT32_TOLERANCE,
                                              cpu_has_fast_bfloat16, resolve_precision, row_cosines)


# --------------------------------------------------------- batch-norm fold ---
def _producer(tensor):
    """The layer that produced a symbolic Keras tensor (None if unknown)."""
    hist = getattr(tensor, "_keras_history", None)
    return getattr(hist, "operation", hist[0] if hist else None) if hist is not None else None


def foldable_pairs(model) -> dict[str, str]:
    """``{conv layer name: batch-norm layer name}`` for every BatchNormalization in
    ``model`` (a functional Keras model; nested models are searched too) whose
    only input is a Conv2D that has no activation, is called once and feeds
    nothing but that BatchNormalization, channels last. Names are unique per
    model; nested models' pairs are keyed ``"<model>/<layer>"``."""
    import keras

    pairs: dict[str, str] = {}

    def visit(m, prefix: str):
        for layer in m.layers:
            if isinstance(layer, keras.Model) and hasattr(layer, "_inbound_nodes"):
                visit(layer, f"{prefix}{layer.name}/")
            if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
                continue
            inputs = layer._inbound_nodes[0].input_tensors
            conv = _producer(inputs[0]) if len(inputs) == 1 else None
            if (isinstance(conv, keras.layers.Conv2D) and getattr(conv, "data_format", "") == "channels_last"
                    and conv.activation is keras.activations.linear and len(conv._inbound_nodes) == 1
                    and len(conv._outbound_nodes) == 1 and layer.axis in (-1, 3)):
                pairs[prefix + conv.name] = prefix + layer.name
        return pairs
    return visit(model, "")


def _folded_weights(conv, bn) -> list:
    """[kernel, bias] of ``conv`` with the inference-mode ``bn`` merged in."""
    import numpy as np

    kernel = np.asarray(conv.kernel.numpy(), dtype=np.float64)
    c = kernel.shape[-1]
    bias = np.asarray(conv.bias.numpy(), np.float64) if conv.use_bias else np.zeros(c)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.scale else np.ones(c)
    beta = np.asarray(bn.beta.numpy(), np.float64) if bn.center else np.zeros(c)
    mean = np.asarray(bn.moving_mean.numpy(), np.float64)
    var = np.asarray(bn.moving_variance.numpy(), np.float64)
    s = gamma / np.sqrt(var + float(bn.epsilon))
    return [(kernel * s).astype(np.float32), ((bias - mean) * s + beta).astype(np.float32)]


def fold_batchnorm(model):
    """A copy of the functional Keras ``model`` with every :func:`foldable_pairs`
    batch normalisation merged into its convolution (the batch-norm layer becomes
    a pass-through). Same inputs and outputs; equal to ``model(x,
    training=False)`` up to float rounding. The original is not changed. A model
    with nothing to fold is still copied (so the caller can freeze it safely)."""
    import keras

    pairs = foldable_pairs(model)
    folded_bns = set(pairs.values())

    class _PassThrough(keras.layers.Layer):
        """Stands where a folded batch normalisation was: returns its input."""

        def call(self, inputs, training=None, mask=None):
            return inputs

        def compute_output_shape(self, input_shape):
            return input_shape

    def make_clone_fn(prefix):
        def clone_fn(layer):
            full = prefix + layer.name
            if full in folded_bns:
                return _PassThrough(name=layer.name)
            if isinstance(layer, keras.Model):
                return keras.models.clone_model(layer, clone_function=make_clone_fn(f"{full}/"))
            cfg = layer.get_config()
            if full in pairs:
                cfg["use_bias"] = True
            return layer.__class__.from_config(cfg)
        return clone_fn

    copy = keras.models.clone_model(model, clone_function=make_clone_fn(""))

    def copy_weights(src, dst, prefix):
        layers = {layer.name: layer for layer in src.layers}
        for layer in src.layers:
            full = prefix + layer.name
            if not layer.weights or full in folded_bns:
                continue
            target = dst.get_layer(layer.name)
            if isinstance(layer, keras.Model):
                copy_weights(layer, target, f"{full}/")
            elif full in pairs:
                bn_name = pairs[full].rsplit("/", 1)[-1]
                target.set_weights(_folded_weights(layer, layers[bn_name]))
            else:
                target.set_weights(layer.get_weights())
    copy_weights(model, copy, "")
    return copy


# A bias that is exactly zero everywhere (an untrained network's, or a folded
# batch norm at its initial statistics) is set to this value: far below the
# float32 resolution of any activation, so results do not change, but Grappler no
# longer deletes the "+ 0" and so still fuses convolution + bias + ReLU into one
# oneDNN kernel. Without it the untrained ResNet50 runs 2.6x slower in bfloat16
# (66 against 168 img/s on 2 cores), its convolution and ReLU then running apart.
ZERO_BIAS_STANDIN = 1e-30


def keep_zero_biases(model) -> int:
    """Set every all-zero Conv2D bias in ``model`` (nested models included) to
    :data:`ZERO_BIAS_STANDIN`, in place; returns how many were set. Call it on a
    copy (:func:`fold_batchnorm` makes one), not on a model you go on training."""
    import keras
    import numpy as np

    n = 0
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Conv2D) and layer.use_bias:
            bias = layer.bias.numpy()
            if not bias.any():
                layer.bias.assign(np.full(bias.shape, ZERO_BIAS_STANDIN, bias.dtype))
                n += 1
    return n


def _all_layers(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


# ------------------------------------------------------------------ freeze ---
def freeze(fn: Callable, input_signature: Sequence):
    """Trace ``fn`` (tensors -> tensor or nest of tensors) with ``input_signature``
    (a list of ``tf.TensorSpec``). Returns ``(frozen, structure)``: the concrete
    function with every captured variable turned into a constant (its ``graph``,
    ``inputs`` and ``outputs`` describe it; calling it gives a flat list of
    tensors) and the nest ``fn`` returns, for ``tf.nest.pack_sequence_as``."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = tf.function(fn, input_signature=list(input_signature)).get_concrete_function()
    return convert_variables_to_constants_v2(concrete), concrete.structured_outputs


def _bfloat16_rewrite(frozen):
    """The frozen graph rewritten by Grappler's oneDNN auto-mixed-precision pass:
    ``(graph_def, number of nodes computing in bfloat16)``."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import tf_optimizer
    from tensorflow.python.training.saver import export_meta_graph

    graph_def = frozen.graph.as_graph_def()
    meta = export_meta_graph(graph_def=graph_def, graph=frozen.graph)
    sig = meta_graph_pb2.SignatureDef()
    for t in frozen.inputs:
        sig.inputs[t.name].name = t.name
        sig.inputs[t.name].dtype = t.dtype.as_datatype_enum
    for t in frozen.outputs:
        sig.outputs[t.name].name = t.name
        sig.outputs[t.name].dtype = t.dtype.as_datatype_enum
    meta.signature_def["serving_default"].CopyFrom(sig)
    fetch = meta_graph_pb2.CollectionDef()
    fetch.node_list.value.extend([t.name for t in list(frozen.inputs) + list(frozen.outputs)])
    meta.collection_def["train_op"].CopyFrom(fetch)
    config = tf.compat.v1.ConfigProto()
    config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    optimized = tf_optimizer.OptimizeGraph(config, meta, verbose=False)
    n_bf16 = sum(1 for node in optimized.node
                 if any(v.type == tf.bfloat16.as_datatype_enum for v in node.attr.values()))
    return optimized, n_bf16


class InferenceFunction:
    """A compiled forward pass: ``f(*tensors)`` -> output (same nest as the
    model's). ``precision`` is what it computes in; ``folded`` the number of
    batch normalisations merged; ``bfloat16_nodes`` the graph nodes computing in
    bfloat16 (0 for float32)."""

    def __init__(self, call, precision: str, folded: int, bfloat16_nodes: int = 0):
        self._call = call
        self.precision = precision
        self.folded = folded
        self.bfloat16_nodes = bfloat16_nodes

    def __call__(self, *args):
        return self._call(*args)

    def __repr__(self):
        return (f"InferenceFunction(precision={self.precision!r}, folded={self.folded}, "
                f"bfloat16_nodes={self.bfloat16_nodes})")


def compile_for_inference(model, input_signature: Sequence, precision: str = "float32",
                          fold: bool = True) -> InferenceFunction:
    """Compile a Keras ``model`` for inference only.

    ``input_signature``: list of ``tf.TensorSpec`` for the model's positional
    input (e.g. ``[TensorSpec([None, 300, 200, 3], float32)]``; the batch size
    may be None). ``precision``: "float32", "bfloat16" or "auto"
    (:func:`resolve_precision`). ``fold``: merge batch normalisations first
    (:func:`fold_batchnorm`, on a copy) and keep all-zero biases
    (:func:`keep_zero_biases`). The model's weights are copied into the graph at
    this call: a model trained further afterwards needs a new compile.

    Output: an :class:`InferenceFunction` taking the signature's tensors and
    returning what ``model(x, training=False)`` returns (float32). When the
    bfloat16 rewrite changes nothing (a TensorFlow build without oneDNN), a
    warning says so and the function runs float32 (its ``precision`` says which).
    """
    import tensorflow as tf

    precision = resolve_precision(precision)
    n_folded = 0
    if fold:
        n_folded = len(foldable_pairs(model))
        model = fold_batchnorm(model)  # a copy even when nothing folds: keep_zero_biases changes it
        keep_zero_biases(model)
    frozen, structure = freeze(lambda *xs: model(xs[0] if len(xs) == 1 else list(xs), training=False), input_signature)

    def float32_call(*args):
        return tf.nest.pack_sequence_as(structure, tf.nest.flatten(frozen(*args)))
    if precision == "float32":
        return InferenceFunction(float32_call, "float32", n_folded)

    if not cpu_has_fast_bfloat16():
        warnings.warn("precision='bfloat16' on a CPU without AMX-BF16: it will run, but slower than float32 "
                      "may be", stacklevel=2)
    graph_def, n_bf16 = _bfloat16_rewrite(frozen)
    if n_bf16 == 0:
        warnings.warn("the bfloat16 rewrite changed no node (TensorFlow without oneDNN?); running float32",
                      stacklevel=2)
        return InferenceFunction(float32_call, "float32", n_folded)
    in_names = [t.name for t in frozen.inputs]
    out_names = [t.name for t in frozen.outputs]
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    pruned = wrapped.prune(feeds=[wrapped.graph.get_tensor_by_name(n) for n in in_names],
                           fetches=[wrapped.graph.get_tensor_by_name(n) for n in out_names])

    def call(*args):
        return tf.nest.pack_sequence_as(structure, list(pruned(*args)))
    return InferenceFunction(call, "bfloat16", n_folded, n_bf16)


# ------------------------------------------------------------ model runs ---
def _is_keras_model(model) -> bool:
    try:
        import keras
        return isinstance(model, keras.Model)
    except ImportError:  # pragma: no cover
        return False



def model_digest(model) -> str:
    """A short hash of a keras model's weights (any callable: its qualified name)."""
    h = hashlib.sha1()
    if _is_keras_model(model):
        for w in model.weights:
            arr = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
            h.update(str(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).tobytes())
    else:
        h.update(getattr(model, "digest", type(model).__qualname__).encode())
    return h.hexdigest()[:16]


_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cached_traces(owner) -> dict:
    """The traced functions kept with ``owner`` (a keras model): ``{key: function}``, a copy;
    keys are tuples whose first item says the kind ("whole", "compiled", "head")."""
    try:
        return dict(_TRACED.get(owner, {}))
    except TypeError:  # not weak-referenceable: nothing is cached
        return {}


def _cached_trace(owner, key, build):
    """A traced function kept with ``owner`` (a keras model) so that later exports with
    the same model and shapes reuse the graph instead of tracing again."""
    try:
        per_model = _TRACED.setdefault(owner, {})
    except TypeError:  # not weak-referenceable: no caching
        return build()
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]


def _keras_call_fn(model, combined: bool, image_size, n_tabular):
    """Traced call of one keras model: (images, tabular or None) -> tensor [B, d] (cached per model)."""
    return _cached_trace(model, ("whole", combined, tuple(image_size), n_tabular),
                         lambda: _build_keras_call(model, combined, image_size, n_tabular))


def _build_keras_call(model, combined: bool, image_size, n_tabular):
    import tensorflow as tf

    img_spec = tf.TensorSpec([None, image_size[0], image_size[1], 3], tf.float32)
    spec = {"image": img_spec, "tabular": tf.TensorSpec([None, n_tabular], tf.float32)} if combined else img_spec
    dict_input = isinstance(getattr(model, "input", None), dict)
    model_ref = weakref.ref(model)  # the cache is keyed weakly on the model: hold no strong reference to it

    @tf.function(input_signature=[spec])
    def _call(inputs):
        if dict_input and not combined:
            inputs = {"image": inputs}
        return model_ref()(inputs, training=False)
    return _call


def tower_parts(models: dict) -> dict | None:
    """``{name: (backbone, head)}`` when every model is an ``hm_utils.model.siamese`` tower
    (a keras model with nested ``backbone`` and ``head`` models, the head taking a
    dict with ``features``); else None."""
    if not models or not all(_is_keras_model(m) for m in models.values()):
        return None
    try:
        parts = {n: (m.get_layer("backbone"), m.get_layer("head")) for n, m in models.items()}
    except (ValueError, AttributeError):
        return None
    if any(not isinstance(getattr(h, "input", None), dict) or "features" not in h.input for _, h in parts.values()):
        return None
    return parts


def shared_backbone(models: dict) -> tuple | None:
    """``(backbone, {name: head})`` when every model is an ``hm_utils.model.siamese`` tower
    (:func:`tower_parts`) and all backbones hold identical weights (the frozen
    ImageNet/untrained backbone notebook 03 shares between the two variants);
    else None. Then the backbone runs once per batch for all models."""
    parts = tower_parts(models) if len(models) >= 2 else None
    if parts is None or len({model_digest(b) for b, _ in parts.values()}) != 1:
        return None
    return next(iter(parts.values()))[0], {n: h for n, (_, h) in parts.items()}


def _backbone_call(backbone, image_size, precision: str, digest: str):
    """The backbone compiled for inference (:func:`hm_utils.model.inference.compile_for_inference`:
    batch norms folded, weights frozen, bfloat16 where asked): images float32
    [B,H,W,3] -> features float32 [B,F]. Cached with the backbone, keyed by its
    weights' digest, so a retrained backbone is compiled again."""
    import tensorflow as tf


    spec = [tf.TensorSpec([None, image_size[0], image_size[1], 3], tf.float32)]
    key = ("compiled", tuple(image_size), precision, digest)
    return _cached_trace(backbone, key, lambda: compile_for_inference(backbone, spec, precision))


def _head_call(head, combined: bool, n_tabular):
    """Traced call of a tower's head: (features [B,F], tabular [B,11] or None) -> [B,d] (cached with the head)."""
    def build():
        import tensorflow as tf

        ref = weakref.ref(head)  # cached weakly on the head: hold no strong reference to it
        feat_spec = tf.TensorSpec([None, int(head.input["features"].shape[-1])], tf.float32)
        if combined:
            @tf.function(input_signature=[feat_spec, tf.TensorSpec([None, n_tabular], tf.float32)])
            def _call(features, tabular):
                return ref()({"features": features, "tabular": tabular}, training=False)
        else:
            @tf.function(input_signature=[feat_spec])
            def _call(features):
                return ref()({"features": features}, training=False)
        return _call
    return _cached_trace(head, ("head", combined, n_tabular), build)



def make_embed_fn(models: dict, combined: dict, image_size: tuple[int, int] = (None, None),
                   n_tabular: int | None = None, precision: str = "float32", strict: bool = True) -> Callable:
    """A function (images float32 [B,H,W,3], tabular float32 [B,11] or None) ->
    ``{name: np.float32 [B, d]}`` for every model; its ``state["precision"]``
    says what the backbones computed in, ``state["check_min_cosine"]`` the
    first-batch agreement with the plain float32 models (bfloat16 only).

    ``hm_utils.model.siamese`` towers (:func:`tower_parts`) run as a compiled backbone
    (:func:`_backbone_call`; once per batch for all towers whose backbones hold
    identical weights) and a traced head per model. The first batch is checked
    against the plain float32 models (see :data:`BFLOAT16_MIN_COSINE`): a float32
    mismatch falls back to running each model whole; a bfloat16 one, unless
    ``strict`` (bfloat16 asked for by name), to float32 backbones; both with a
    warning. Other keras models run whole as traced graphs (``tf.function``
    with a batch-size-free input signature, so the last, smaller batch does not
    retrace); other callables as they are."""
    keras_models = {n: m for n, m in models.items() if _is_keras_model(m)}
    calls = {n: _keras_call_fn(m, combined[n], image_size, n_tabular) for n, m in keras_models.items()}
    parts = tower_parts(models)
    state = {"fast": parts is not None, "checked": False, "precision": "float32", "check_min_cosine": None}
    bb_calls: dict = {}
    if parts is not None:
        by_object = {id(bb): bb for bb, _ in parts.values()}  # a shared backbone is hashed once
        digest_by_object = {i: model_digest(bb) for i, bb in by_object.items()}
        digest_of = {n: digest_by_object[id(bb)] for n, (bb, _) in parts.items()}
        backbones = {}
        for n, (bb, _) in parts.items():
            backbones.setdefault(digest_of[n], bb)

        def compile_backbones(prec):
            bb_calls.clear()
            bb_calls.update({d: _backbone_call(bb, image_size, prec, d) for d, bb in backbones.items()})
            state["precision"] = next(iter(bb_calls.values())).precision
        compile_backbones(precision)
        head_calls = {n: _head_call(h, combined[n], n_tabular) for n, (_, h) in parts.items()}

    def whole(images, tabular, eager: bool = False):
        out = {}
        for n, m in models.items():
            if n in calls and not eager:
                res = calls[n]({"image": images, "tabular": tabular} if combined[n] else images)
            elif combined[n]:
                res = m({"image": images, "tabular": tabular}, training=False) if n in keras_models \
                    else m({"image": images, "tabular": tabular})
            elif n in keras_models:
                res = m({"image": images} if isinstance(m.input, dict) else images, training=False)
            else:
                res = m(images)
            out[n] = np.asarray(res, dtype=np.float32)
        return out

    def fast(images, tabular):
        feats = {d: f(images) for d, f in bb_calls.items()}
        return {n: np.asarray(head_calls[n](feats[digest_of[n]], tabular) if combined[n]
                              else head_calls[n](feats[digest_of[n]]), dtype=np.float32) for n in models}

    def check(images, tabular, out):
        k = min(CHECK_IMAGES, int(images.shape[0]))
        # eager on numpy (Keras refuses mixed tensor/numpy dicts), so no extra tracing
        ref = whole(np.asarray(images[:k]), None if tabular is None else np.asarray(tabular[:k]), eager=True)
        if state["precision"] == "float32":
            scale = max(float(np.abs(ref[n]).max()) for n in ref)
            rel = max(float(np.abs(ref[n] - out[n][:k]).max()) for n in out) / max(1.0, scale)
            if rel <= FLOAT32_TOLERANCE:
                return out
            warnings.warn(f"compiled float32 embeddings differ from the plain models by {rel:.2e} (relative); "
                          "running each model whole instead", stacklevel=3)
            state["fast"] = False
            return whole(images, tabular)
        worst = {n: float(row_cosines(out[n][:k], ref[n]).min()) for n in out}
        state["check_min_cosine"] = min(worst.values())
        if state["check_min_cosine"] >= BFLOAT16_MIN_COSINE:
            return out
        shown = ", ".join(f"{n} {c:.4f}" for n, c in worst.items())
        if strict:
            warnings.warn(f"bfloat16 embeddings differ from float32 (lowest cosine on the first {k} images: "
                          f"{shown}; below {BFLOAT16_MIN_COSINE}); kept because precision='bfloat16' was asked for",
                          stacklevel=3)
            return out
        warnings.warn(f"bfloat16 embeddings differ from float32 (lowest cosine on the first {k} images: {shown}; "
                      f"below {BFLOAT16_MIN_COSINE}): exporting in float32 instead. precision='bfloat16' keeps "
                      "the faster bfloat16 anyway", stacklevel=3)
        compile_backbones("float32")
        return check(images, tabular, fast(images, tabular))

    def fn(images, tabular):
        if not state["fast"]:
            return whole(images, tabular)
        out = fast(images, tabular)
        if not state["checked"]:
            state["checked"] = True
            return check(images, tabular, out)
        return out
    fn.state = state
    return fn
