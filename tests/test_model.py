"""The embedding model: variants, shapes, normalisation, weights, save/load."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from hm_utils.core.config import TABULAR_COLUMNS
from hm_utils.model import siamese as M

SIZE = (48, 32)


def _x(variant, n=4, seed=0):
    rng = np.random.default_rng(seed)
    x = {"image": rng.uniform(0, 255, (n, *SIZE, 3)).astype("float32")}
    if variant == "combined":
        x["tabular"] = rng.integers(0, 50, (n, 11)).astype("float32")
    return x


@pytest.mark.parametrize("variant", M.VARIANTS)
@pytest.mark.parametrize("head", M.HEADS)
def test_variants_build_with_the_right_inputs_and_output(variant, head):
    m = M.build_embedding_model(variant, "small_cnn", SIZE, embedding_dim=12, pooling="avg", hidden_units=16,
                                head=head)
    assert sorted(m.input.keys()) == (["image", "tabular"] if variant == "combined" else ["image"])
    out = m.predict(_x(variant), verbose=0)
    assert out.shape == (4, 12) and out.dtype == np.float32
    if head == "original":
        assert (out >= 0).all()  # the original's final Dense is relu
    else:
        assert (out < 0).any() and (out != 0).all()  # linear output: signs both ways, no zero entry
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert M.model_variant(m) == variant


def _cosines(x):
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    return u @ u.T


@pytest.mark.parametrize("variant", M.VARIANTS)
def test_untrained_residual_head_keeps_the_features_cosines(variant):
    # hand-built features, F = 6 <= D = 8: the orthogonal projection is an isometry and the correction
    # starts at zero, so the head's cosines equal the features' cosines, whatever the tabular input
    f = np.array([[1, 0, 0, 0, 0, 0], [0.9, 0.1, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0],
                  [0, 0, 3, 1, 0, 0], [0, 0, 1, 3, 0, 0], [1, 1, 1, 2, 1, 1]], np.float32)
    head = M.build_head(6, variant, embedding_dim=8, hidden_units=16, seed=3)
    x = {"features": f}
    if variant == "combined":
        x["tabular"] = np.random.default_rng(0).integers(0, 50, (6, 11)).astype("float32")
    out = np.asarray(head(x, training=False))
    np.testing.assert_allclose(_cosines(out), _cosines(f), atol=1e-5)
    # so every article's nearest neighbour is the features' one (worked out: 0<->1, 2->5, 3->4, 4<->5)
    np.testing.assert_array_equal(np.argmax(_cosines(out) - 2 * np.eye(6), axis=1), [1, 0, 5, 4, 5, 4])
    # F > D: an approximate isometry (orthonormal columns); the nearest neighbour of well separated
    # clusters is kept
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(5, 64))
    g = (np.repeat(centres, 4, axis=0) + 0.05 * rng.normal(size=(20, 64))).astype(np.float32)
    big = M.build_head(64, "image_only", embedding_dim=32, hidden_units=8, seed=0)
    emb = np.asarray(big({"features": g}, training=False))
    nn = np.argmax(_cosines(emb) - 2 * np.eye(20), axis=1)
    assert (nn // 4 == np.arange(20) // 4).all()


def test_residual_head_has_no_relu_at_the_end_and_its_correction_starts_at_zero():
    head = M.build_head(10, "combined", embedding_dim=6, hidden_units=8)
    layer = head.get_layer("correction")
    assert layer.activation.__name__ == "linear"
    assert not np.any(layer.get_weights()[0]) and not np.any(layer.get_weights()[1])
    assert head.get_layer("skip_projection").activation.__name__ == "linear"
    w = head.get_layer("skip_projection").get_weights()[0]  # [F, D] = [10, 6]: orthonormal columns
    np.testing.assert_allclose(w.T @ w, np.eye(6), atol=1e-5)
    with pytest.raises(ValueError, match="unknown head"):
        M.build_head(10, head="relu")


def test_original_head_layers_and_widths():
    m = M.build_embedding_model("combined", "small_cnn", SIZE, embedding_dim=550, pooling="flatten",
                                head="original")
    head = M.get_head(m)
    dense = {l.name: l.units for l in head.layers if isinstance(l, keras.layers.Dense)}
    assert dense == {"tab_dense1": 1100, "tab_dense2": 1100, "head_dense": 1100, "embedding": 550}
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in head.layers) == 3
    # flatten keeps the whole 6 x 4 x 64 feature map of small_cnn at 48 x 32
    assert M.get_backbone(m).output_shape[-1] == 6 * 4 * 64


@pytest.mark.parametrize("head", M.HEADS)
def test_combined_uses_the_tabular_input(head):
    m = M.build_embedding_model("combined", "small_cnn", SIZE, embedding_dim=8, pooling="avg", hidden_units=16,
                                head=head)
    x = _x("combined")
    x2 = dict(x, tabular=x["tabular"][::-1].copy())
    if head == "residual":  # untrained, the correction is zero: the tabular input counts once it is learned
        np.testing.assert_allclose(m.predict(x, verbose=0), m.predict(x2, verbose=0), atol=1e-6)
        corr = M.get_head(m).get_layer("correction")
        corr.set_weights([np.random.default_rng(0).normal(size=w.shape) for w in corr.get_weights()])
    assert not np.allclose(m.predict(x, verbose=0), m.predict(x2, verbose=0))


def test_normalize_gives_unit_length():
    m = M.build_embedding_model("image_only", "small_cnn", SIZE, embedding_dim=8, pooling="avg",
                                normalize=True, hidden_units=16)
    out = m.predict(_x("image_only"), verbose=0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_siamese_shares_the_tower_and_packs_three():
    tower = M.build_embedding_model("image_only", "small_cnn", SIZE, embedding_dim=8, pooling="avg", hidden_units=16)
    s = M.build_siamese(tower)
    x = _x("image_only", 3)
    out = s.predict({"anchor_image": x["image"], "positive_image": x["image"][::-1],
                     "negative_image": x["image"]}, verbose=0)
    assert out.shape == (3, 3, 8)
    np.testing.assert_allclose(out[:, 0], out[:, 2], atol=1e-6)  # same images, same tower -> same embeddings
    np.testing.assert_allclose(out[:, 1], out[::-1, 0], atol=1e-6)
    assert len(s.trainable_weights) == len(tower.trainable_weights)  # one set of weights, shared


def test_resnet50_backbone_frozen_with_caffe_preprocessing():
    bb = M.build_backbone("resnet50", (64, 32), pooling="avg")
    assert not bb.trainable and bb.output_shape[-1] == 2048
    assert bb.get_layer("caffe_preprocess") is not None
    # caffe mode: RGB -> BGR minus the ImageNet means
    out = M.CaffePreprocess()(np.array([[[[10.0, 20.0, 30.0]]]], np.float32))
    np.testing.assert_allclose(np.asarray(out)[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-4)


@pytest.mark.parametrize("head", M.HEADS)
def test_save_and_load_give_identical_embeddings(tmp_path, head):
    m = M.build_embedding_model("combined", "small_cnn", SIZE, embedding_dim=8, pooling="avg", normalize=True,
                                hidden_units=16, tabular_stats=(np.full(11, 3.0), np.full(11, 4.0)), head=head)
    x = _x("combined")
    path = M.save_embedding_model(m, tmp_path / "models" / "combined.keras")
    assert path.is_file() and not list(path.parent.glob(".*tmp*"))
    again = M.load_embedding_model(path)
    np.testing.assert_array_equal(again.predict(x, verbose=0), m.predict(x, verbose=0))
    with pytest.raises(FileNotFoundError, match="nothere.keras"):
        M.load_embedding_model(tmp_path / "nothere.keras")


def test_imagenet_offline_names_the_file_and_the_alternative(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    calls = []

    def offline(fname, origin=None, **kwargs):
        calls.append((fname, origin, kwargs))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(FileNotFoundError) as err:
        M.build_backbone("resnet50", (64, 32), pooling="avg", weights="imagenet")
    msg = str(err.value)
    fname = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert fname in msg and str(tmp_path / "kh" / "models") in msg
    assert "efficientnet_lite0" in msg and "Temporary failure in name resolution" in msg
    # the one download attempt: Keras's standard URL and file name, into Keras's cache folder
    assert len(calls) == 1
    got_name, origin, kw = calls[0]
    assert got_name == fname
    assert origin == "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + fname
    assert Path(kw["cache_dir"]) / kw["cache_subdir"] == tmp_path / "kh" / "models"
    # a named local file that is missing: an error, no download
    with pytest.raises(FileNotFoundError, match="efficientnetb0_notop.h5"):
        M.build_backbone("efficientnetb0", (64, 32), weights=tmp_path / "efficientnetb0_notop.h5")
    with pytest.raises(ValueError, match="no pretrained weights"):
        M.build_backbone("small_cnn", (64, 32), weights="imagenet")
    M.build_backbone("resnet50", (64, 32), pooling="avg", weights=None)  # random: nothing downloaded
    assert len(calls) == 1


def test_imagenet_file_in_the_keras_cache_is_used_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    a = M.build_backbone("mobilenetv3small", (64, 64), pooling="avg", seed=3)
    cached = tmp_path / "kh" / "models" / M.IMAGENET_WEIGHT_FILES["mobilenetv3small"]
    cached.parent.mkdir(parents=True)
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    with h5py.File(cached, "w") as f:  # Keras's file name and format (legacy .h5, as keras.applications reads)
        save_weights_to_hdf5_group(f, a.layers[1])
    assert M.resolve_weights("mobilenetv3small", "imagenet") == cached
    b = M.build_backbone("mobilenetv3small", (64, 64), pooling="avg", weights="imagenet")
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), atol=1e-5)


def test_imagenet_downloaded_when_online(tmp_path, monkeypatch):
    """Online (simulated): get_file is asked for the standard file and its path is used."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))

    def fake_get_file(fname, origin=None, cache_dir=None, cache_subdir=None, **kwargs):
        path = Path(cache_dir) / cache_subdir / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"weights")
        return str(path)

    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    got = M.resolve_weights("efficientnetb0", "imagenet")
    assert got == tmp_path / "kh" / "models" / "efficientnetb0_notop.h5" and got.read_bytes() == b"weights"


