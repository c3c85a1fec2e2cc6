"""hm_utils.model.inference: batch-norm folding, frozen graphs, bfloat16 and the precision choice."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from hm_utils.model.inference import compile_for_inference, fold_batchnorm, foldable_pairs  # noqa: E402
from hm_utils.model.numeric_precision import cpu_flags, cpu_has_fast_bfloat16, resolve_precision  # noqa: E402

needs_amx = pytest.mark.skipif(not cpu_has_fast_bfloat16(),
                               reason="this CPU has no AMX-BF16 (amx_bf16 flag): the bfloat16 path is not fast here")


def _set_bn(bn, gamma, beta, mean, var):
    bn.set_weights([np.asarray(v, np.float32) for v in (gamma, beta, mean, var)])


def _randomise_bns(model, seed=0):
    """Give every batch norm non-trivial statistics, so folding has something to get wrong."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers() if hasattr(model, "_flatten_layers") else model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            _set_bn(layer, rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c), rng.normal(0, 0.2, c),
                    rng.uniform(0.5, 2.0, c))


def _net(seed=0):
    """conv(no bias) -> bn -> relu -> conv(bias) -> bn -> add(skip) -> relu -> conv(relu) -> bn, plus a conv
    feeding both a bn and the pooled output (not foldable)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((10, 8, 3), name="image")
    a = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(inp)
    a = keras.layers.BatchNormalization(name="b1")(a)
    a = keras.layers.ReLU()(a)
    b = keras.layers.Conv2D(4, 1, name="c2")(a)
    b = keras.layers.BatchNormalization(name="b2")(b)
    x = keras.layers.ReLU()(keras.layers.Add()([a, b]))
    c = keras.layers.Conv2D(5, 3, activation="relu", name="c3")(x)          # activation: not foldable
    c = keras.layers.BatchNormalization(name="b3")(c)
    d = keras.layers.Conv2D(5, 1, name="c4")(c)                              # two consumers: not foldable
    e = keras.layers.BatchNormalization(name="b4")(d)
    out = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(e),
                                      keras.layers.GlobalAveragePooling2D()(d)])
    model = keras.Model(inp, out)
    _randomise_bns(model, seed)
    return model


# ------------------------------------------------------------- precision ---
def test_resolve_precision_rules(tmp_path):
    assert resolve_precision("auto", flags={"avx2", "amx_bf16"}, gpus=0) == "bfloat16"
    assert resolve_precision("auto", flags={"avx2", "amx_bf16"}, gpus=1) == "float32"  # GPU present
    assert resolve_precision("auto", flags={"avx512_bf16"}, gpus=0) == "float32"  # no AMX
    assert resolve_precision("float32", flags={"amx_bf16"}, gpus=0) == "float32"
    assert resolve_precision("bfloat16", flags=set(), gpus=0) == "bfloat16"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16")
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu AVX2 amx_bf16 amx_tile\nbugs\t: none\n")
    assert cpu_flags(info) == {"fpu", "avx2", "amx_bf16", "amx_tile"}
    assert cpu_has_fast_bfloat16(cpu_flags(info))
    assert cpu_flags(tmp_path / "missing") == set()


# ---------------------------------------------------------------- folding ---
def test_fold_one_channel_by_hand():
    """1x1 conv, one channel: kernel 2, bias 1; BN gamma 3, beta 0.5, mean 1, var 3, eps 1 ->
    s = 3 / sqrt(3 + 1) = 1.5, folded kernel 2 * 1.5 = 3, bias (1 - 1) * 1.5 + 0.5 = 0.5."""
    inp = keras.Input((2, 2, 1))
    x = keras.layers.Conv2D(1, 1, name="conv")(inp)
    x = keras.layers.BatchNormalization(epsilon=1.0, name="bn")(x)
    model = keras.Model(inp, x)
    model.get_layer("conv").set_weights([np.full((1, 1, 1, 1), 2.0, np.float32), np.ones(1, np.float32)])
    _set_bn(model.get_layer("bn"), [3.0], [0.5], [1.0], [3.0])
    folded = fold_batchnorm(model)
    kernel, bias = folded.get_layer("conv").get_weights()
    assert kernel.ravel().tolist() == [3.0] and bias.tolist() == [0.5]
    x = np.array([[[[1.0], [2.0]], [[-1.0], [0.0]]]], np.float32)
    # by hand: 3 * x + 0.5
    np.testing.assert_allclose(np.asarray(folded(x, training=False)).ravel(), [3.5, 6.5, -2.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model(x, training=False)).ravel(), [3.5, 6.5, -2.5, 0.5], rtol=1e-6)


def test_foldable_pairs_and_folded_model_equal_the_original():
    model = _net()
    assert foldable_pairs(model) == {"c1": "b1", "c2": "b2"}
    before = [w.copy() for w in model.get_weights()]
    folded = fold_batchnorm(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) and layer.name in ("b1", "b2")
                   for layer in folded.layers)
    assert isinstance(folded.get_layer("b3"), keras.layers.BatchNormalization)  # left as it was
    assert folded.get_layer("c1").use_bias and not model.get_layer("c1").use_bias
    x = np.random.default_rng(1).normal(0, 1, (4, 10, 8, 3)).astype(np.float32)
    ref = np.asarray(model(x, training=False))
    np.testing.assert_allclose(np.asarray(folded(x, training=False)), ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(before, model.get_weights()):  # the original is untouched
        np.testing.assert_array_equal(a, b)


def test_fold_reaches_into_nested_models():
    inner = _net(seed=2)
    inp = keras.Input((10, 8, 3), name="image")
    outer = keras.Model(inp, keras.layers.Dense(3, name="top")(inner(keras.layers.Rescaling(0.5)(inp))))
    pairs = foldable_pairs(outer)
    assert pairs == {f"{inner.name}/c1": f"{inner.name}/b1", f"{inner.name}/c2": f"{inner.name}/b2"}
    folded = fold_batchnorm(outer)
    x = np.random.default_rng(3).normal(0, 1, (2, 10, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(folded(x, training=False)), np.asarray(outer(x, training=False)),
                               rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- compile ---
def test_compile_float32_equals_the_model_for_any_batch_size():
    model = _net(seed=4)
    spec = [tf.TensorSpec([None, 10, 8, 3], tf.float32)]
    f = compile_for_inference(model, spec, "float32")
    assert f.precision == "float32" and f.folded == 2 and f.bfloat16_nodes == 0
    rng = np.random.default_rng(5)
    for n in (1, 5):
        x = rng.normal(0, 1, (n, 10, 8, 3)).astype(np.float32)
        out = np.asarray(f(tf.constant(x)))
        assert out.shape == (n, 10) and out.dtype == np.float32
        np.testing.assert_allclose(out, np.asarray(model(x, training=False)), rtol=1e-5, atol=1e-5)
    # the graph holds copies of the weights: changing the model afterwards does not change f
    x = rng.normal(0, 1, (2, 10, 8, 3)).astype(np.float32)
    first = np.asarray(f(tf.constant(x)))
    model.get_layer("c2").set_weights([w * 0 for w in model.get_layer("c2").get_weights()])
    np.testing.assert_array_equal(np.asarray(f(tf.constant(x))), first)


def test_compile_resnet50_backbone_float32():
    """The export's real case: hm_utils' ResNet50 backbone (caffe preprocessing, nested resnet50, avg pool)."""
    from hm_utils.model.siamese import build_backbone

    bb = build_backbone("resnet50", (64, 48), "avg", None, seed=0)
    _randomise_bns(bb.get_layer("resnet50"), seed=1)
    f = compile_for_inference(bb, [tf.TensorSpec([None, 64, 48, 3], tf.float32)], "float32")
    assert f.folded == 53  # every conv of ResNet50 is followed by its own batch norm
    x = np.random.default_rng(2).uniform(0, 255, (3, 64, 48, 3)).astype(np.float32)
    ref = np.asarray(bb(x, training=False))
    out = np.asarray(f(tf.constant(x)))
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


@needs_amx
def test_compile_bfloat16_is_close_but_not_identical():
    from hm_utils.model.siamese import build_backbone

    bb = build_backbone("resnet50", (64, 48), "avg", None, seed=0)
    _randomise_bns(bb.get_layer("resnet50"), seed=1)
    f = compile_for_inference(bb, [tf.TensorSpec([None, 64, 48, 3], tf.float32)], "bfloat16")
    assert f.precision == "bfloat16" and f.bfloat16_nodes > 0
    x = np.random.default_rng(2).uniform(0, 255, (4, 64, 48, 3)).astype(np.float32)
    ref = np.asarray(bb(x, training=False))
    out = np.asarray(f(tf.constant(x)))
    assert out.dtype == np.float32 and out.shape == ref.shape
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert 0 < rel < 5e-2  # really computed in bfloat16, and close
    cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.999


def test_keep_zero_biases_changes_only_all_zero_biases_of_the_copy():
    from hm_utils.model.inference import ZERO_BIAS_STANDIN, keep_zero_biases

    inp = keras.Input((6, 5, 2))
    x = keras.layers.Conv2D(3, 1, name="zero")(inp)            # bias initialised to zeros
    x = keras.layers.Conv2D(3, 1, name="set")(x)
    x = keras.layers.Conv2D(3, 1, use_bias=False, name="none")(x)
    model = keras.Model(inp, x)
    k, _ = model.get_layer("set").get_weights()
    model.get_layer("set").set_weights([k, np.array([0.0, 0.5, 0.0], np.float32)])  # partly zero: kept
    copy = fold_batchnorm(model)
    assert keep_zero_biases(copy) == 1
    assert (copy.get_layer("zero").get_weights()[1] == np.float32(ZERO_BIAS_STANDIN)).all()
    assert copy.get_layer("set").get_weights()[1].tolist() == [0.0, 0.5, 0.0]
    assert not model.get_layer("zero").get_weights()[1].any()  # the original keeps its zeros
    x = np.random.default_rng(0).normal(0, 1, (2, 6, 5, 2)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(copy(x)), np.asarray(model(x)))  # 1e-30 is below float32 resolution
