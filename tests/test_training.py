"""Siamese training: customer split, feature cache, training on tiny hand-made triplets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hm_utils.core.config import TABULAR_COLUMNS
from hm_utils.core.workdir import training_history_frame
from hm_utils.data.images import article_image_paths
from hm_utils.model import fine_tuning
from hm_utils.model import training as T
from hm_utils.model.feature_cache import compute_feature_cache
from hm_utils.model.siamese import build_backbone, load_embedding_model, save_embedding_model
from hm_utils.plots.figures import plot_training

SIZE = (32, 24)
# bright red, bright blue, dark red, dark blue
PALETTE = [(230, 40, 40), (40, 40, 230), (150, 25, 25), (25, 25, 150)]
PARTNER = {0: 1, 1: 0, 2: 3, 3: 2}     # bought together: bright red with bright blue, dark red with dark blue
LOOKALIKE = {0: 2, 1: 3, 2: 0, 3: 1}   # the negative: the same hue from the other pair
RUN_OPTIONS = ("variant", "backbone_model", "feature_cache", "cache_path", "verbose", "log")


def train(triplets, articles, images, **kw):
    """T.train_siamese with the run options as given and every other keyword a TrainingSettings field;
    (model, history, report)."""
    options = {k: kw.pop(k) for k in RUN_OPTIONS if k in kw}
    kw.setdefault("weights", None)   # small test backbones have no pretrained weights
    run = T.train_siamese(triplets, articles, images, T.TrainingSettings(**kw), **options)
    return run.model, run.history, run.report


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """40 articles in 4 colours (10 each) as small JPEGs, their articles table and
    images table, and 120 triplets from 60 customers whose rule goes AGAINST raw
    colour similarity: positive = the partner colour (another hue), negative = the
    look-alike (same hue, other brightness). An untrained model gets them mostly
    wrong; a trained one must learn the pairing."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("toy_images")
    ids = np.arange(1000, 1040)
    colour = np.repeat([0, 1, 2, 3], 10)
    paths = []
    for a, c in zip(ids, colour):
        arr = np.clip(np.array(PALETTE[c]) + rng.integers(-25, 25, (*SIZE, 3)), 0, 255).astype(np.uint8)
        p = d / f"{a}.jpg"
        Image.fromarray(arr).save(p, quality=95)
        paths.append(str(p))
    articles = pd.DataFrame({c: rng.integers(1, 40, len(ids)) for c in TABULAR_COLUMNS})
    articles["index_code"] = rng.choice(list("ABCD"), len(ids))
    articles.insert(0, "article_id", ids.astype(np.int32))
    images = pd.DataFrame({"article_id": ids.astype(np.int32), "has_image": True, "abs_path": paths})
    rows = []
    for k in range(120):
        c = k % 4
        a = rng.choice(ids[colour == c])
        p = rng.choice(ids[colour == PARTNER[c]])
        n = rng.choice(ids[colour == LOOKALIKE[c]])
        rows.append((k // 2, a, p, n, "original"))
    trip = pd.DataFrame(rows, columns=["customer_key", "anchor", "positive", "negative", "strategy"])
    trip["customer_key"] = trip["customer_key"].astype(np.int32)
    return articles, images, trip, d


def test_split_by_customer_keeps_customers_on_one_side():
    trip = pd.DataFrame({"customer_key": np.repeat(np.arange(10), 2), "anchor": 1, "positive": 2, "negative": 3})
    train, val, note = T.split_by_customer(trip, 0.2, seed=1)
    assert len(train) == 16 and len(val) == 4  # 2 of 10 customers, 2 triplets each
    assert set(train["customer_key"]).isdisjoint(val["customer_key"])
    assert "16 training and 4 validation" in note


def test_split_with_too_few_triplets_skips_validation():
    trip = pd.DataFrame({"customer_key": [0, 1, 2], "anchor": 1, "positive": 2, "negative": 3})
    train, val, note = T.split_by_customer(trip, 0.2)
    assert len(train) == 3 and len(val) == 0 and "too few" in note
    train, val, note = T.split_by_customer(trip.iloc[:0], 0.2)
    assert len(train) == 0 and len(val) == 0


def test_feature_cache_shapes_and_unreadable_image(toy, tmp_path):
    articles, images, trip, d = toy
    bb = build_backbone("small_cnn", SIZE, pooling="avg", trainable=False)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not a jpeg")
    ids = [1000, 1001, 1002, 1003]
    paths = [images["abs_path"][0], str(bad), None, images["abs_path"][3]]
    with pytest.warns(UserWarning, match="bad.jpg"):
        cache = compute_feature_cache(bb, ids, paths, batch_size=2, progress=False)
    assert cache.features.shape == (4, 64) and cache.features.dtype == np.float32
    assert cache.ok.tolist() == [True, False, False, True]
    assert (cache.features[1:3] == 0).all() and cache.features[0].any()
    # the cached features are exactly what the backbone gives for the image
    from hm_utils.data.images import load_image
    direct = np.asarray(bb(load_image(images["abs_path"][3], SIZE)[None]))[0]
    np.testing.assert_allclose(cache.features[3], direct, rtol=1e-4, atol=1e-5)
    assert cache.rows([1003, 1001, 999]).tolist() == [3, -1, -1]
    # on disk, as a .npy memory map
    disk = compute_feature_cache(bb, ids, [images["abs_path"][0]] * 4, batch_size=2, progress=False,
                                   cache_path=tmp_path / "cache" / "features.npy")
    assert (tmp_path / "cache" / "features.npy").is_file()
    np.testing.assert_allclose(np.load(tmp_path / "cache" / "features.npy")[2], disk.features[0])


def test_cached_training_learns_the_rule_and_saves(toy, tmp_path):
    articles, images, trip, _ = toy
    model, history, report = train(
        trip, articles, images, variant="image_only", backbone="small_cnn", image_size=SIZE,
        embedding_dim=8, pooling="avg", normalize=True, epochs=6, batch_size=16, learning_rate=3e-3,
        hidden_units=32, backbone_model=build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=3),
        validation_split=0.25, seed=3, verbose=0, log=lambda *a: None)
    assert report["used_cache"] and report["n_triplets"] == 120
    assert report["n_train"] + report["n_validation"] == 120 and report["n_validation"] > 0
    assert len(history["loss"]) == 6 and len(history["val_loss"]) == 6 and len(history["seconds"]) == 6
    assert history["loss"][-1] < history["loss"][0]
    assert report["untrained_accuracy"] < 0.5  # raw colour similarity contradicts the rule
    assert report["trained_accuracy"] > 0.8
    x = {"image": np.stack([np.zeros((*SIZE, 3), np.float32)] * 2)}
    path = save_embedding_model(model, tmp_path / "m.keras")
    np.testing.assert_array_equal(load_embedding_model(path).predict(x, verbose=0), model.predict(x, verbose=0))


def test_use_xla_only_on_stored_features_and_from_the_threshold_when_not_told():
    assert T.XLA_MIN_TRIPLETS == 50_000
    assert T.use_xla(None, True, 50_000) and not T.use_xla(None, True, 49_999)
    assert T.use_xla(True, True, 10) and not T.use_xla(False, True, 10**6)
    assert not T.use_xla(True, False, 10**6) and not T.use_xla(None, False, 10**6)   # a backbone in the step


@pytest.mark.parametrize("variant,loss",
                         [("image_only", "triplet"), ("combined", "triplet"), ("image_only", "infonce")])
def test_xla_compiled_head_trains_like_the_plain_one(toy, monkeypatch, variant, loss):
    """jit_compile=True: the siamese model is compiled with XLA (seen by a spy on Model.compile), the
    report says so, and the run learns as the plain step does: same losses to 1e-3 relative
    (XLA rounds differently), trained accuracy on the same side of the rule."""
    import keras

    articles, images, trip, _ = toy
    seen = []
    real_compile = keras.Model.compile

    def spy(self, *a, **k):
        seen.append(k.get("jit_compile", "auto"))
        return real_compile(self, *a, **k)
    monkeypatch.setattr(keras.Model, "compile", spy)
    runs = {}
    for xla in (False, True):
        seen.clear()
        _, history, report = train(
            trip, articles, images, variant=variant, loss=loss, backbone="small_cnn", image_size=SIZE, embedding_dim=8,
            pooling="avg", normalize=True, epochs=4, batch_size=16, learning_rate=3e-3, hidden_units=32,
            backbone_model=build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=3), jit_compile=xla,
            validation_split=0.25, seed=3, verbose=0, log=lambda *a: None)
        assert seen == [xla] and report["jit_compile"] is xla and report["used_cache"]
        runs[xla] = (history, report)
    (h0, r0), (h1, r1) = runs[False], runs[True]
    np.testing.assert_allclose(h1["loss"], h0["loss"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(h1["val_loss"], h0["val_loss"], rtol=1e-3, atol=1e-5)
    assert abs(r1["trained_accuracy"] - r0["trained_accuracy"]) <= 0.05


def test_combined_without_cache_and_infonce_runs(toy):
    articles, images, trip, _ = toy
    model, history, report = train(
        trip.iloc[:40], articles, images, variant="combined", backbone="small_cnn", image_size=SIZE,
        embedding_dim=8, pooling="avg", loss="infonce", epochs=2, batch_size=16, hidden_units=16,
        verbose=0, log=lambda *a: None)  # small_cnn is trainable: images decoded every epoch
    assert not report["used_cache"] and report["trainable_backbone"]
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    assert sorted(model.input.keys()) == ["image", "tabular"]
    assert 0.0 <= report["trained_accuracy"] <= 1.0


def test_few_or_broken_triplets_do_not_crash(toy):
    articles, images, trip, _ = toy
    missing = images.assign(has_image=images["article_id"] != 1000)
    kw = dict(backbone="small_cnn", image_size=SIZE, embedding_dim=4, pooling="avg", epochs=1, batch_size=8,
              hidden_units=8, verbose=0, log=lambda *a: None)
    t3 = trip.iloc[:3].copy()
    t3.loc[0, "anchor"] = 1000
    n_bad = int((t3[["anchor", "positive", "negative"]] == 1000).any(axis=1).sum())
    with pytest.warns(UserWarning, match=f"{n_bad} of 3 triplets dropped.*1000"):
        _, hist, rep = train(t3, articles, missing, **kw)
    assert 1 <= n_bad < 3 and rep["n_triplets"] == 3 - n_bad and rep["n_validation"] == 0 and "too few" in rep["validation_note"]
    _, hist, rep = train(trip.iloc[:0], articles, images, **kw)
    assert rep["n_triplets"] == 0 and hist["loss"] == [] and rep["trained_accuracy"] is None
    with pytest.raises(ValueError, match="123456"):
        train(trip.iloc[:2].assign(negative=123456), articles, images, **kw)


def test_history_and_plot():
    hist = {"epoch": [1, 2], "loss": [0.3, 0.1], "val_loss": [0.35, 0.2], "seconds": [1.0, 0.5]}
    df = training_history_frame({"image_only": hist, "empty": {"epoch": []}})
    assert df["model"].tolist() == ["image_only", "image_only"] and df["loss"].tolist() == [0.3, 0.1]
    fig = plot_training({"image_only": hist, "none": {"epoch": []}},
                          {"image_only": {"untrained_accuracy": 0.4, "trained_accuracy": 0.9},
                           "none": {"untrained_accuracy": None, "trained_accuracy": None}})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 2
    assert T.accuracy_frame({"a": {"trained_accuracy": 0.9}})["trained_accuracy"].tolist() == [0.9]


def test_training_on_hm_sample_says_how_many_triplets(hm_sample, tmp_path):
    """The real-data excerpt gives very few triplets: training must run and report the count."""
    from hm_utils.core.workdir import load_articles, load_images, load_transactions
    from hm_utils.data.loading import prepare_data
    from hm_utils.triplets.mining import filter_with_images, mine_triplets

    prepare_data(hm_sample, tmp_path, progress=False)
    articles, images = load_articles(tmp_path), load_images(tmp_path)
    mined = mine_triplets(load_transactions(tmp_path), articles, "original").triplets
    triplets, _ = filter_with_images(mined, images)
    logged = []
    model, history, report = train(
        triplets, articles, images, variant="combined", backbone="small_cnn", image_size=(96, 64),
        embedding_dim=8, pooling="avg", epochs=1, batch_size=8, hidden_units=16, verbose=0, log=logged.append)
    assert report["n_triplets"] == len(triplets) <= 10
    assert any(f"{len(triplets)} triplets" in line for line in logged)
    if len(triplets) < T.MIN_TRIPLETS_FOR_VALIDATION:
        assert report["n_validation"] == 0 and "validation skipped" in report["validation_note"]
    assert model.output_shape == (None, 8)


def test_training_from_an_on_disk_cache_matches_in_memory(toy, tmp_path):
    articles, images, trip, _ = toy
    bb = build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=1)
    ids = articles["article_id"].to_numpy()
    paths = article_image_paths(images, ids)
    mem = compute_feature_cache(bb, ids, paths, progress=False)
    disk = compute_feature_cache(bb, ids, paths, progress=False, cache_path=tmp_path / "f.npy")
    assert isinstance(disk.features, np.memmap)
    kw = dict(backbone="small_cnn", image_size=SIZE, embedding_dim=4, pooling="avg", epochs=2, batch_size=16,
              hidden_units=8, verbose=0, log=lambda *a: None, backbone_model=bb, seed=5)
    _, h_mem, r_mem = train(trip.iloc[:48], articles, images, feature_cache=mem, **kw)
    _, h_disk, r_disk = train(trip.iloc[:48], articles, images, feature_cache=disk, **kw)
    np.testing.assert_allclose(h_disk["loss"], h_mem["loss"], rtol=1e-4)
    assert r_disk["trained_accuracy"] == pytest.approx(r_mem["trained_accuracy"])
    with pytest.raises(ValueError, match="backbone_model"):
        train(trip.iloc[:8], articles, images, feature_cache=mem,
                        **{k: v for k, v in kw.items() if k != "backbone_model"})


def test_trainable_backbone_passed_in_is_not_changed_by_training(tmp_path):
    """Two variants trained with one trainable backbone object: the first model keeps its weights."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from hm_utils.model.siamese import build_backbone

    rng = np.random.default_rng(0)
    ids = np.arange(1, 9, dtype=np.int32) + 100000000
    rows = []
    for a in ids:
        path = tmp_path / f"{a}.jpg"
        Image.fromarray(rng.integers(0, 255, (32, 24, 3), dtype=np.uint8)).save(path)
        rows.append((a, str(path), True))
    images = pd.DataFrame(rows, columns=["article_id", "abs_path", "has_image"])
    articles = pd.DataFrame({"article_id": ids})
    triplets = pd.DataFrame({"customer_key": np.arange(8, dtype=np.int32), "anchor": ids,
                             "positive": np.roll(ids, 1), "negative": np.roll(ids, 3)})
    bb = build_backbone("small_cnn", (32, 24), "avg", None, seed=1)
    before = [w.copy() for w in bb.get_weights()]
    model, _, _ = train(triplets, articles, images, variant="image_only", backbone="small_cnn",
                        backbone_model=bb, image_size=(32, 24), embedding_dim=8, pooling="avg",
                        epochs=1, batch_size=4, validation_split=0.0, seed=0, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, bb.get_weights()))  # caller's object untouched
    from hm_utils.model.siamese import get_backbone
    own = get_backbone(model)
    assert own is not bb
    assert any(not np.allclose(a, b) for a, b in zip(before, own.get_weights()))  # the copy was trained


def _bn_backbone():
    """image -> conv "a" -> BatchNorm "bn_a" -> conv "b" -> BatchNorm "bn_b" -> average,
    nested like build_backbone's."""
    import keras

    inp = keras.Input((*SIZE, 3))
    x = keras.layers.Conv2D(4, 3, name="a")(inp)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.Conv2D(4, 3, name="b")(x)
    x = keras.layers.BatchNormalization(name="bn_b")(x)
    net = keras.Model(inp, x, name="net")
    image = keras.Input((*SIZE, 3), name="image")
    return keras.Model(image, keras.layers.GlobalAveragePooling2D(name="avg_pool")(net(image)), name="backbone")


def test_set_trainable_top_counts_weight_layers_and_keeps_batchnorm_frozen():
    bb = _bn_backbone()
    assert fine_tuning.set_trainable_top(bb, 1) == ["b"]
    assert bb.trainable and sorted(v.path for v in bb.trainable_weights) == ["b/bias", "b/kernel"]
    assert fine_tuning.set_trainable_top(bb, 5) == ["a", "b"]  # only two layers with weights besides the batch norms
    assert len(bb.trainable_weights) == 4 and not bb.get_layer("net").get_layer("bn_b").trainable
    copy = fine_tuning.copy_model(bb)  # a copy keeps every layer's flag
    assert sorted(v.path for v in copy.trainable_weights) == sorted(v.path for v in bb.trainable_weights)
    assert fine_tuning.set_trainable_top(bb, 0) == [] and not bb.trainable and bb.trainable_weights == []
    with pytest.raises(ValueError, match="n_layers"):
        fine_tuning.set_trainable_top(bb, -1)


def test_fine_tuning_trains_only_the_top_layers(toy):
    """small_cnn has conv1, conv2, conv3: with the top 1 trainable only conv3 changes, from images."""
    from hm_utils.model.siamese import get_backbone

    articles, images, trip, _ = toy
    bb = build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=2)
    assert fine_tuning.set_trainable_top(bb, 1) == ["conv3"]
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in bb.get_layer("small_cnn").layers}
    model, history, report = train(
        trip.iloc[:48], articles, images, variant="image_only", backbone="small_cnn", image_size=SIZE,
        embedding_dim=4, pooling="avg", epochs=1, batch_size=16, hidden_units=8, learning_rate=1e-2,
        backbone_model=bb, verbose=0, log=lambda *a: None)
    assert report["trainable_backbone"] and not report["used_cache"] and len(history["loss"]) == 1
    net = get_backbone(model).get_layer("small_cnn")
    for name in ("conv1", "conv2"):
        assert all(np.array_equal(a, b) for a, b in zip(before[name], net.get_layer(name).get_weights()))
    assert any(not np.array_equal(a, b) for a, b in zip(before["conv3"], net.get_layer("conv3").get_weights()))


