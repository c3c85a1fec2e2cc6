"""hm_utils.model.backbone_runtime: the backbone on OpenVINO gives the Keras model's features
(row cosine >= 0.9999), its converted model is a cache that survives damage, every failure
falls back to Keras with a warning, and decoding overlaps the model run."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hm_utils.model import backbone_runtime as R
from hm_utils.model.numeric_precision import row_cosines
from hm_utils.model.siamese import build_backbone

REPO_ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = REPO_ROOT.parent / "shared" / "hm_catalogue"
SIZE = (300, 200)   # the demo's and the competition's input

needs_openvino = pytest.mark.skipif(R.openvino_version() is None, reason="openvino is not installed")


@pytest.fixture(scope="module")
def backbones():
    """The run's two backbones at 300 x 200: EfficientNet-Lite0 with ImageNet weights and
    the untrained reference (same seed as notebook 03)."""
    return {"backbone": build_backbone("efficientnet_lite0", SIZE, "avg", "imagenet", trainable=False, seed=42),
            "untrained": build_backbone("efficientnet_lite0", SIZE, "avg", None, trainable=False, seed=42)}


@pytest.fixture()
def cache(tmp_path):
    return tmp_path / "runtime_cache"


def _synthetic_batch(n=12, size=SIZE):
    """Photos drawn like the synthetic catalogue's: silhouettes, colours and patterns."""
    from hm_utils.synthetic.catalogue import COLOURS, PATTERNS, PRODUCT_TYPES
    from hm_utils.synthetic.images import render_article_image

    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        shape = PRODUCT_TYPES[(5 * i) % len(PRODUCT_TYPES)][5]
        rgb = COLOURS[(7 * i) % len(COLOURS)][2]
        img = render_article_image(shape, rgb, PATTERNS[i % len(PATTERNS)], size, rng)
        out.append(np.asarray(img, np.float32))
    return np.stack(out)


def _real_batch(n=48, size=SIZE):
    if not (CATALOGUE / "articles.csv").is_file():
        pytest.skip(f"real photos not found at {CATALOGUE} (../shared/hm_catalogue beside the checkout)")
    from hm_utils.data.images import image_dataset

    paths = sorted((CATALOGUE / "images").rglob("*.jpg"))
    rng = np.random.default_rng(0)
    picked = [str(paths[i]) for i in sorted(rng.choice(len(paths), n, replace=False))]
    (_, imgs), = list(image_dataset(picked, size, batch_size=n))
    return imgs.numpy()


def _keras(model, x):
    return np.asarray(model(x, training=False), np.float32)


def _check_same_features(backbones, x, cache):
    for name, model in backbones.items():
        fn = R.backbone_function(model, SIZE, "openvino", cache_dir=cache)
        out = fn(x)
        assert fn.runtime == "openvino", (name, fn.info)
        ref = _keras(model, x)
        cos = row_cosines(out, ref)
        assert out.shape == ref.shape == (len(x), 1280)
        assert cos.min() >= R.MIN_COSINE, (name, cos.min())
        assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-3, name
        assert fn.info["min_cosine"] >= R.MIN_COSINE


@needs_openvino
def test_openvino_gives_the_keras_features_on_synthetic_photos(backbones, cache):
    _check_same_features(backbones, _synthetic_batch(), cache)


@needs_openvino
def test_openvino_gives_the_keras_features_on_real_photos(backbones, cache):
    _check_same_features(backbones, _real_batch(), cache)


def test_runtime_names():
    assert R.resolve_runtime("keras") == "keras"
    assert R.resolve_runtime("auto") == ("openvino" if R.openvino_version() else "keras")
    assert R.resolve_runtime(None) == R.resolve_runtime("auto")
    with pytest.raises(ValueError, match="unknown backbone runtime 'onnx'.*auto"):
        R.resolve_runtime("onnx")


def test_missing_openvino_falls_back_to_keras(monkeypatch, cache):
    model = build_backbone("small_cnn", (32, 24), "avg", trainable=False, seed=1)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 24, 3)).astype(np.float32)
    monkeypatch.setattr(R, "openvino_version", lambda: None)
    assert R.resolve_runtime("auto") == "keras"
    with pytest.warns(R.RuntimeFallbackWarning, match="openvino package is not installed"):
        fn = R.backbone_function(model, (32, 24), "openvino", cache_dir=cache)
    assert fn.runtime == "keras" and "not installed" in fn.info["fallback_reason"]
    np.testing.assert_array_equal(fn(x), _keras(model, x))