def test_weights_from_a_local_file_are_loaded(tmp_path):
    a = M.build_backbone("mobilenetv3small", (64, 64), pooling="avg")
    path = tmp_path / "mnv3.weights.h5"
    a.layers[1].save_weights(path)
    b = M.build_backbone("mobilenetv3small", (64, 64), pooling="avg", weights=path)
    x = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(a(x)), np.asarray(b(x)), atol=1e-5)


def test_tabular_features_columns_and_index_code():
    df = pd.DataFrame({c: [1, 2] for c in TABULAR_COLUMNS})
    df["index_code"] = ["C", "S"]  # S (Sport) exists in the real articles.csv
    df["product_code"] = [108775, 927530]
    df["section_no"] = [5, 5]
    df.insert(0, "article_id", [108775015, 927530001])
    f = M.tabular_features(df)
    assert f.shape == (2, 11) and f.dtype == np.float32
    assert f[:, TABULAR_COLUMNS.index("index_code")].tolist() == [2.0, 10.0]
    assert f[:, 0].tolist() == [108775.0, 927530.0]
    mean, var = M.tabular_stats(f)
    assert mean[0] == pytest.approx((108775 + 927530) / 2)
    assert var[1] == pytest.approx(0.25)  # values 1, 2: variance 0.25
    assert var[TABULAR_COLUMNS.index("section_no")] == 1.0  # constant column -> 1
    bad = df.assign(index_code=["S", "Z"])
    with pytest.raises(ValueError, match="927530001"):
        M.tabular_features(bad)
    with pytest.raises(KeyError, match="section_no"):
        M.tabular_features(df.drop(columns=["section_no"]))


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match="vgg16"):
        M.build_backbone("vgg16", SIZE)
    with pytest.raises(ValueError, match="max"):
        M.build_backbone("small_cnn", SIZE, pooling="max")
    with pytest.raises(ValueError, match="text_only"):
        M.build_embedding_model("text_only", "small_cnn", SIZE)