def test_training_from_the_feature_store(toy, tmp_path):
    """The store (every article, memory-mapped) trains like the in-memory cache; another backbone is refused."""
    from hm_utils.model.feature_store import compute_features, load_features

    articles, images, trip, _ = toy
    bb = build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=1)
    compute_features({"backbone": bb}, articles, images, tmp_path, batch_size=16, progress=False)
    store = load_features(tmp_path, "backbone")
    mem = compute_feature_cache(bb, articles["article_id"], article_image_paths(images, articles["article_id"]),
                                  progress=False)
    kw = dict(backbone="small_cnn", image_size=SIZE, embedding_dim=4, pooling="avg", epochs=2, batch_size=16,
              hidden_units=8, verbose=0, log=lambda *a: None, backbone_model=bb, seed=5)
    _, h_store, r_store = train(trip.iloc[:48], articles, images, feature_cache=store, **kw)
    _, h_mem, r_mem = train(trip.iloc[:48], articles, images, feature_cache=mem, **kw)
    assert r_store["used_cache"]
    np.testing.assert_allclose(h_store["loss"], h_mem["loss"], rtol=1e-4)
    assert r_store["untrained_accuracy"] == pytest.approx(r_mem["untrained_accuracy"])
    assert r_store["trained_accuracy"] == pytest.approx(r_mem["trained_accuracy"])
    other = build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=2)
    with pytest.raises(ValueError, match="other weights"):
        train(trip.iloc[:8], articles, images, feature_cache=store, **{**kw, "backbone_model": other})


