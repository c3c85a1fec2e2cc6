"""Embedding export (every article through a trained embedding model, streamed
and resumable) and embedding loading (our files and the original notebook's).

Export
------
:func:`export_embeddings` sends every article's image through a one-tower
embedding model in batches read from disk by :func:`hm_utils.images.image_dataset`
(tf.data, parallel decoding at reduced JPEG scale). Articles are cut into
consecutive *shards* of ``shard_size`` rows; each finished shard is written
atomically to ``<out>.shards/part-NNNNN.parquet`` and recorded in
``<out>.shards/manifest.json``. A run that is interrupted (killed, out of
memory, an exception) leaves the finished shards behind; the next call with the
same model, articles and settings reuses them without recomputing and ends with
the same final file as an uninterrupted run. The final file is assembled from
the shards, written to a temporary name and renamed, and the shard folder is
removed. :func:`export_embeddings_many` exports several models in one pass
over the images (each image decoded once; a backbone the models share runs
once per batch, only the heads per model).

Output files (CONTRIBUTING.md):

* image-only model -> ``article_embeddings.parquet``: ``article_id`` int32,
  ``embedding`` list<float32> (null for an article without a usable image);
* image+tabular model -> ``combined_article_embeddings.parquet``: all the
  articles.csv columns plus ``embedding``.

An article without an image gets a null embedding (counted in the report);
an image that cannot be decoded (truncated JPEG, not an image at all, missing
file) gets a warning naming the article id and a null embedding, and the export
goes on.

Loading
-------
:func:`load_embeddings` reads our files and the original notebook's published
ones (column spelled ``embeding``, missing embeddings stored as ``[nan]``,
``article_id`` as int or zero-padded string) into
``(article_ids int32 [n], matrix float32 [n, d], has_embedding bool [n])``.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .config import ARTICLE_ID, EMBEDDING, EMBEDDING_ORIGINAL, HAS_IMAGE, IMAGE_PATH
from .storage import read_json, write_json, write_parquet

MANIFEST = "manifest.json"
STATUS_OK, STATUS_NO_IMAGE, STATUS_UNREADABLE = 0, 1, 2


class UnreadableImageWarning(UserWarning):
    """An article's image could not be decoded; it gets a null embedding."""


@dataclass
class ExportReport:
    """What :func:`export_embeddings` did.

    ``n_articles`` rows written (one per article); ``n_embedded`` with an
    embedding; ``n_missing_image`` without an image (``has_image`` False);
    ``n_unreadable`` whose image could not be decoded (ids in
    ``unreadable_ids``); ``embedding_dim`` d; ``shards_total`` and
    ``shards_reused`` (finished by an earlier, interrupted run);
    ``seconds`` wall time of this call; ``images_per_second`` images embedded
    by this call per second (reused shards not counted); ``precision`` what the
    backbone computed in ("float32" or "bfloat16", see :mod:`hm_utils.inference`).
    """
    path: str
    n_articles: int
    n_embedded: int
    n_missing_image: int
    n_unreadable: int
    unreadable_ids: list = field(default_factory=list)
    embedding_dim: int | None = None
    shards_total: int = 0
    shards_reused: int = 0
    images_computed: int = 0
    seconds: float = 0.0
    images_per_second: float = 0.0
    precision: str = "float32"

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ helpers ---
def shard_dir_for(out_path: str | Path) -> Path:
    """Default shard folder of an export: ``<out_path>.shards`` beside the output."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".shards")


def _image_paths(articles: pd.DataFrame, images: pd.DataFrame, data_dir) -> tuple[np.ndarray, np.ndarray]:
    """(abs path str or '' [n], has_image bool [n]) aligned with ``articles`` rows."""
    if ARTICLE_ID not in images.columns or HAS_IMAGE not in images.columns:
        raise ValueError(f"images frame needs columns {ARTICLE_ID!r} and {HAS_IMAGE!r}; got {list(images.columns)}")
    if "abs_path" in images.columns:
        paths = images["abs_path"].astype(str)
    elif IMAGE_PATH in images.columns:
        if data_dir is None:
            raise ValueError("images frame has relative 'path' but no 'abs_path'; pass data_dir "
                             "(or use hm_utils.workdir.load_images, which adds abs_path)")
        paths = images[IMAGE_PATH].astype(str).map(lambda p: str(Path(data_dir) / p))
    else:
        raise ValueError(f"images frame needs an 'abs_path' or {IMAGE_PATH!r} column; got {list(images.columns)}")
    if images[ARTICLE_ID].duplicated().any():
        dup = images.loc[images[ARTICLE_ID].duplicated(), ARTICLE_ID].iloc[0]
        raise ValueError(f"images frame lists article {dup} more than once")
    lookup = pd.DataFrame({ARTICLE_ID: images[ARTICLE_ID].astype(np.int64).to_numpy(),
                           "_path": paths.to_numpy(dtype=object),
                           "_has": images[HAS_IMAGE].fillna(False).astype(bool).to_numpy()})
    ids = pd.DataFrame({ARTICLE_ID: articles[ARTICLE_ID].astype(np.int64).to_numpy()})
    merged = ids.merge(lookup, on=ARTICLE_ID, how="left", validate="one_to_one")
    has = merged["_has"].fillna(False).astype(bool).to_numpy()
    path = np.where(has, merged["_path"].fillna("").astype(str).to_numpy(dtype=object), "")
    return path.astype(object), has


def _is_keras_model(model) -> bool:
    try:
        import keras
        return isinstance(model, keras.Model)
    except ImportError:  # pragma: no cover
        return False


def _input_names(model) -> list[str]:
    """The names of a keras model's inputs (the keys when it takes a dict)."""
    inp = getattr(model, "input", None)
    if isinstance(inp, dict):
        return list(inp)
    return [str(getattr(t, "name", "")).split(":")[0] for t in getattr(model, "inputs", None) or []]