@needs_openvino
def test_micro_batches_give_each_photo_its_own_features_in_order(cache):
    """A batch of 10 run 4 photos at a time (4 + 4 + 2) gives the rows the whole batch gives,
    in the same order: each row's cosine to its own row >= 0.99999, where the rows of two
    different photos are far apart."""
    model = build_backbone("efficientnet_lite0", (48, 32), "avg", "imagenet", trainable=False, seed=42)
    x = _synthetic_batch(10, (48, 32))
    ov_model, _ = R.converted_model(model, (48, 32), cache)
    whole = R.openvino_fn(ov_model, micro_batch=0)(x)
    for mb in (4, 3, 1):
        parts = R.openvino_fn(ov_model, micro_batch=mb)(x)
        assert parts.shape == whole.shape == (10, 1280) and parts.dtype == np.float32
        assert row_cosines(parts, whole).min() >= 0.99999, mb
        assert row_cosines(parts[::-1], whole).min() < 0.999   # the check can tell two photos apart
    fn = R.backbone_function(model, (48, 32), "openvino", cache_dir=cache)
    assert fn.info["micro_batch"] == R.MICRO_BATCH == 4
    with pytest.raises(ValueError, match="micro_batch must be >= 0"):
        R.openvino_fn(ov_model, micro_batch=-1)


@needs_openvino
def test_failed_conversion_falls_back_to_keras(monkeypatch, cache):
    model = build_backbone("small_cnn", (32, 24), "avg", trainable=False, seed=1)
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 24, 3)).astype(np.float32)

    def broken(*a, **k):
        raise RuntimeError("no converter for this layer")
    monkeypatch.setattr(R, "converted_model", broken)
    with pytest.warns(R.RuntimeFallbackWarning, match="conversion failed: RuntimeError: no converter"):
        fn = R.backbone_function(model, (32, 24), "auto", cache_dir=cache)
    assert fn.runtime == "keras"
    np.testing.assert_array_equal(fn(x), _keras(model, x))


@needs_openvino
def test_first_batch_disagreeing_falls_back_to_keras(monkeypatch, cache):
    model = build_backbone("small_cnn", (32, 24), "avg", trainable=False, seed=1)
    x = np.random.default_rng(0).uniform(0, 255, (5, 32, 24, 3)).astype(np.float32)
    real = R.openvino_fn
    # a runtime that swaps two channels of the output: same norms, wrong features
    monkeypatch.setattr(R, "openvino_fn", lambda m, t=None, mb=None: (lambda a: real(m, t, mb)(a)[:, ::-1]))
    fn = R.backbone_function(model, (32, 24), "openvino", cache_dir=cache)
    assert fn.runtime == "openvino"
    with pytest.warns(R.RuntimeFallbackWarning, match="first batch differs"):
        out = fn(x)
    assert fn.runtime == "keras" and fn.info["min_cosine"] < R.MIN_COSINE
    np.testing.assert_array_equal(out, _keras(model, x))


@needs_openvino
def test_converted_model_is_a_cache_rebuilt_when_damaged(cache):
    model = build_backbone("small_cnn", (32, 24), "avg", trainable=False, seed=1)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 24, 3)).astype(np.float32)
    ref = _keras(model, x)
    _, first = R.converted_model(model, (32, 24), cache)
    folder = Path(first["path"])
    assert not first["cached"] and sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.bin", "model.xml"]
    assert [p.name for p in cache.iterdir()] == [folder.name]          # no temporary folder left
    _, again = R.converted_model(model, (32, 24), cache)
    assert again["cached"] and again["key"] == first["key"]
    # another input size or other weights: another key
    assert R.conversion_key(model, (64, 24)) != first["key"]
    other = build_backbone("small_cnn", (32, 24), "avg", trainable=False, seed=2)
    assert R.conversion_key(other, (32, 24)) != first["key"]
    for damage in ("truncate_bin", "garble_meta", "drop_xml"):
        if damage == "truncate_bin":
            data = (folder / "model.bin").read_bytes()
            (folder / "model.bin").write_bytes(data[: len(data) // 2])
        elif damage == "garble_meta":
            (folder / "meta.json").write_text("{not json")
        else:
            (folder / "model.xml").unlink()
        ov_model, info = R.converted_model(model, (32, 24), cache)
        assert info["rebuilt"] and not info["cached"], damage
        out = R.openvino_fn(ov_model)(x)
        assert row_cosines(out, ref).min() >= R.MIN_COSINE, damage
        assert R.converted_model(model, (32, 24), cache)[1]["cached"], damage


@needs_openvino
def test_weights_changed_in_place_get_a_new_conversion(cache):
    model = build_backbone("small_cnn", (32, 24), "avg", trainable=False, seed=1)
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 24, 3)).astype(np.float32)
    R.backbone_function(model, (32, 24), "openvino", cache_dir=cache)(x)
    layer = next(layer for layer in model.layers[1].layers if layer.weights)
    layer.weights[0].assign(layer.weights[0].numpy() * -1.0)
    fn = R.backbone_function(model, (32, 24), "openvino", cache_dir=cache)
    assert fn.info["cached"] is False and len(list(cache.iterdir())) == 2
    assert row_cosines(fn(x), _keras(model, x)).min() >= R.MIN_COSINE