def test_reload_max_difference_with_and_without_photos(toy, tmp_path):
    """0.0 for the saved model itself, from photos or from seeded random pixels; > 0 for another model."""
    from hm_utils.model.siamese import build_embedding_model

    articles, images, _, _ = toy
    model = build_embedding_model("combined", "small_cnn", SIZE, embedding_dim=4, pooling="avg", hidden_units=8)
    path = save_embedding_model(model, tmp_path / "m.keras")
    assert T.reload_max_difference(model, path, articles, images) == 0.0
    assert T.reload_max_difference(model, path, articles) == 0.0
    other = build_embedding_model("combined", "small_cnn", SIZE, embedding_dim=4, pooling="avg", hidden_units=8)
    assert T.reload_max_difference(other, path, articles) > 0.0


def test_training_settings_from_profile_and_overrides():
    from hm_utils.core.config import get_profile

    tiny = get_profile("tiny")
    s = T.TrainingSettings.from_profile("tiny")
    assert (s.backbone, s.pooling, s.embedding_dim, s.epochs, s.batch_size, s.max_triplets) == (
        tiny.backbone, tiny.pooling, tiny.embedding_dim, tiny.epochs, tiny.batch_size, tiny.max_triplets)
    assert s.image_size == tuple(tiny.image_size) and s.weights == tiny.weights
    assert (s.loss, s.learning_rate, s.validation_split, s.seed, s.margin) == ("triplet", T.LEARNING_RATE, 0.2, 42, 0.2)
    # None keeps the profile's value; anything else wins; "random" means no pretrained weights
    o = T.TrainingSettings.from_profile("tiny", epochs=None, batch_size=7, image_size=[40, "30"], weights="Random")
    assert o.epochs == tiny.epochs and o.batch_size == 7 and o.image_size == (40, 30) and o.weights is None
    with pytest.raises(ValueError, match="epoch"):
        T.TrainingSettings.from_profile("tiny", epoch=3)
    with pytest.raises(AttributeError):
        s.epochs = 3  # frozen: one run, one set of settings
    from dataclasses import asdict
    assert asdict(s)["image_size"] == tuple(tiny.image_size) and len(asdict(s)) == 31
    assert s.by_hand_triplets == 20_000   # section 4 of 03 shows one epoch on at most this many (a sample at scale)
    assert s.jit_compile is None          # XLA decided by the training set's size
    # the head that cannot die is every profile's default; epochs are a maximum (early stop after 2 idle epochs)
    assert all((T.TrainingSettings.from_profile(p).head, T.TrainingSettings.from_profile(p).patience) == ("residual", 2)
               for p in ("tiny", "demo", "full"))
    assert T.TrainingSettings.from_profile("tiny", head="original").head == "original"
    # notebook 03's run settings: the original's triplets, frozen backbone, the untrained reference stored,
    # the InfoNCE comparison left to the notebook (None: when stored features make it cheap)
    assert (s.train_strategy, s.fine_tune_layers, s.untrained_reference, s.compare_infonce) == (
        "original", 0, True, None)
    r = T.TrainingSettings.from_profile("tiny", train_strategy="hard", fine_tune_layers=None, compare_infonce=False)
    assert (r.train_strategy, r.fine_tune_layers, r.compare_infonce) == ("hard", 0, False)