def is_combined_model(model) -> bool:
    """True when ``model`` takes a dict with a ``tabular`` input (the image+tabular model)."""
    if not _is_keras_model(model):
        return bool(getattr(model, "combined", False))
    return "tabular" in _input_names(model) or len(getattr(model, "inputs", []) or []) > 1


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


_model_digest = model_digest  # the old private name, kept for existing callers


_TRACED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


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
    """``{name: (backbone, head)}`` when every model is an ``hm_utils.model`` tower
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
    """``(backbone, {name: head})`` when every model is an ``hm_utils.model`` tower
    (:func:`tower_parts`) and all backbones hold identical weights (the frozen
    ImageNet/untrained backbone notebook 03 shares between the two variants);
    else None. Then the backbone runs once per batch for all models."""
    parts = tower_parts(models) if len(models) >= 2 else None
    if parts is None or len({_model_digest(b) for b, _ in parts.values()}) != 1:
        return None
    return next(iter(parts.values()))[0], {n: h for n, (_, h) in parts.items()}


def _backbone_call(backbone, image_size, precision: str, digest: str):
    """The backbone compiled for inference (:func:`hm_utils.inference.compile_for_inference`:
    batch norms folded, weights frozen, bfloat16 where asked): images float32
    [B,H,W,3] -> features float32 [B,F]. Cached with the backbone, keyed by its
    weights' digest, so a retrained backbone is compiled again."""
    import tensorflow as tf

    from .inference import compile_for_inference

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


# First-batch check of the compiled path against the plain float32 models, on up
# to CHECK_IMAGES images. float32: largest |difference| / max(1, largest |plain
# value|) must stay <= FLOAT32_TOLERANCE, else every model runs whole (traced,
# float32). bfloat16: every embedding's cosine to the plain one must be >=
# BFLOAT16_MIN_COSINE; with precision "auto" a lower one switches the backbones to
# float32 (a model whose head amplifies small feature differences, such as the
# demo's image-only model on its untrained backbone: cosine 0.92-1.0), with
# "bfloat16" asked for explicitly it is only a warning.
CHECK_IMAGES = 8
FLOAT32_TOLERANCE = 1e-4
BFLOAT16_MIN_COSINE = 0.995


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`hm_utils.similarity.pairwise_cosine` of two float [n, d] arrays, except
    that two all-zero rows (a relu embedding that is zero either way) count as equal: 1."""
    from .similarity import pairwise_cosine

    both_zero = ~np.asarray(a).any(axis=1) & ~np.asarray(b).any(axis=1)
    return np.where(both_zero, 1.0, pairwise_cosine(a, b))


def _make_embed_fn(models: dict, combined: dict, image_size: tuple[int, int] = (None, None),
                   n_tabular: int | None = None, precision: str = "float32", strict: bool = True) -> Callable:
    """A function (images float32 [B,H,W,3], tabular float32 [B,11] or None) ->
    ``{name: np.float32 [B, d]}`` for every model; its ``state["precision"]``
    says what the backbones computed in, ``state["check_min_cosine"]`` the
    first-batch agreement with the plain float32 models (bfloat16 only).

    ``hm_utils.model`` towers (:func:`tower_parts`) run as a compiled backbone
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
        digest_by_object = {i: _model_digest(bb) for i, bb in by_object.items()}
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
        worst = {n: float(_row_cosines(out[n][:k], ref[n]).min()) for n in out}
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