def test_seeded_random_backbone_is_reproducible():
    x = np.random.default_rng(2).uniform(0, 255, (2, *SIZE, 3)).astype("float32")
    a = M.build_backbone("small_cnn", SIZE, "avg", seed=7)
    b = M.build_backbone("small_cnn", SIZE, "avg", seed=7)
    c = M.build_backbone("small_cnn", SIZE, "avg", seed=8)
    np.testing.assert_array_equal(np.asarray(a(x)), np.asarray(b(x)))
    assert not np.allclose(np.asarray(a(x)), np.asarray(c(x)))


def test_profiles_use_the_pretrained_lite_backbone():
    from hm_utils.core.config import get_profile
    from hm_utils.model.training import TrainingSettings

    for name, size in [("tiny", (96, 64)), ("demo", (300, 200)), ("full", (300, 200))]:
        p = get_profile(name)
        assert (p.backbone, p.pooling, p.weights, p.image_size) == ("efficientnet_lite0", "avg", "imagenet", size)
        assert p.backbone in M.BACKBONES
    assert TrainingSettings.from_profile("demo").weights == "imagenet"          # None -> the profile's
    assert TrainingSettings.from_profile("demo", weights=None).weights == "imagenet"
    assert TrainingSettings.from_profile("demo", weights="random").weights is None
    assert TrainingSettings.from_profile("tiny", weights="/x/w.pth").weights == "/x/w.pth"
    assert set(M.LITE_BACKBONES) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}


def test_model_variant_of_any_callable():
    """The one combined-model test: a keras model by its inputs, any other callable by its ``combined`` flag."""
    img = keras.Input((8, 6, 3), name="image")
    tab = keras.Input((M.N_TABULAR,), name="tabular")
    pooled = keras.layers.GlobalAveragePooling2D()(img)
    assert M.model_variant(keras.Model(img, pooled)) == "image_only"
    assert M.model_variant(keras.Model({"image": img}, pooled)) == "image_only"
    both = keras.Model({"image": img, "tabular": tab}, keras.layers.Concatenate()([pooled, tab]))
    assert M.model_variant(both) == "combined"
    assert M.model_image_size(both) == (8, 6)

    class Fake:
        combined = True

    assert M.model_variant(Fake()) == "combined" and M.model_variant(lambda x: x) == "image_only"