def test_run_returns_the_split_it_validated_on_and_it_round_trips(toy, tmp_path):
    """The validation triplets a run reports on are whole customers of the usable triplets; written and read
    back (notebook 03 -> 05) they are the same rows, columns and dtypes."""
    from hm_utils.core.workdir import read_triplet_split, write_triplet_split

    articles, images, trip, _ = toy
    missing = images.assign(has_image=images["article_id"] != 1000)   # triplets with article 1000 are dropped
    bb = build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=1)
    settings = T.TrainingSettings(weights=None, backbone="small_cnn", image_size=SIZE, embedding_dim=4, pooling="avg", epochs=1,
                                  batch_size=16, hidden_units=8, max_triplets=100, validation_split=0.25, seed=5)
    with pytest.warns(UserWarning, match="dropped"):
        run = T.train_siamese(trip, articles, missing, settings, backbone_model=bb, verbose=0, log=lambda *a: None)
    train, val, note = run.split
    assert len(train) == run.report["n_train"] and len(val) == run.report["n_validation"] > 0
    assert note == run.report["validation_note"]
    assert set(train["customer_key"]).isdisjoint(val["customer_key"])
    used = pd.concat([train, val])
    assert not (used[["anchor", "positive", "negative"]] == 1000).any().any()
    # the same as capping, dropping and splitting by hand
    capped = trip.sample(n=100, random_state=5).reset_index(drop=True)
    usable = capped[~(capped[["anchor", "positive", "negative"]] == 1000).any(axis=1)].reset_index(drop=True)
    assert T.split_by_customer(usable, 0.25, 5).validation.equals(val)
    write_triplet_split(tmp_path, train, val)
    train2, val2 = read_triplet_split(tmp_path)
    assert train2.equals(train) and val2.equals(val)
    assert list(val2.columns) == list(trip.columns) and (val2.dtypes == trip.dtypes).all()
    with pytest.raises(FileNotFoundError, match="03_model_training"):
        read_triplet_split(tmp_path / "empty")