def _fingerprint(article_ids: np.ndarray, has_image: np.ndarray, settings: dict) -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(article_ids.astype(np.int64)).tobytes())
    h.update(np.ascontiguousarray(has_image.astype(np.int8)).tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _read_manifest(shard_dir: Path, fingerprint: str) -> dict:
    """The manifest of an earlier run with the same fingerprint, else a fresh one
    (shards of a different export are deleted, with a warning)."""
    mpath = shard_dir / MANIFEST
    if mpath.is_file():
        try:
            man = read_json(mpath)
        except (OSError, ValueError):
            man = None
        if man and man.get("fingerprint") == fingerprint:
            return man
        warnings.warn(f"{shard_dir} holds shards of a different export (other model, articles or "
                      "settings); starting over", stacklevel=3)
    if shard_dir.exists():
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    return {"fingerprint": fingerprint, "shards": {}}


def _shard_file(shard_dir: Path, i: int) -> Path:
    return shard_dir / f"part-{i:05d}.parquet"


def _emb_column(name: str) -> str:
    return f"{EMBEDDING}__{name}"


def _list_array(vectors: list, ok: np.ndarray) -> pa.Array:
    """list<float32> array from per-row vectors (None where ``ok`` is False), via one flat buffer."""
    lengths = np.array([0 if v is None else v.shape[0] for v in vectors], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    present = [v for v in vectors if v is not None]
    values = np.concatenate(present).astype(np.float32) if present else np.zeros(0, np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()), mask=pa.array(~ok))


def _embed_shard(ids, paths, has, tab, names, *, embed_fn, dataset_fn, image_size, batch_size, reduced_scale,
                 on_batch) -> tuple[pa.Table, list[int], dict]:
    """Embed one shard: (shard table, unreadable article ids, {name: embedding dim or None})."""
    n = len(ids)
    status = np.where(has, STATUS_UNREADABLE, STATUS_NO_IMAGE).astype(np.int8)
    rows = np.nonzero(has)[0]
    vectors = {name: [None] * n for name in names}
    dims = {name: None for name in names}
    if rows.size:
        ds = dataset_fn([str(p) for p in paths[rows]], image_size, batch_size, reduced_scale=reduced_scale)
        for idx, imgs in ds:
            idx = np.asarray(idx, dtype=np.int64)
            local = rows[idx]
            out = embed_fn(imgs, None if tab is None else tab[local])
            for name in names:
                emb = out[name]
                if emb.ndim != 2 or emb.shape[0] != len(idx):
                    raise ValueError(f"model {name!r} returned shape {emb.shape} for a batch of {len(idx)} "
                                     "images; expected [batch, embedding_dim]")
                dims[name] = int(emb.shape[1])
                for j, r in enumerate(local):
                    vectors[name][r] = emb[j]
            status[local] = STATUS_OK
            on_batch(len(idx))
    unreadable = [int(a) for a in ids[status == STATUS_UNREADABLE]]
    ok = status == STATUS_OK
    cols = {ARTICLE_ID: pa.array(ids.astype(np.int32)), "status": pa.array(status)}
    cols.update({_emb_column(name): _list_array(vectors[name], ok) for name in names})
    return pa.table(cols, schema=_shard_schema(names)), unreadable, dims


def _shard_schema(names) -> pa.Schema:
    return pa.schema([pa.field(ARTICLE_ID, pa.int32()), pa.field("status", pa.int8())]
                     + [pa.field(_emb_column(n), pa.list_(pa.float32())) for n in names])


# ------------------------------------------------------------------- export ---
def write_embedding_file(path, articles: pd.DataFrame, article_ids, column, include_article_columns: bool,
                         meta: dict) -> Path:
    """Write one embedding file (CONTRIBUTING.md) atomically: ``article_id`` int32 (``article_ids``,
    [n]) + ``embedding`` (``column``, a list<float32> array of n rows, null without an embedding), or,
    with ``include_article_columns``, every column of ``articles`` (n rows, same order) + ``embedding``.
    ``meta`` (embedding_dim, image_size, reduced_scale, precision) goes into the schema metadata under
    ``hm_embeddings``. Used by the image export and by :mod:`hm_utils.feature_export`."""
    if include_article_columns:
        base = pa.Table.from_pandas(articles.reset_index(drop=True), preserve_index=False)
        if EMBEDDING in base.column_names:
            base = base.drop_columns([EMBEDDING])
        final = base.append_column(pa.field(EMBEDDING, pa.list_(pa.float32())), column)
    else:
        final = pa.table({ARTICLE_ID: article_ids, EMBEDDING: column})
    final = final.replace_schema_metadata({**(final.schema.metadata or {}),
                                           b"hm_embeddings": json.dumps(meta).encode()})
    return write_parquet(final, path)


def export_embeddings(model, articles: pd.DataFrame, images: pd.DataFrame, out_path: str | Path, *,
                      image_size: tuple[int, int], batch_size: int = 64, shard_size: int = 2048,
                      include_article_columns: bool = False, tabular: np.ndarray | None = None,
                      shard_dir: str | Path | None = None, reduced_scale: bool = True,
                      data_dir: str | Path | None = None, dataset_fn: Callable | None = None,
                      progress: bool = True, keep_shards: bool = False, precision: str = "float32") -> ExportReport:
    """Embed every article and write one parquet row per article (streamed, resumable).

    Inputs:
      ``model``: a one-tower keras embedding model (``hm_utils.model``): the
        image-only one takes ``image`` float32 [B, H, W, 3] raw 0..255 pixels,
        the combined one ``{"image": ..., "tabular": float32 [B, 11]}``; it returns
        float32 [B, d]. Any callable with the same behaviour also works.
      ``articles``: DataFrame with ``article_id`` (int) and, for
        ``include_article_columns``, the articles.csv columns; output row order.
      ``images``: DataFrame ``article_id``, ``has_image`` bool and ``abs_path``
        (as ``hm_utils.workdir.load_images`` returns) or ``path`` + ``data_dir``.
      ``out_path``: the parquet file to write.
      ``image_size``: (height, width) in pixels the model expects.
      ``batch_size``: images per model call; ``shard_size``: articles per shard
        (the unit of resumption).
      ``include_article_columns``: write all article columns + ``embedding``
        (the combined file) instead of ``article_id`` + ``embedding``.
      ``tabular``: float32 [n_articles, 11] aligned with ``articles`` for the
        combined model; default ``hm_utils.model.tabular_features(articles)``.
      ``shard_dir``: default ``<out_path>.shards``; ``keep_shards`` keeps it after success.
      ``reduced_scale``: let the JPEG decoder downscale by 2/4/8 while decoding
        when the file is at least that much larger than ``image_size``.
      ``dataset_fn``: ``(paths, image_size, batch_size, reduced_scale=) ->``
        iterable of ``(index int [B], images float32 [B,H,W,3])`` with
        unreadable files left out; default ``hm_utils.images.image_dataset``.
      ``precision``: what an ``hm_utils.model`` tower's backbone computes in:
        "float32" (default; equal to the model up to float rounding),
        "bfloat16" or "auto" (bfloat16 on a CPU with AMX-BF16 and no GPU: about
        5x faster for ResNet50 there, embeddings within about 1e-2 relative of
        float32; see :mod:`hm_utils.inference`). The backbone always runs with its
        batch norms folded into the convolutions and its weights frozen.

    Output: an :class:`ExportReport`. The file has ``article_id`` int32 and
    ``embedding`` list<float32> (null: no image, or image unreadable -> a
    :class:`UnreadableImageWarning` naming the article ids). See
    :func:`export_embeddings_many` for several models in one pass.
    """
    reports = export_embeddings_many(
        {"model": model}, articles, images, {"model": out_path}, image_size=image_size, batch_size=batch_size,
        shard_size=shard_size, include_article_columns={"model": include_article_columns}, tabular=tabular,
        shard_dir=shard_dir, reduced_scale=reduced_scale, data_dir=data_dir, dataset_fn=dataset_fn,
        progress=progress, keep_shards=keep_shards, precision=precision)
    return reports["model"]


def export_embeddings_many(models: dict, articles: pd.DataFrame, images: pd.DataFrame, out_paths: dict, *,
                           image_size: tuple[int, int], batch_size: int = 64, shard_size: int = 2048,
                           include_article_columns: dict | None = None, tabular: np.ndarray | None = None,
                           shard_dir: str | Path | None = None, reduced_scale: bool = True,
                           data_dir: str | Path | None = None, dataset_fn: Callable | None = None,
                           progress: bool = True, keep_shards: bool = False,
                           precision: str = "float32") -> dict[str, ExportReport]:
    """:func:`export_embeddings` for several models in one pass over the images.

    ``models`` ``{name: model}`` and ``out_paths`` ``{name: parquet path}``
    (same keys); ``include_article_columns`` ``{name: bool}`` (default False).
    Every image is decoded once for all models; when the models share a
    backbone with identical weights (:func:`shared_backbone`: the frozen
    backbone of notebook 03's two variants) it also runs once per batch, and
    only the heads run per model. ``precision`` as in :func:`export_embeddings`. Shards (one column per model) live in
    ``shard_dir`` (default ``<first out_path>.shards``) and make the export
    resumable as a whole. Output: ``{name: ExportReport}`` (``seconds`` and
    ``images_per_second`` are those of the shared pass).
    """
    names = list(models)
    if not names:
        raise ValueError("no models to export")
    if set(out_paths) != set(names):
        raise ValueError(f"out_paths keys {sorted(out_paths)} differ from the models {sorted(names)}")
    include = {n: bool((include_article_columns or {}).get(n, False)) for n in names}
    out_paths = {n: Path(out_paths[n]) for n in names}
    if ARTICLE_ID not in articles.columns:
        raise ValueError(f"articles frame has no {ARTICLE_ID!r} column; got {list(articles.columns)}")
    if articles[ARTICLE_ID].duplicated().any():
        dup = articles.loc[articles[ARTICLE_ID].duplicated(), ARTICLE_ID].iloc[0]
        raise ValueError(f"articles frame lists article {dup} more than once")
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch_size and shard_size must be >= 1, got {batch_size}, {shard_size}")
    if dataset_fn is None:
        from .images import image_dataset as dataset_fn
    t0 = time.perf_counter()
    ids = articles[ARTICLE_ID].astype(np.int64).to_numpy()
    paths, has = _image_paths(articles, images, data_dir)
    combined = {n: is_combined_model(m) for n, m in models.items()}
    tab = None
    if any(combined.values()):
        if tabular is None:
            from .model import tabular_features
            tabular = tabular_features(articles)
        tab = np.asarray(tabular, dtype=np.float32)
        if tab.shape[0] != len(articles):
            raise ValueError(f"tabular has {tab.shape[0]} rows for {len(articles)} articles")
    from .inference import resolve_precision
    requested, precision = precision, resolve_precision(precision)

    settings = {"image_size": list(image_size), "shard_size": int(shard_size), "reduced_scale": bool(reduced_scale),
                "precision": precision,
                "models": {n: [combined[n], _model_digest(models[n])] for n in names},
                "tabular": hashlib.sha1(np.ascontiguousarray(tab).tobytes()).hexdigest() if tab is not None else None,
                "paths": hashlib.sha1("\n".join(map(str, paths)).encode()).hexdigest()}
    sdir = Path(shard_dir) if shard_dir is not None else shard_dir_for(out_paths[names[0]])
    manifest = _read_manifest(sdir, _fingerprint(ids, has, settings))
    n_shards = max(1, -(-len(ids) // shard_size))
    manifest["n_shards"] = n_shards
    # a resumed export keeps the precision its first shards were computed in
    used_before = manifest.get("precision_used")
    embed_fn = _make_embed_fn(models, combined, tuple(image_size), None if tab is None else tab.shape[1],
                              precision=used_before or precision, strict=requested != "auto" or bool(used_before))

    done = {int(k) for k in manifest["shards"] if _shard_file(sdir, int(k)).is_file()}
    todo = [i for i in range(n_shards) if i not in done]
    n_images_todo = int(sum(has[i * shard_size:(i + 1) * shard_size].sum() for i in todo))
    from tqdm.auto import tqdm
    label = ", ".join(p.name for p in out_paths.values())
    bar = tqdm(total=len(ids), desc=f"export {label}", unit="article", disable=not progress)
    bar.update(len(ids) - sum(min(shard_size, len(ids) - i * shard_size) for i in todo))
    computed = 0
    t_images = time.perf_counter()

    def on_batch(k):
        nonlocal computed
        computed += k
        rate = computed / max(time.perf_counter() - t_images, 1e-9)
        bar.set_postfix({"images/s": f"{rate:.1f}", "images": f"{computed}/{n_images_todo}"}, refresh=False)

    try:
        for i in todo:
            sl = slice(i * shard_size, (i + 1) * shard_size)
            before = computed
            table, unreadable, dims = _embed_shard(
                ids[sl], paths[sl], has[sl], None if tab is None else tab[sl], names, embed_fn=embed_fn,
                dataset_fn=dataset_fn, image_size=tuple(image_size), batch_size=batch_size,
                reduced_scale=reduced_scale, on_batch=on_batch)
            if unreadable:
                shown = ", ".join(map(str, unreadable[:20])) + (" ..." if len(unreadable) > 20 else "")
                warnings.warn(f"{len(unreadable)} image(s) could not be decoded; these articles get a null "
                              f"embedding: {shown}", UnreadableImageWarning, stacklevel=3)
            write_parquet(table, _shard_file(sdir, i))
            manifest["precision_used"] = getattr(embed_fn, "state", {}).get("precision", precision)
            manifest["shards"][str(i)] = {"rows": table.num_rows, "embedded": computed - before,
                                          "unreadable": unreadable, "dims": dims}
            write_json(manifest, sdir / MANIFEST)
            bar.update(table.num_rows)
    finally:
        bar.close()
    elapsed_images = time.perf_counter() - t_images

    used_precision = getattr(embed_fn, "state", {}).get("precision", precision)
    schema = _shard_schema(names)
    shards = pa.concat_tables([pq.read_table(_shard_file(sdir, i), schema=schema)
                               for i in range(n_shards)]).combine_chunks()
    if shards.num_rows != len(ids) or not np.array_equal(shards[ARTICLE_ID].to_numpy(), ids.astype(np.int32)):
        raise RuntimeError(f"the shards in {sdir} do not line up with the articles; delete the folder and rerun")
    status = shards["status"].to_numpy()
    unreadable_ids = [a for m in (manifest["shards"][str(i)] for i in range(n_shards)) for a in m["unreadable"]]
    reports = {}
    for name in names:
        dims = {int(m["dims"][name]) for m in manifest["shards"].values() if m["dims"].get(name) is not None}
        if len(dims) > 1:
            raise RuntimeError(f"shards in {sdir} have different embedding sizes {sorted(dims)} for {name!r}; "
                               "delete the folder and rerun")
        dim = next(iter(dims), None)
        write_embedding_file(out_paths[name], articles, shards[ARTICLE_ID], shards[_emb_column(name)], include[name],
                             {"embedding_dim": dim, "image_size": list(image_size),
                              "reduced_scale": bool(reduced_scale), "precision": used_precision})
        reports[name] = ExportReport(
            path=str(out_paths[name]), n_articles=len(ids), n_embedded=int((status == STATUS_OK).sum()),
            n_missing_image=int((status == STATUS_NO_IMAGE).sum()),
            n_unreadable=int((status == STATUS_UNREADABLE).sum()), unreadable_ids=list(unreadable_ids),
            embedding_dim=dim, shards_total=n_shards, shards_reused=n_shards - len(todo), images_computed=computed,
            seconds=time.perf_counter() - t0,
            images_per_second=computed / elapsed_images if computed and elapsed_images > 0 else 0.0,
            precision=used_precision)
    if not keep_shards:
        shutil.rmtree(sdir, ignore_errors=True)
    return reports


# ------------------------------------------------------------------ loading ---
def _parse_article_ids(col: pa.ChunkedArray, path) -> np.ndarray:
    s = col.to_pandas()
    if pd.api.types.is_integer_dtype(s.dtype) and not s.isna().any():
        out = s.to_numpy(dtype=np.int64)
    else:
        num = pd.to_numeric(s.astype(str).str.strip(), errors="coerce")
        bad = num.isna()
        if bad.any():
            raise ValueError(f"{path}: column {ARTICLE_ID!r} has values that are not article ids, "
                             f"e.g. {s[bad].iloc[0]!r} (row {int(np.argmax(bad.to_numpy()))})")
        out = num.to_numpy(dtype=np.int64)
    if out.size and (out.min() < 0 or out.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{path}: column {ARTICLE_ID!r} has ids outside the int32 range")
    return out.astype(np.int32)


def load_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read an embeddings parquet file into arrays.

    Accepts our files (``embedding`` list<float32>, null when missing) and the
    original notebook's published ones (``embeding``, missing stored as
    ``[nan]``; ``article_id`` int or zero-padded string; list<double> values).

    Output: ``(article_ids int32 [n], matrix float32 [n, d], has_embedding bool
    [n])`` in file order; rows without an embedding (null, empty, ``[nan]`` or
    all-NaN) are zero rows with ``has_embedding`` False. A row whose length
    differs from the others, or that is partly NaN, is a ValueError naming
    the file and the article id. Duplicate article ids are a ValueError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (embeddings are written by notebook 04_embedding_export)")
    names = pq.read_schema(path).names
    emb_col = EMBEDDING if EMBEDDING in names else EMBEDDING_ORIGINAL if EMBEDDING_ORIGINAL in names else None
    if emb_col is None or ARTICLE_ID not in names:
        raise ValueError(f"{path}: expected columns {ARTICLE_ID!r} and {EMBEDDING!r} (or the original "
                         f"{EMBEDDING_ORIGINAL!r}); found {names}")
    table = pq.read_table(path, columns=[ARTICLE_ID, emb_col])
    ids = _parse_article_ids(table[ARTICLE_ID], path)
    if len(ids) != len(np.unique(ids)):
        u, c = np.unique(ids, return_counts=True)
        raise ValueError(f"{path}: article {int(u[c > 1][0])} appears more than once")
    col = table[emb_col].combine_chunks() if table.num_rows else pa.array([], pa.list_(pa.float32()))
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type):
        col = col.cast(pa.list_(col.type.value_type))
    if not pa.types.is_list(col.type):
        raise ValueError(f"{path}: column {emb_col!r} is {col.type}, expected a list of floats")
    col = col.cast(pa.list_(pa.float32()))
    n = len(ids)
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    ends = np.cumsum(lengths)
    # NaN entries per row from a running count; an all-NaN row (incl. the original's [nan]) is missing
    nan_running = np.concatenate([[0], np.cumsum(np.isnan(values))])
    nan_count = nan_running[ends] - nan_running[ends - lengths]
    present = (lengths > 0) & (nan_count < lengths)
    d = int(np.bincount(lengths[present]).argmax()) if present.any() else 0
    wrong = present & (lengths != d)
    if wrong.any():
        r = int(np.argmax(wrong))
        raise ValueError(f"{path}: article {int(ids[r])} has an embedding of length {int(lengths[r])}, "
                         f"the others have {d}")
    partial = present & (nan_count > 0)
    if partial.any():
        r = int(np.argmax(partial))
        raise ValueError(f"{path}: article {int(ids[r])} has an embedding with NaN entries")
    matrix = np.zeros((n, d), dtype=np.float32)
    if d and present.any():
        take = np.repeat(present, lengths)
        matrix[present] = values[take].reshape(-1, d)
    return ids, matrix, present


def align_embeddings(article_ids, matrix, has_embedding, to_ids) -> tuple[np.ndarray, np.ndarray]:
    """Reorder loaded embeddings to the article order ``to_ids``.

    Inputs: the three arrays of :func:`load_embeddings` and ``to_ids`` int [m].
    Output: ``(matrix float32 [m, d], has_embedding bool [m])``; ids absent from
    the file get a zero row and False.
    """
    article_ids = np.asarray(article_ids, dtype=np.int64)
    to_ids = np.asarray(to_ids, dtype=np.int64)
    order = np.argsort(article_ids, kind="stable")
    sorted_ids = article_ids[order]
    pos = np.searchsorted(sorted_ids, to_ids)
    pos_c = np.minimum(pos, max(len(sorted_ids) - 1, 0))
    found = (len(sorted_ids) > 0) & (sorted_ids[pos_c] == to_ids) if len(sorted_ids) else np.zeros(len(to_ids), bool)
    rows = order[pos_c]
    out = np.zeros((len(to_ids), matrix.shape[1]), dtype=np.float32)
    out[found] = matrix[rows[found]]
    has = np.zeros(len(to_ids), dtype=bool)
    has[found] = np.asarray(has_embedding, dtype=bool)[rows[found]]
    return out, has


# ---------------------------------------------------------------- summaries ---
def model_image_size(model) -> tuple[int, int]:
    """(height, width) in pixels of a keras embedding model's ``image`` input."""
    inp = getattr(model, "input", None)
    t = inp["image"] if isinstance(inp, dict) and "image" in inp else (model.inputs[0] if model.inputs else None)
    shape = tuple(getattr(t, "shape", ()) or ())
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise ValueError(f"cannot read the image size from the model's image input (shape {shape}); pass it")
    return int(shape[1]), int(shape[2])


def export_summary(reports: dict[str, ExportReport]) -> pd.DataFrame:
    """One row per exported file: file name, rows, embedded, missing (no image),
    unreadable, embedding size, shards (reused), precision, images/second, seconds."""
    rows = []
    for name, r in reports.items():
        rows.append({"model": name, "file": Path(r.path).name, "rows": r.n_articles, "embedded": r.n_embedded,
                     "no_image": r.n_missing_image, "unreadable": r.n_unreadable, "dim": r.embedding_dim,
                     "shards": r.shards_total, "shards_reused": r.shards_reused, "precision": r.precision,
                     "images_per_second": round(r.images_per_second, 1), "seconds": round(r.seconds, 2)})
    return pd.DataFrame(rows)


def verify_export(model, path: str | Path, images: pd.DataFrame, *, image_size: tuple[int, int],
                  n: int = 8, seed: int = 0, tabular: np.ndarray | None = None,
                  articles: pd.DataFrame | None = None, data_dir=None) -> dict:
    """Re-embed a few articles one by one and compare with the exported file.

    Takes ``n`` random articles (seeded) that have an embedding in ``path``,
    decodes each image with :func:`hm_utils.images.load_image` and runs
    ``model`` on it alone (batch of 1, no tf.data, no shards). For the combined
    model pass ``articles`` (same row order as the file) or ``tabular``.
    Output: ``{"checked": k, "max_abs_diff": float, "max_rel_diff": float,
    "min_cosine": float}`` (``max_rel_diff``: largest absolute difference over
    the largest absolute value of the fresh embeddings; the measure for a
    bfloat16 export, whose file differs from the float32 model by about 1e-2).
    """
    from .images import load_image
    from .similarity import pairwise_cosine

    ids, mat, has = load_embeddings(path)
    if not has.any():
        return {"checked": 0, "max_abs_diff": float("nan"), "max_rel_diff": float("nan"), "min_cosine": float("nan")}
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(np.flatnonzero(has), size=min(n, int(has.sum())), replace=False))
    frame = pd.DataFrame({ARTICLE_ID: ids})
    paths, _ = _image_paths(frame, images, data_dir)
    combined = is_combined_model(model)
    if combined and tabular is None:
        if articles is None:
            raise ValueError("verify_export needs articles (or tabular) for the combined model")
        from .model import tabular_features
        tabular = tabular_features(articles)
    fresh = []
    for r in rows:
        img = load_image(paths[r], image_size)[None]
        inputs = {"image": img, "tabular": np.asarray(tabular, np.float32)[r:r + 1]} if combined else (
            {"image": img} if isinstance(getattr(model, "input", None), dict) else img)
        fresh.append(np.asarray(model(inputs, training=False), dtype=np.float32)[0])
    fresh = np.stack(fresh)
    diff = float(np.abs(fresh - mat[rows]).max())
    return {"checked": int(len(rows)), "max_abs_diff": diff,
            "max_rel_diff": diff / max(float(np.abs(fresh).max()), 1e-12),
            "min_cosine": float(pairwise_cosine(fresh, mat[rows]).min())}
