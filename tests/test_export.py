"""hm_utils.export.export: streamed, resumable embedding export and loading of both file kinds."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

keras = pytest.importorskip("keras")
from PIL import Image  # noqa: E402

from hm_utils.core.config import ARTICLE_ID, EMBEDDING, HAS_IMAGE  # noqa: E402
from hm_utils.core.workdir import load_embeddings  # noqa: E402
from hm_utils.data.images import UnreadableImageWarning  # noqa: E402
from hm_utils.export.export import export_embeddings, shard_dir_for  # noqa: E402
from hm_utils.model.siamese import model_variant  # noqa: E402

SIZE = (16, 12)  # (height, width) the test models take
ROOT = Path(__file__).resolve().parent.parent


def _arrays(path):
    """An embedding file as (article ids in file order, vectors float32 [n, d] as written, present bool [n])."""
    emb = load_embeddings(path, keep_raw=True)
    return (emb.given_ids, *emb.aligned())


def _tiny_model(dim: int = 6, seed: int = 0) -> "keras.Model":
    keras.utils.set_random_seed(seed)
    inp = keras.Input(SIZE + (3,), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(dim)(x)
    return keras.Model(inp, out)


def _tiny_combined(dim: int = 5, seed: int = 1) -> "keras.Model":
    keras.utils.set_random_seed(seed)
    img = keras.Input(SIZE + (3,), name="image")
    tab = keras.Input((11,), name="tabular")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(img))
    x = keras.layers.Concatenate()([x, keras.layers.Dense(3)(tab)])
    return keras.Model({"image": img, "tabular": tab}, keras.layers.Dense(dim)(x))


def _write_jpeg(path: Path, seed: int, size=(40, 30)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, size=(size[0], size[1], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="JPEG", quality=90)


@pytest.fixture()
def catalogue(tmp_path):
    """14 articles: 10 good JPEGs, 2 without image, 1 truncated JPEG, 1 text file named .jpg."""
    ids = np.arange(100, 114, dtype=np.int32)
    paths, has = [], []
    for k, aid in enumerate(ids):
        p = tmp_path / "images" / f"{aid:010d}.jpg"
        if k in (3, 9):  # no image
            has.append(False)
        elif k == 5:  # truncated JPEG: first 200 bytes of a real one
            _write_jpeg(p, seed=k)
            p.write_bytes(p.read_bytes()[:200])
            has.append(True)
        elif k == 11:  # not an image at all
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("this is not a picture\n")
            has.append(True)
        else:
            _write_jpeg(p, seed=k)
            has.append(True)
        paths.append(str(p))
    articles = pd.DataFrame({ARTICLE_ID: ids, "product_code": ids // 10,
                             "prod_name": [f"item {a}" for a in ids]})
    images = pd.DataFrame({ARTICLE_ID: ids, HAS_IMAGE: has, "abs_path": paths})
    return articles, images


def _export(model, articles, images, out, **kw):
    kw.setdefault("batch_size", 3)
    kw.setdefault("shard_size", 4)
    kw.setdefault("progress", False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        rep = export_embeddings(model, articles, images, out, image_size=SIZE, **kw)
    return rep, rec


def test_export_nulls_warnings_and_values(catalogue, tmp_path):
    from hm_utils.data.images import load_image

    articles, images = catalogue
    model = _tiny_model()
    out = tmp_path / "article_embeddings.parquet"
    rep, rec = _export(model, articles, images, out)
    t = pq.read_table(out)
    assert t.column_names == [ARTICLE_ID, EMBEDDING]
    assert t.schema.field(EMBEDDING).type == pa.list_(pa.float32())
    assert t.schema.field(ARTICLE_ID).type == pa.int32()
    assert t[ARTICLE_ID].to_pylist() == articles[ARTICLE_ID].tolist()
    nulls = t[EMBEDDING].is_null().to_numpy(zero_copy_only=False)
    assert np.flatnonzero(nulls).tolist() == [3, 5, 9, 11]
    assert (rep.n_articles, rep.n_embedded, rep.n_missing_image, rep.n_unreadable) == (14, 10, 2, 2)
    assert sorted(rep.unreadable_ids) == [105, 111]
    assert rep.embedding_dim == 6 and rep.shards_total == 4 and rep.shards_reused == 0
    msgs = [str(w.message) for w in rec if issubclass(w.category, UnreadableImageWarning)]
    assert any("105" in m for m in msgs) and any("111" in m for m in msgs)
    assert not shard_dir_for(out).exists()  # cleaned after success
    # values: the model applied to each image decoded the same way
    ids, mat, has = _arrays(out)
    for row in (0, 7, 13):
        img = load_image(images["abs_path"][row], SIZE)[None]
        np.testing.assert_allclose(mat[row], np.asarray(model(img, training=False))[0], rtol=1e-5, atol=1e-6)
    assert has.tolist() == (~nulls).tolist()
    assert (mat[~has] == 0).all()


def test_interrupted_export_resumes_to_identical_file(catalogue, tmp_path, monkeypatch):
    import hm_utils.export.export as ex

    articles, images = catalogue
    model = _tiny_model()
    ref = tmp_path / "ref.parquet"
    _export(model, articles, images, ref)

    # batch_size 3, shard_size 4; unreadable files are dropped before batching, so every shard is one
    # model call: shard 0 = rows 0,1,2 (3: no image); shard 1 = rows 4,6,7 (5: truncated);
    # shard 2 = rows 8,10 (9: no image, 11: not an image); shard 3 = rows 12,13.
    # Crash in the 3rd call: shards 0 and 1 are done, shard 2 fails.
    out = tmp_path / "resumed.parquet"
    real_make = ex.make_embed_fn
    counter = {"calls": 0, "limit": 2}

    def failing_make(*args, **kw):
        fn = real_make(*args, **kw)

        def wrapped(images_, tab):
            counter["calls"] += 1
            if counter["calls"] > counter["limit"]:
                raise RuntimeError("simulated crash")
            return fn(images_, tab)
        return wrapped

    monkeypatch.setattr(ex, "make_embed_fn", failing_make)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _export(model, articles, images, out)
    shard_dir = shard_dir_for(out)
    assert sorted(p.name for p in shard_dir.glob("part-*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert not out.exists()

    counter.update(calls=0, limit=10**6)
    rep, _ = _export(model, articles, images, out)
    assert rep.shards_reused == 2 and rep.shards_total == 4
    # only shards 2 and 3 computed: rows 8, 10, 12, 13 -> 4 images in 2 model calls
    assert rep.images_computed == 4
    assert counter["calls"] == 2
    assert out.read_bytes() == ref.read_bytes()
    assert not shard_dir.exists()


def test_changed_model_discards_old_shards(catalogue, tmp_path):
    articles, images = catalogue
    out = tmp_path / "e.parquet"
    _export(_tiny_model(seed=0), articles, images, out, keep_shards=True)
    assert (shard_dir_for(out) / "manifest.json").is_file()
    rep, rec = _export(_tiny_model(seed=5), articles, images, out)
    assert rep.shards_reused == 0
    assert any("different export" in str(w.message) for w in rec)
    ref = tmp_path / "ref.parquet"
    _export(_tiny_model(seed=5), articles, images, ref)
    assert out.read_bytes() == ref.read_bytes()


def test_killed_subprocess_resumes(catalogue, tmp_path):
    """A real SIGKILL half-way: a child exports with a slow model and is killed once shards exist."""
    articles, images = catalogue
    articles.to_parquet(tmp_path / "a.parquet")
    images.to_parquet(tmp_path / "i.parquet")
    model = _tiny_model()
    model.save(tmp_path / "m.keras")
    out = tmp_path / "killed.parquet"
    script = textwrap.dedent(f"""
        import time, pandas as pd, keras
        import hm_utils.export.export as ex
        m = keras.saving.load_model({str(tmp_path / 'm.keras')!r})
        real = ex.make_embed_fn
        def slow(*args, **kw):
            fn = real(*args, **kw)
            def w(x, t):
                time.sleep(0.4)
                return fn(x, t)
            return w
        ex.make_embed_fn = slow
        ex.export_embeddings(m, pd.read_parquet({str(tmp_path / 'a.parquet')!r}),
                             pd.read_parquet({str(tmp_path / 'i.parquet')!r}), {str(out)!r},
                             image_size={SIZE!r}, batch_size=3, shard_size=4, progress=False)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tmp_path / "child.log"
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))
    shard_dir = shard_dir_for(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (shard_dir / "part-00001.parquet").exists():
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the child ended (rc {proc.returncode}) before it could be killed: " \
        f"{log.read_text()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    assert (shard_dir / "part-00000.parquet").exists()

    rep, _ = _export(keras.saving.load_model(tmp_path / "m.keras"), articles, images, out)
    assert rep.shards_reused >= 2
    ref = tmp_path / "ref.parquet"
    _export(model, articles, images, ref)
    ids_a, mat_a, has_a = _arrays(out)
    ids_b, mat_b, has_b = _arrays(ref)
    assert (ids_a == ids_b).all() and (has_a == has_b).all()
    np.testing.assert_array_equal(mat_a, mat_b)


def test_combined_export_keeps_article_columns(catalogue, tmp_path):
    articles, images = catalogue
    model = _tiny_combined()
    assert model_variant(model) == "combined" and model_variant(_tiny_model()) == "image_only"
    tab = np.arange(len(articles) * 11, dtype=np.float32).reshape(-1, 11) / 100
    out = tmp_path / "combined_article_embeddings.parquet"
    rep, _ = _export(model, articles, images, out, tabular=tab, include_article_columns=True)
    df = pd.read_parquet(out)
    assert list(df.columns) == list(articles.columns) + [EMBEDDING]
    assert len(df) == 14 and df[EMBEDDING].isna().sum() == 4
    assert rep.embedding_dim == 5
    # the tabular row reaches the model: same image, other tabular row -> other embedding
    from hm_utils.data.images import load_image
    img = load_image(images["abs_path"][0], SIZE)[None]
    expect = np.asarray(model({"image": img, "tabular": tab[:1]}, training=False))[0]
    np.testing.assert_allclose(np.asarray(df[EMBEDDING][0], dtype=np.float32), expect, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="tabular has 3 rows for 14 articles"):
        export_embeddings(model, articles, images, out, image_size=SIZE, tabular=tab[:3], progress=False)


def test_bad_inputs_named(catalogue, tmp_path):
    articles, images = catalogue
    dup = pd.concat([articles, articles.iloc[:1]])
    with pytest.raises(ValueError, match="article 100 more than once"):
        export_embeddings(_tiny_model(), dup, images, tmp_path / "x.parquet", image_size=SIZE, progress=False)
    with pytest.raises(ValueError, match="has_image"):
        export_embeddings(_tiny_model(), articles, images.drop(columns=[HAS_IMAGE]), tmp_path / "x.parquet",
                          image_size=SIZE, progress=False)


# ------------------------------------------------------- real-data excerpt ---
def test_export_on_hm_sample(hm_sample, tmp_path):
    """../shared/hm_sample: 1,000 articles, 100 real photos (~1028 x 1750) -> 100 embeddings, 900 null."""
    from hm_utils.data.loading import find_images, read_articles_csv

    articles = read_articles_csv(hm_sample)
    images = find_images(hm_sample, articles[ARTICLE_ID])
    out = tmp_path / "article_embeddings.parquet"
    rep, rec = _export(_tiny_model(), articles, images, out, data_dir=hm_sample, batch_size=32, shard_size=256)
    t = pq.read_table(out)
    assert t.num_rows == 1000
    assert t[EMBEDDING].null_count == 900
    assert (rep.n_embedded, rep.n_missing_image, rep.n_unreadable) == (100, 900, 0)
    nulls = t[EMBEDDING].is_null().to_numpy(zero_copy_only=False)
    assert (nulls == ~images[HAS_IMAGE].to_numpy()).all()


def test_model_image_size_and_summary(catalogue, tmp_path):
    from hm_utils.export.export import export_summary
    from hm_utils.model.siamese import model_image_size
    assert model_image_size(_tiny_model()) == SIZE
    assert model_image_size(_tiny_combined()) == SIZE
    articles, images = catalogue
    rep, _ = _export(_tiny_model(), articles, images, tmp_path / "s.parquet")
    df = export_summary({"image_only": rep})
    assert df.loc[0, ["rows", "embedded", "no_image", "unreadable", "dim"]].tolist() == [14, 10, 2, 2, 6]


def test_verify_export_detects_a_different_model(catalogue, tmp_path):
    from hm_utils.export.export import verify_export
    articles, images = catalogue
    model = _tiny_model()
    out = tmp_path / "v.parquet"
    _export(model, articles, images, out)
    ok = verify_export(model, out, images, image_size=SIZE, n=5)
    assert ok["checked"] == 5 and ok["max_abs_diff"] < 1e-5
    other = verify_export(_tiny_model(seed=9), out, images, image_size=SIZE, n=5)
    assert other["max_abs_diff"] > 1e-3


def test_many_models_share_one_backbone_pass(catalogue, tmp_path):
    """Two towers over one backbone (as notebook 03 builds them): one pass, same embeddings as separate exports."""
    from hm_utils.export.export import export_embeddings_many
    from hm_utils.model.inference import shared_backbone
    from hm_utils.model.siamese import build_backbone, build_embedding_model

    articles, images = catalogue
    keras.utils.set_random_seed(3)
    bb = build_backbone("small_cnn", SIZE, "avg")
    models = {"image_only": build_embedding_model("image_only", image_size=SIZE, embedding_dim=4, backbone_model=bb,
                                                  hidden_units=8),
              "combined": build_embedding_model("combined", image_size=SIZE, embedding_dim=3, backbone_model=bb,
                                                hidden_units=8)}
    assert shared_backbone(models) is not None
    assert shared_backbone({"a": models["image_only"], "b": _tiny_model()}) is None
    tab = np.linspace(0, 1, len(articles) * 11, dtype=np.float32).reshape(-1, 11)
    outs = {n: tmp_path / f"{n}.parquet" for n in models}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        reps = export_embeddings_many(models, articles, images, outs, image_size=SIZE, batch_size=3, shard_size=5,
                                      include_article_columns={"combined": True}, tabular=tab, progress=False)
    assert not any("shared-backbone" in str(w.message) for w in rec)
    assert reps["image_only"].embedding_dim == 4 and reps["combined"].embedding_dim == 3
    assert reps["combined"].n_unreadable == 2
    assert list(pd.read_parquet(outs["combined"]).columns) == list(articles.columns) + [EMBEDDING]
    for n, m in models.items():
        single = tmp_path / f"single_{n}.parquet"
        _export(m, articles, images, single, tabular=tab, include_article_columns=(n == "combined"))
        a, b = _arrays(outs[n]), _arrays(single)
        assert (a[2] == b[2]).all()
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)


def test_traced_call_is_reused_and_does_not_keep_the_model_alive(catalogue, tmp_path):
    import gc
    import weakref

    from hm_utils.model.inference import cached_traces

    articles, images = catalogue
    model = _tiny_model()
    _export(model, articles, images, tmp_path / "a.parquet")
    first = cached_traces(model)
    _export(model, articles, images, tmp_path / "b.parquet")
    assert len(cached_traces(model)) == 1 and all(cached_traces(model)[k] is v for k, v in first.items())
    ref = weakref.ref(model)
    del model, first
    gc.collect()
    assert ref() is None  # the cache holds the model weakly


# ----------------------------------------------------- compiled tower path ---
def _tower(seed: int = 0, dim: int = 4):
    from hm_utils.model.siamese import build_embedding_model

    keras.utils.set_random_seed(seed)
    return build_embedding_model("image_only", "small_cnn", SIZE, embedding_dim=dim, pooling="avg", hidden_units=8)


def _plain(model, images, ids):
    """The model's own output for the given article ids (decoded like the export)."""
    from hm_utils.data.images import load_image

    paths = images.set_index(ARTICLE_ID).loc[ids, "abs_path"]
    batch = np.stack([load_image(p, SIZE) for p in paths])
    return np.asarray(model({"image": batch}, training=False))


def test_tower_backbone_is_compiled_once_and_recompiled_after_training(catalogue, tmp_path):
    import gc
    import weakref

    from hm_utils.model.inference import cached_traces

    articles, images = catalogue
    model = _tower()
    backbone = model.get_layer("backbone")
    rep, _ = _export(model, articles, images, tmp_path / "a.parquet", precision="float32")
    assert rep.precision == "float32"
    compiled = {k: v for k, v in cached_traces(backbone).items() if k[0] == "compiled"}
    assert len(compiled) == 1
    _export(model, articles, images, tmp_path / "b.parquet", precision="float32")
    again = {k: v for k, v in cached_traces(backbone).items() if k[0] == "compiled"}
    assert again.keys() == compiled.keys() and all(again[k] is compiled[k] for k in compiled)

    # "train" the backbone: the next export must use the new weights, not the frozen old graph
    conv = backbone.get_layer("small_cnn").get_layer("conv1")
    conv.set_weights([w + 0.05 for w in conv.get_weights()])
    _export(model, articles, images, tmp_path / "c.parquet", precision="float32")
    assert len([k for k in cached_traces(backbone) if k[0] == "compiled"]) == 2
    ids, mat, has = _arrays(tmp_path / "c.parquet")
    _, old, _ = _arrays(tmp_path / "a.parquet")
    assert np.abs(mat[has] - old[has]).max() > 1e-4
    np.testing.assert_allclose(mat[has][:3], _plain(model, images, ids[has][:3]), rtol=1e-5, atol=1e-6)

    refs = [weakref.ref(model), weakref.ref(backbone)]
    del model, backbone, conv, compiled, again
    gc.collect()
    assert all(r() is None for r in refs)  # the caches hold the model weakly


def test_compiled_mismatch_falls_back_to_the_whole_models(catalogue, tmp_path, monkeypatch):
    import hm_utils.model.inference as inference

    articles, images = catalogue
    model = _tower(seed=1)
    monkeypatch.setattr(inference, "FLOAT32_TOLERANCE", -1.0)
    rep, rec = _export(model, articles, images, tmp_path / "e.parquet", precision="float32")
    assert any("running each model whole" in str(w.message) for w in rec)
    assert rep.precision == "float32" and rep.n_embedded == 10
    ids, mat, has = _arrays(tmp_path / "e.parquet")
    np.testing.assert_allclose(mat[has], _plain(model, images, ids[has]), rtol=1e-5, atol=1e-6)


def test_precision_is_recorded_and_shards_of_another_precision_are_not_reused(catalogue, tmp_path):
    from hm_utils.model.numeric_precision import cpu_has_fast_bfloat16

    articles, images = catalogue
    model = _tower(seed=2)
    out = tmp_path / "p.parquet"
    rep, _ = _export(model, articles, images, out, precision="float32", keep_shards=True)
    meta = json.loads(pq.read_schema(out).metadata[b"hm_embeddings"])
    assert rep.precision == meta["precision"] == "float32"
    fp32 = _arrays(out)
    if not cpu_has_fast_bfloat16():
        pytest.skip("no AMX-BF16 on this CPU: the bfloat16 half of this test needs it")
    rep, _ = _export(model, articles, images, out, precision="bfloat16")
    assert rep.shards_reused == 0 and rep.precision == "bfloat16"
    assert json.loads(pq.read_schema(out).metadata[b"hm_embeddings"])["precision"] == "bfloat16"
    bf16 = _arrays(out)
    assert (bf16[2] == fp32[2]).all()
    rel = np.abs(bf16[1][bf16[2]] - fp32[1][fp32[2]]).max() / np.abs(fp32[1][fp32[2]]).max()
    assert 0 < rel < 5e-2


@pytest.mark.skipif(not __import__("hm_utils.model.numeric_precision", fromlist=["x"]).cpu_has_fast_bfloat16(),
                    reason="no AMX-BF16 on this CPU: precision 'auto' means float32 here")
def test_auto_precision_falls_back_to_float32_when_bfloat16_drifts(catalogue, tmp_path, monkeypatch):
    import hm_utils.model.inference as inference

    articles, images = catalogue
    model = _tower(seed=3)
    # as it is, bfloat16 passes the check on this model
    rep, rec = _export(model, articles, images, tmp_path / "ok.parquet", precision="auto")
    assert rep.precision == "bfloat16" and not any("differ from float32" in str(w.message) for w in rec)

    monkeypatch.setattr(inference, "BFLOAT16_MIN_COSINE", 1.01)  # no cosine can pass
    rep, rec = _export(model, articles, images, tmp_path / "auto.parquet", precision="auto")
    assert rep.precision == "float32"
    assert any("exporting in float32 instead" in str(w.message) for w in rec)
    ids, mat, has = _arrays(tmp_path / "auto.parquet")
    np.testing.assert_allclose(mat[has], _plain(model, images, ids[has]), rtol=1e-5, atol=1e-6)

    rep, rec = _export(model, articles, images, tmp_path / "asked.parquet", precision="bfloat16")
    assert rep.precision == "bfloat16"
    assert any("kept because precision='bfloat16' was asked" in str(w.message) for w in rec)


def test_row_cosines_by_hand():
    from hm_utils.model.numeric_precision import row_cosines

    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [0.0, 0.0], [1.0, 0.0], [-3.0, -4.0]])
    np.testing.assert_allclose(row_cosines(a, b), [0.0, 1.0, 1.0, 0.0, -1.0])


def test_export_settings_from_the_profile_and_the_parameters():
    from hm_utils.core.config import get_profile
    from hm_utils.export.export import ExportSettings

    tiny = get_profile("tiny")
    s = ExportSettings.from_profile(tiny)                   # every parameter None: the profile's / the defaults
    assert s.to_dict() == {"batch_size": tiny.batch_size, "shard_size": 2048, "reduced_scale": True,
                           "variance_share": 0.95, "precision": "auto", "use_features": True}
    s = ExportSettings.from_profile(tiny, batch_size=7, shard_size=100, reduced_scale=0, variance_share=0.5,
                                    precision="float32", use_features=False)
    assert (s.batch_size, s.shard_size, s.reduced_scale, s.variance_share, s.precision, s.use_features) == \
        (7, 100, False, 0.5, "float32", False)
    with pytest.raises(ValueError, match="fp16"):
        ExportSettings.from_profile(tiny, precision="fp16")
    with pytest.raises(ValueError, match="shard_size"):
        ExportSettings(shard_size=0)
    with pytest.raises(ValueError, match="variance_share"):
        ExportSettings(variance_share=1.5)