def test_cap_triplets_checks_columns_and_samples_with_the_seed():
    trip = pd.DataFrame({"customer_key": np.arange(10), "anchor": np.arange(10), "positive": 1, "negative": 2})
    assert T.cap_triplets(trip, None, 0) is trip and T.cap_triplets(trip, 10, 0) is trip
    capped = T.cap_triplets(trip, 4, 7)
    assert capped.equals(trip.sample(n=4, random_state=7).reset_index(drop=True))
    with pytest.raises(KeyError, match=r"triplets table is missing column\(s\) \['negative'\]"):
        T.cap_triplets(trip.drop(columns="negative"), None, 0)


def test_rows_accuracy_in_blocks_equals_the_whole_count():
    # 4 articles on a line; triplet (anchor, positive, negative) correct when the positive is nearer
    emb = np.array([[0.0], [1.0], [2.0], [5.0]], np.float32)
    rows = np.array([[0, 1, 3], [0, 3, 1], [1, 2, 3], [2, 1, 3], [3, 2, 0], [0, 2, 1]], np.int64)
    # correct: yes, no, yes, yes, yes, no -> 4 of 6
    for block in (1, 2, 4, 65_536):
        assert T.rows_accuracy(emb, rows, block=block) == 4 / 6
    rng = np.random.default_rng(1)
    big = rng.normal(size=(50, 7)).astype(np.float32)
    many = rng.integers(0, 50, size=(1_001, 3))
    from hm_utils.core.metrics import triplet_accuracy
    assert T.rows_accuracy(big, many, block=97) == triplet_accuracy(big[many[:, 0]], big[many[:, 1]], big[many[:, 2]])
    assert np.isnan(T.rows_accuracy(big, many[:0]))