def test_overlapped_keeps_order_and_counts():
    batches = [(np.arange(3) + 3 * i, i) for i in range(5)]
    times = R.OverlapTimes()
    got = [b for b in R.overlapped(iter(batches), times, count=lambda b: len(b[0]))]
    assert [g[1] for g in got] == [0, 1, 2, 3, 4] and times.images == 15
    rates = times.rates(1.0)
    assert rates["images_per_second"] == 15.0 and set(rates) >= {"decode_images_per_second", "model_images_per_second"}


def test_overlapped_runs_decoding_while_the_caller_works():
    """Producing an item and working on one take 0.15 s each; one after the other, 6 items
    take 1.8 s; overlapped, about 0.15 + 6 * 0.15 = 1.05 s."""
    def slow_batches():
        for i in range(6):
            time.sleep(0.15)
            yield [i]
    times = R.OverlapTimes()
    t = time.perf_counter()
    for _ in R.overlapped(slow_batches(), times):
        time.sleep(0.15)
    wall = time.perf_counter() - t
    assert times.decode >= 0.85 and times.model >= 0.85   # both parts measured
    assert wall < 1.5, wall                                 # and they overlapped


def test_overlapped_raises_the_workers_error_and_stops_early():
    def failing():
        yield [1]
        raise OSError("disk gone")
    with pytest.raises(OSError, match="disk gone"):
        list(R.overlapped(failing()))
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield [i]
            i += 1
    gen = R.overlapped(endless(), depth=2)
    assert next(gen) == [0]
    gen.close()
    n = len(produced)
    time.sleep(0.1)
    assert len(produced) == n <= 4   # the worker stopped
    assert not any(t.name == "decode-batches" for t in threading.enumerate())


@pytest.mark.parametrize("runtime", ["keras", "openvino"])
def test_feature_store_records_the_runtime_and_the_parts_speeds(tmp_path, runtime):
    """compute_features on both runtimes: the same features (row cosine >= 0.9999), the runtime
    that ran and the photos/s of decoding and of the model in the manifest."""
    from PIL import Image

    from hm_utils.core.config import ARTICLE_ID, HAS_IMAGE
    from hm_utils.model import feature_store as F

    if runtime == "openvino" and R.openvino_version() is None:
        pytest.skip("openvino is not installed")
    batch = _synthetic_batch(7, (48, 32)).astype(np.uint8)
    rows = []
    for i, img in enumerate(batch):
        p = tmp_path / "images" / f"{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p, quality=92)
        rows.append((1000 + i, str(p), True))
    images = pd.DataFrame(rows, columns=[ARTICLE_ID, "abs_path", HAS_IMAGE])
    articles = images[[ARTICLE_ID]].copy()
    model = build_backbone("efficientnet_lite0", (48, 32), "avg", "imagenet", trainable=False, seed=42)
    man = F.compute_features({"backbone": model}, articles, images, tmp_path / "work", batch_size=3,
                             runtime=runtime, runtime_cache=tmp_path / "cache", progress=False)
    entry = man["features"]["backbone"]
    assert entry["runtime"] == runtime and man["runtime"] == {"asked": runtime, "used": [runtime]}
    assert entry["runtime_info"]["version"].startswith(runtime)
    assert entry["compiled"] is (True if runtime == "keras" else None)   # the Keras graph built only when used
    dec = man["decoding"]
    assert dec["decode_images_per_second"] > 0 and dec["model_images_per_second"] > 0 and dec["images_per_second"] > 0
    stored = F.load_features(tmp_path / "work", "backbone").features
    x = _decode(images)
    assert row_cosines(np.asarray(stored), _keras(model, x)).min() >= R.MIN_COSINE
    assert F.features_summary(man)["runtime"].tolist() == [runtime]


def _decode(images):
    from hm_utils.data.images import image_dataset

    return np.concatenate([b.numpy() for _, b in image_dataset(images["abs_path"].tolist(), (48, 32), batch_size=4)])
