"""hm_utils.model.feature_store: the backbone feature store (one decode pass, memory-mapped, atomic, reused)."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hm_utils.core.config import ARTICLE_ID, FEATURE_OK, FEATURES_DIR, FEATURES_INDEX, FEATURES_MANIFEST, HAS_IMAGE
from hm_utils.data.images import UnreadableImageWarning, load_image
from hm_utils.model import feature_store as F
from hm_utils.model.inference import model_digest
from hm_utils.model.siamese import build_backbone

SIZE = (32, 24)
IDS = np.arange(100, 108, dtype=np.int32)
NO_IMAGE, MISSING_FILE, NOT_AN_IMAGE = 103, 105, 106  # articles 100..107; these three have no usable image


@pytest.fixture()
def catalogue(tmp_path):
    """8 articles: 5 random-noise JPEGs (of two sizes), one without image (103), one whose
    file is missing (105), one whose file is text (106)."""
    rng = np.random.default_rng(0)
    rows = []
    for k, a in enumerate(IDS):
        p = tmp_path / "images" / f"{a:010d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        if a == NOT_AN_IMAGE:
            p.write_text("not a picture")
        elif a not in (NO_IMAGE, MISSING_FILE):
            shape = (64, 48, 3) if k % 2 else (40, 30, 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(p, quality=90)
        rows.append((a, str(p), a != NO_IMAGE))
    images = pd.DataFrame(rows, columns=[ARTICLE_ID, "abs_path", HAS_IMAGE])
    articles = pd.DataFrame({ARTICLE_ID: IDS, "prod_name": [f"item {a}" for a in IDS]})
    return articles, images, tmp_path / "work"


def _backbone(seed):
    return build_backbone("small_cnn", SIZE, "avg", trainable=False, seed=seed)


def _compute(backbones, articles, images, work, **kw):
    kw.setdefault("batch_size", 3)
    kw.setdefault("progress", False)
    return F.compute_features(backbones, articles, images, work, **kw)


def test_features_equal_a_direct_backbone_call(catalogue):
    articles, images, work = catalogue
    bb, ref = _backbone(1), _backbone(2)
    with pytest.warns(UnreadableImageWarning, match=f"{MISSING_FILE}.*{NOT_AN_IMAGE}") as rec:
        man = _compute({"backbone": bb, "untrained": ref}, articles, images, work)
    assert not any(str(NO_IMAGE) in str(w.message) for w in rec)  # no image is not an unreadable image
    assert man["reused"] is False
    assert (man["n_articles"], man["n_with_image"], man["n_ok"]) == (8, 7, 5)
    assert man["unreadable"] == [MISSING_FILE, NOT_AN_IMAGE]
    e = man["features"]["backbone"]
    assert (e["feature_dim"], e["pooling"], e["image_size"], e["backbone"]) == (64, "avg", list(SIZE), "small_cnn")
    assert e["digest"] == model_digest(bb) != man["features"]["untrained"]["digest"]
    assert e["weights_file"] is None and e["weights_sha256"] is None and e["seconds"] > 0
    fdir = work / FEATURES_DIR
    assert sorted(p.name for p in fdir.iterdir()) == sorted(
        ["backbone.npy", "untrained.npy", FEATURES_INDEX, FEATURES_MANIFEST])
    index = pd.read_parquet(fdir / FEATURES_INDEX)
    assert index[ARTICLE_ID].tolist() == IDS.tolist() and str(index[ARTICLE_ID].dtype) == "int32"
    expected_ok = ~np.isin(IDS, [NO_IMAGE, MISSING_FILE, NOT_AN_IMAGE])
    assert index[FEATURE_OK].tolist() == expected_ok.tolist()
    assert index[HAS_IMAGE].tolist() == (IDS != NO_IMAGE).tolist()
    for name, model in (("backbone", bb), ("untrained", ref)):
        cache = F.load_features(work, name)
        assert isinstance(cache.features, np.memmap) and cache.features.dtype == np.float32
        assert cache.features.shape == (8, 64) and cache.ok.tolist() == expected_ok.tolist()
        assert cache.article_ids.dtype == np.int64 and cache.article_ids.tolist() == IDS.tolist()
        assert cache.digest == model_digest(model) and cache.unreadable == [MISSING_FILE, NOT_AN_IMAGE]
        assert not cache.features[~expected_ok].any()  # zero rows where there is no image
        x = np.stack([load_image(images["abs_path"][r], SIZE) for r in np.flatnonzero(expected_ok)])
        direct = np.asarray(model(x, training=False))
        np.testing.assert_allclose(cache.features[expected_ok], direct, rtol=1e-5, atol=1e-6)
        assert np.abs(direct).max() > 0


def test_second_call_reuses_without_decoding(catalogue, monkeypatch):
    articles, images, work = catalogue
    bb, ref = _backbone(1), _backbone(2)
    with pytest.warns(UnreadableImageWarning):
        first = _compute({"backbone": bb, "untrained": ref}, articles, images, work)
    npy = work / FEATURES_DIR / "backbone.npy"
    before = npy.stat().st_mtime_ns

    def no_decoding(*args, **kw):
        raise AssertionError("an image was decoded again")
    monkeypatch.setattr(F, "image_dataset", no_decoding)
    again = _compute({"backbone": bb, "untrained": ref}, articles, images, work)
    assert again["reused"] is True and npy.stat().st_mtime_ns == before
    assert {k: v for k, v in again.items() if k != "reused"} == {k: v for k, v in first.items() if k != "reused"}
    # a subset of the stored sets is reused too; a rebuilt backbone with the same seed has the same digest
    assert _compute({"backbone": _backbone(1)}, articles, images, work)["reused"] is True
    # other weights, another image size or other images: computed again
    monkeypatch.undo()
    with pytest.warns(UnreadableImageWarning):
        assert _compute({"backbone": bb, "untrained": _backbone(3)}, articles, images, work)["reused"] is False
    with pytest.warns(UnreadableImageWarning):
        assert _compute({"backbone": bb}, articles, images.assign(has_image=images[ARTICLE_ID] != 100),
                        work)["reused"] is False
    assert not (work / FEATURES_DIR / "untrained.npy").exists()  # a set the last call did not ask for is dropped
    assert sorted(json.loads((work / FEATURES_DIR / FEATURES_MANIFEST).read_text())["features"]) == ["backbone"]
    assert F.load_features(work, "backbone").ok[0] == False  # noqa: E712  (article 100 now without image)
    # a photo rewritten in place (same path, other bytes) makes the store stale
    photo = images["abs_path"][4]
    Image.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(photo, quality=90)
    os.utime(photo, ns=(1_000_000_000, 1_000_000_000))
    with pytest.warns(UnreadableImageWarning):
        assert _compute({"backbone": bb}, articles, images, work)["reused"] is False


def test_identical_backbones_run_once(catalogue):
    articles, images, work = catalogue
    with pytest.warns(UnreadableImageWarning):
        man = _compute({"backbone": _backbone(7), "untrained": _backbone(7)}, articles, images, work)
    assert man["features"]["untrained"]["shared_with"] == "backbone"
    assert man["features"]["backbone"]["shared_with"] is None
    a, b = F.load_features(work, "backbone"), F.load_features(work, "untrained")
    np.testing.assert_array_equal(a.features, b.features)


def test_failed_run_keeps_the_earlier_files(catalogue, monkeypatch):
    articles, images, work = catalogue
    with pytest.warns(UnreadableImageWarning):
        _compute({"backbone": _backbone(1)}, articles, images, work)
    fdir = work / FEATURES_DIR
    saved = {p.name: p.read_bytes() for p in fdir.iterdir()}
    real = F.image_dataset

    def one_batch_then_crash(*args, **kw):
        for k, batch in enumerate(real(*args, **kw)):
            if k == 1:
                raise RuntimeError("simulated crash")
            yield batch
    monkeypatch.setattr(F, "image_dataset", one_batch_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _compute({"backbone": _backbone(5), "untrained": _backbone(6)}, articles, images, work)
    assert {p.name: p.read_bytes() for p in fdir.iterdir()} == saved  # same files, no temporary left


def test_bad_calls_are_named(catalogue, tmp_path):
    articles, images, work = catalogue
    with pytest.raises(FileNotFoundError, match="03_model_training"):
        F.load_features(tmp_path / "nowhere", "backbone")
    other = build_backbone("small_cnn", (16, 16), "avg", trainable=False, seed=1)
    with pytest.raises(ValueError, match="different image sizes"):
        _compute({"backbone": _backbone(1), "small": other}, articles, images, work)
    with pytest.raises(ValueError, match="letters, digits"):
        _compute({"../x": _backbone(1)}, articles, images, work)
    with pytest.raises(ValueError, match="article 101 more than once"):
        _compute({"backbone": _backbone(1)}, pd.concat([articles, articles.iloc[1:2]]), images, work)
    with pytest.warns(UnreadableImageWarning):
        _compute({"backbone": _backbone(1)}, articles, images, work)
    with pytest.raises(KeyError, match="'untrained'.*backbone"):
        F.load_features(work, "untrained")


def test_weights_file_is_recorded_with_its_hash(catalogue, tmp_path):
    articles, images, work = catalogue
    bb = _backbone(1)
    path = tmp_path / "small_cnn.weights.h5"
    bb.save_weights(path)
    with pytest.warns(UnreadableImageWarning):
        man = _compute({"backbone": bb}, articles, images, work, architectures={"backbone": "small_cnn (test)"},
                       weights_files={"backbone": path})
    e = man["features"]["backbone"]
    import hashlib
    assert e["weights_file"] == str(path) and e["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert e["backbone"] == "small_cnn (test)"
    summary = F.features_summary(man)
    assert summary["name"].tolist() == ["backbone"] and summary["feature_dim"].tolist() == [64]