def _toy_transactions(trip):
    """Each triplet's customer buys the anchor on one day and the positive (the partner colour) the next."""
    day = pd.Timestamp("2020-09-01")
    rows = [(c, a, day + pd.Timedelta(days=2 * i)) for i, (c, a) in enumerate(zip(trip["customer_key"], trip["anchor"]))]
    rows += [(c, p, day + pd.Timedelta(days=2 * i + 1)) for i, (c, p) in enumerate(zip(trip["customer_key"], trip["positive"]))]
    return pd.DataFrame(rows, columns=["customer_key", "article_id", "t_dat"])


def test_epoch_selection_keeps_the_best_epoch_and_stops_early(toy):
    from hm_utils.model.epoch_selection import customer_recall, heldout_queries
    from hm_utils.model.siamese import get_head
    articles, images, trip, _ = toy
    bb = build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=3)
    run = T.train_siamese(trip, articles, images, T.TrainingSettings(weights=None,
        backbone="small_cnn", image_size=SIZE, embedding_dim=8, pooling="avg", epochs=40, batch_size=16,
        learning_rate=3e-3, hidden_units=32, validation_split=0.5, seed=3, patience=2, selection_k=3,
        selection_rule="best"),
        "image_only", backbone_model=bb, verbose=0, log=lambda *a: None, transactions=_toy_transactions(trip))
    h, r = run.history, run.report
    curve = r["selection_curve"]
    assert [c["epoch"] for c in curve] == list(range(len(h["epoch"]) + 1))  # epoch 0 (untrained) first
    assert len(h["epoch"]) < 40  # stopped early: recall stopped improving
    recalls = [c["recall"] for c in curve]
    assert r["best_epoch"] == int(np.argmax(recalls)) and r["selection_recall"] == pytest.approx(max(recalls))
    assert len(h["epoch"]) == r["best_epoch"] + 2  # patience 2: two epochs without gain after the best
    assert h["heldout_recall"] == pytest.approx(recalls[1:]) and len(h["val_accuracy"]) == len(h["epoch"])
    assert max(recalls) > recalls[0]  # the partner rule is learnt: next purchases found better than untrained
    # the model given back is the best epoch's: its recall on the selection customers is the best one
    from hm_utils.model.feature_cache import compute_feature_cache
    ids = np.sort(articles["article_id"].to_numpy().astype(np.int64))
    cache = compute_feature_cache(bb, ids, article_image_paths(images, ids), progress=False)
    emb = np.asarray(get_head(run.model)({"features": cache.features}, training=False))
    q = heldout_queries(_toy_transactions(trip), ids, cache.ok, run.split.validation["customer_key"], k=3, seed=3)
    assert customer_recall(emb, cache.ok, q["selection"], k=3) == pytest.approx(max(recalls), abs=1e-6)
    # the report customers: trained, untrained, features, random and popularity, paired against the features
    held = r["heldout"]
    assert set(held["recall"]) == {"trained", "untrained", "features", "random", "popularity"}
    assert held["n_customers"] > 0 and set(held["vs_features"]) == {"trained", "untrained", "random", "popularity"}
    lo, hi = held["vs_features"]["trained"]["lo"], held["vs_features"]["trained"]["hi"]
    assert lo <= held["vs_features"]["trained"]["diff"] <= hi
    assert r["health"]["zero_share"] == 0.0 and r["health"]["dead_units"] == 0.0
    frame = training_history_frame({"image_only": h})
    assert {"heldout_recall", "val_accuracy"} <= set(frame.columns)


def test_infonce_model_outputs_what_the_loss_compares(toy):
    # InfoNCE compares cosines only; a tower left un-normalised (the original head) gave vectors whose norms the
    # loss never shaped, and a squared-L2 triplet accuracy of 0.477 on the demo against 0.875 by cosine
    articles, images, trip, _ = toy
    for head in ("original", "residual"):
        s = T.TrainingSettings(weights=None, backbone="small_cnn", image_size=SIZE, embedding_dim=8, pooling="avg", epochs=1,
                               batch_size=16, hidden_units=16, loss="infonce", head=head, normalize=False)
        assert T.effective_normalize(s)
        run = T.train_siamese(trip, articles, images, s, "image_only", verbose=0, log=lambda *a: None,
                              backbone_model=build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=3))
        x = {"image": np.random.default_rng(0).uniform(0, 255, (4, *SIZE, 3)).astype(np.float32)}
        np.testing.assert_allclose(np.linalg.norm(run.model.predict(x, verbose=0), axis=1), 1.0, atol=1e-5)
    assert not T.effective_normalize(T.TrainingSettings(head="original", loss="triplet"))


def test_no_next_purchases_means_no_selection_and_all_epochs(toy):
    articles, images, trip, _ = toy
    notes = []
    empty = _toy_transactions(trip).iloc[:0]
    run = T.train_siamese(trip, articles, images, T.TrainingSettings(weights=None,
        backbone="small_cnn", image_size=SIZE, embedding_dim=8, pooling="avg", epochs=3, batch_size=16,
        hidden_units=16, validation_split=0.5, seed=3), "image_only",
        backbone_model=build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=3), verbose=0,
        log=notes.append, transactions=empty)
    assert len(run.history["epoch"]) == 3 and "heldout_recall" not in run.history
    assert "heldout" not in run.report and "best_epoch" not in run.report and run.report["health"]["n_rows"] == 40
    assert any("no next purchases" in n for n in notes)


def test_product_triplets_use_another_colour_and_hold_products_out():
    # products: 10 -> articles 1, 2, 3; 20 -> 4, 5; 30 -> 6 (alone); 40 -> 7, 8 with 8 unusable; 50 -> 9, 10
    arts = pd.DataFrame({"article_id": np.arange(1, 11), "product_code": [10, 10, 10, 20, 20, 30, 40, 40, 50, 50]})
    ids = np.arange(1, 11)
    ok = np.ones(10, bool)
    ok[7] = False  # article 8
    rows, held = T.product_triplet_rows(arts, ids, ok, 200, seed=0, held_out_share=0.34)
    prod = arts["product_code"].to_numpy()
    # qualifying products: 10, 20, 50 (40 has one usable article, 30 one article); a third of 3 held out: 1
    assert len(held) == 1 and set(held) <= {10, 20, 50}
    assert rows.shape == (200, 3)
    a, p, n = prod[rows[:, 0]], prod[rows[:, 1]], prod[rows[:, 2]]
    assert (a == p).all() and (rows[:, 0] != rows[:, 1]).all()   # another colour of the same product
    assert (n != a).all() and ok[rows].all()                       # negative of another product; all usable
    assert not np.isin(a, held).any()                              # held-out products never anchor a positive
    assert set(a) == {10, 20, 50} - set(held)
    assert T.product_triplet_rows(arts, ids, ok, 0, seed=0)[0].shape == (0, 3)


def test_training_with_product_positives_reports_them(toy):
    articles, images, trip, _ = toy
    arts = articles.assign(product_code=np.repeat(np.arange(20), 2))  # pairs of articles share a product
    run = T.train_siamese(trip, arts, images, T.TrainingSettings(weights=None,
        backbone="small_cnn", image_size=SIZE, embedding_dim=8, pooling="avg", epochs=1, batch_size=16,
        hidden_units=16, validation_split=0.25, seed=3, product_positives=0.5), "image_only",
        backbone_model=build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=3), verbose=0,
        log=lambda *a: None)
    assert run.report["n_product_triplets"] == round(0.5 * run.report["n_train"])
    assert len(run.report["held_out_products"]) == 4  # 20% of 20 products
    assert np.isfinite(run.report["trained_train_accuracy"])


class _FakeHead:
    """get_weights / set_weights of one number: the epoch the embeddings come from."""
    def __init__(self):
        self.w = [np.zeros(1)]

    def get_weights(self):
        return [w.copy() for w in self.w]

    def set_weights(self, w):
        self.w = [np.asarray(x).copy() for x in w]


def _selection_run(frames, rule, n_cust=40, patience=2):
    from hm_utils.model.epoch_selection import EpochSelection, Queries

    # 6 articles; n_cust customers, one query each: previous article 0, bought article 1
    q = Queries(np.ones(n_cust, np.int64), np.zeros(n_cust, np.int64), np.arange(n_cust), np.zeros(n_cust))
    head = _FakeHead()
    it = iter(frames)
    sel = EpochSelection(head, lambda: next(it), np.ones(6, bool), q, np.zeros((0, 3), np.int64),
                         patience=patience, k=1, log=lambda *a: None, rule=rule)
    for epoch in range(len(frames)):
        head.w = [np.array([float(epoch)])]
        sel.measure(epoch)
    sel.choose()
    return sel


FAR = np.array([[1, 0], [-1, 0.1], [0.9, 0.2], [0.9, -0.1], [0.8, 0.3], [0.8, -0.35]], np.float32)
NEAR = FAR.copy()
NEAR[1] = [1, 0.05]  # article 1 becomes article 0's nearest: every purchase found at k = 1


def test_interval_rule_keeps_the_best_epoch_only_when_its_gain_is_shown():
    sel = _selection_run([FAR, FAR, NEAR, NEAR, NEAR], "interval")
    assert [c["recall"] for c in sel.curve] == [0.0, 0.0, 1.0, 1.0, 1.0]
    # epoch 2 is the best (ties: the earlier), its gain over epoch 0 is 1 for every customer: kept
    assert sel.best_epoch == sel.best_recall_epoch == 2 and sel.best_weights[0][0] == 2.0 and sel.wait == 2
    assert sel.gain == {"diff": 1.0, "lo": 1.0, "hi": 1.0}
    # a better epoch whose gain is not shown: 1 of 40 customers finds the purchase -> interval reaches 0
    one = [FAR, FAR, FAR]
    sel = _selection_run(one, "interval")
    assert sel.best_epoch == 0
    from hm_utils.model.epoch_selection import EpochSelection, Queries
    q = Queries(np.ones(40, np.int64), np.zeros(40, np.int64), np.arange(40), np.zeros(40))
    # customer 0 looks up article 2 instead (found at epoch 1 only when article 2 moves nearest)
    q = q._replace(target=np.r_[2, np.ones(39, np.int64)])
    moved = FAR.copy()
    moved[2] = [1, 0.01]
    head = _FakeHead()
    frames = iter([FAR, moved, moved])
    sel = EpochSelection(head, lambda: next(frames), np.ones(6, bool), q, np.zeros((0, 3), np.int64), patience=2,
                         k=1, log=lambda *a: None, rule="interval")
    for epoch in range(3):
        head.w = [np.array([float(epoch)])]
        sel.measure(epoch)
    assert sel.curve[0]["recall"] == 0.0 and sel.curve[1]["recall"] == pytest.approx(1 / 40)
    assert sel.choose() == 0 and sel.best_recall_epoch == 1 and sel.best_weights[0][0] == 0.0
    assert sel.gain["lo"] == 0.0 and sel.gain["diff"] == pytest.approx(1 / 40)
    # rule "best" keeps it regardless
    head = _FakeHead()
    frames = iter([FAR, moved, moved])
    sel = EpochSelection(head, lambda: next(frames), np.ones(6, bool), q, np.zeros((0, 3), np.int64), patience=2,
                         k=1, log=lambda *a: None, rule="best")
    for epoch in range(3):
        head.w = [np.array([float(epoch)])]
        sel.measure(epoch)
    assert sel.choose() == 1 and sel.best_weights[0][0] == 1.0
    with pytest.raises(ValueError, match="selection rule"):
        EpochSelection(head, None, np.ones(6, bool), q, None, rule="max")
