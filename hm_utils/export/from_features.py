"""Embedding export from the stored backbone features (notebook 04's fast path).

A trained embedding model is a backbone and a head (:mod:`hm_utils.model.siamese`).
When its backbone is the frozen one whose features notebook 03 stored
(:mod:`hm_utils.model.feature_store`; same weights digest, image size and decoding), the
embedding of an article is its head applied to the stored features: no photo is
decoded again. :func:`export_from_features` does that in batches and writes
exactly the files :func:`hm_utils.export.export.export_embeddings_many` writes (same
columns, types, row order, null rules and file metadata), atomically, with the
same :class:`hm_utils.export.export.ExportReport`. :func:`features_usable` says whether
the store fits the models (and why not); :func:`export_embeddings_auto` takes
the features when they fit and the image export otherwise.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from hm_utils.core.config import (ARTICLE_ID, BACKBONE_FEATURES, EXPORT_FROM_FEATURES, EXPORT_FROM_IMAGES,  # noqa: E402
                                  FEATURES_INDEX, HAS_IMAGE)
from hm_utils.export.export import (ExportReport, ExportSettings, export_embeddings_many,  # noqa: E402
                                    write_embedding_file)
from hm_utils.model.feature_store import (article_fingerprint, decode_options, features_dir,  # noqa: E402
                                          load_features, read_manifest)
from hm_utils.model.inference import model_digest  # noqa: E402
from hm_utils.model.siamese import get_backbone, get_head, model_variant, tabular_features  # noqa: E402


class FeatureMismatchError(ValueError):
    """The stored features do not fit a model (other backbone weights, image size,
    articles or decoding): its embeddings must come from the images."""


def features_usable(models: dict, articles: pd.DataFrame, images: pd.DataFrame, work_dir, *,
                    name: str = BACKBONE_FEATURES, reduced_scale: bool | None = None,
                    fit: str | None = None) -> str | None:
    """None when the stored feature set ``name`` can stand for every model's backbone,
    else the reason (a sentence naming the model and what differs): no store; other
    articles, image paths or decoding (``reduced_scale`` None: any; ``fit`` None: the
    default of :mod:`hm_utils.data.images`); a model that is not a backbone + head tower; a
    backbone whose weights digest, image size or feature size differs from the stored
    ones (a fine-tuned backbone, say)."""
    try:
        manifest = read_manifest(work_dir)
    except (FileNotFoundError, ValueError) as exc:
        return str(exc)
    entry = manifest.get("features", {}).get(name)
    if entry is None:
        return f"the feature store {features_dir(work_dir)} has no set {name!r} ({sorted(manifest['features'])})"
    settings = manifest["settings"]
    if reduced_scale is not None and bool(reduced_scale) != settings.get("reduced_scale"):
        return (f"the features were decoded with reduced_scale={settings.get('reduced_scale')}, "
                f"the export asks for {bool(reduced_scale)}")
    for key, value in decode_options(fit).items():
        if settings.get(key) != value:
            return f"the features were decoded with {key}={settings.get(key)!r}, the export asks for {key}={value!r}"
    if article_fingerprint(articles, images, settings)[3] != manifest["fingerprint"]:
        return "the stored features are of other articles or image files (rerun notebook 03)"
    for m_name, model in models.items():
        try:
            backbone, head = get_backbone(model), get_head(model)
        except (ValueError, AttributeError):
            return f"model {m_name!r} is not a backbone + head tower (hm_utils.model.siamese)"
        size = [int(v) for v in backbone.input_shape[1:3]]
        if size != entry["image_size"]:
            return f"model {m_name!r} takes {size[0]} x {size[1]} images, the features are of {entry['image_size']}"
        digest = model_digest(backbone)
        if digest != entry["digest"]:
            return (f"model {m_name!r}: its backbone's weights (digest {digest}) are not those of the stored "
                    f"{name!r} features ({entry['backbone']}, digest {entry['digest']}); a fine-tuned or "
                    "different backbone must be exported from the images")
        dim = int(head.input["features"].shape[-1]) if isinstance(head.input, dict) else None
        if dim != entry["feature_dim"]:
            return f"model {m_name!r}: its head takes {dim} features, the stored ones have {entry['feature_dim']}"
    return None


def _list_column(matrix: np.ndarray, ok: np.ndarray) -> pa.Array:
    """list<float32> of the rows of ``matrix`` [n, d], null where ``ok`` [n] is False."""
    n, d = matrix.shape
    offsets = np.zeros(n + 1, np.int32)
    offsets[1:] = np.cumsum(ok.astype(np.int64) * d)
    values = np.ascontiguousarray(matrix[ok], np.float32).ravel()
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.float32()), mask=pa.array(~ok))


def _head_fn(head, combined: bool):
    """Traced head call: (features [B,F], tabular [B,11] or None) -> np.float32 [B,d]."""
    @tf.function(reduce_retracing=True)
    def call(x):
        return head(x, training=False)

    def fn(features, tabular):
        x = {"features": tf.constant(features, tf.float32)}
        if combined:
            x["tabular"] = tf.constant(tabular, tf.float32)
        return np.asarray(call(x), np.float32)
    return fn


def export_from_features(models: dict, articles: pd.DataFrame, images: pd.DataFrame, work_dir, out_paths: dict, *,
                         name: str = BACKBONE_FEATURES, include_article_columns: dict | None = None,
                         tabular: np.ndarray | None = None, reduced_scale: bool | None = None,
                         fit: str | None = None, batch_size: int = 2048,
                         progress: bool = True) -> dict[str, ExportReport]:
    """Export every model's embeddings by running its head over the stored features.

    Inputs as :func:`hm_utils.export.export.export_embeddings_many` (``models`` ``{name:
    one-tower model}``, ``articles`` in output order, ``images``, ``out_paths``
    ``{name: parquet path}``, ``include_article_columns`` ``{name: bool}``,
    ``tabular`` float32 [n, 11] for the combined model, default
    :func:`hm_utils.model.siamese.tabular_features`), plus ``work_dir`` (the store's) and
    ``name``, the feature set; ``reduced_scale`` / ``fit``: the decoding the export
    asks for (checked against the store's). ``batch_size`` rows per head call.

    Raises :class:`FeatureMismatchError` (with :func:`features_usable`'s reason)
    when the store does not fit. Output: ``{name: ExportReport}``, as the image
    export's, except that no image is decoded (``images_computed`` 0, no shards);
    ``images_per_second`` counts articles embedded per second from the features,
    ``precision`` is the store's ("float32"). The files: ``article_id`` int32 +
    ``embedding`` list<float32> (or all article columns + ``embedding``), null where
    the article has no image or its image could not be read.
    """
    t0 = time.perf_counter()
    names = list(models)
    if not names:
        raise ValueError("no models to export")
    if set(out_paths) != set(names):
        raise ValueError(f"out_paths keys {sorted(out_paths)} differ from the models {sorted(names)}")
    reason = features_usable(models, articles, images, work_dir, name=name, reduced_scale=reduced_scale, fit=fit)
    if reason is not None:
        raise FeatureMismatchError(reason)
    manifest = read_manifest(work_dir)
    store = load_features(work_dir, name)
    has = pd.read_parquet(features_dir(work_dir) / FEATURES_INDEX, columns=[HAS_IMAGE])[HAS_IMAGE].to_numpy(bool)
    ok = store.ok
    include = {n: bool((include_article_columns or {}).get(n, False)) for n in names}
    combined = {n: model_variant(m) == "combined" for n, m in models.items()}
    tab = None
    if any(combined.values()):
        tab = np.asarray(tabular_features(articles) if tabular is None else tabular, np.float32)
        if tab.shape[0] != len(articles):
            raise ValueError(f"tabular has {tab.shape[0]} rows for {len(articles)} articles")
    heads = {n: _head_fn(get_head(m), combined[n]) for n, m in models.items()}
    dims = {n: int(get_head(m).output_shape[-1]) for n, m in models.items()}
    emb = {n: np.zeros((len(ok), dims[n]), np.float32) for n in names}
    rows = np.flatnonzero(ok)
    starts = range(0, len(rows), int(batch_size))
    for s in tqdm(starts, desc="export from stored features", unit="batch", disable=not progress):
        r = rows[s:s + int(batch_size)]
        feats = np.asarray(store.features[r], np.float32)
        for n in names:
            emb[n][r] = heads[n](feats, tab[r] if combined[n] else None)
    seconds = time.perf_counter() - t0

    image_size = manifest["settings"]["image_size"]
    reports = {}
    for n in names:
        dim = dims[n] if ok.any() else None
        write_embedding_file(out_paths[n], articles, pa.array(articles[ARTICLE_ID].to_numpy(np.int64).astype(np.int32)),
                             _list_column(emb[n], ok), include[n],
                             {"embedding_dim": dim, "image_size": list(image_size),
                              "reduced_scale": bool(manifest["settings"]["reduced_scale"]),
                              "precision": manifest["precision"]})
        reports[n] = ExportReport(
            path=str(out_paths[n]), n_articles=len(ok), n_embedded=int(ok.sum()),
            n_missing_image=int((~has).sum()), n_unreadable=int((has & ~ok).sum()),
            unreadable_ids=list(manifest.get("unreadable", [])), embedding_dim=dim, shards_total=0,
            shards_reused=0, images_computed=0, seconds=time.perf_counter() - t0,
            images_per_second=int(ok.sum()) / seconds if seconds > 0 else 0.0, precision=manifest["precision"])
    return reports


def export_embeddings_auto(models: dict, articles: pd.DataFrame, images: pd.DataFrame, work_dir, out_paths: dict,
                           *, image_size: tuple[int, int], settings: ExportSettings | None = None,
                           name: str = BACKBONE_FEATURES, include_article_columns: dict | None = None,
                           tabular: np.ndarray | None = None, fit: str | None = None, progress: bool = True,
                           **image_export_options) -> tuple[dict[str, ExportReport], str, str | None]:
    """The export from the stored features when they fit every model
    (:func:`features_usable`), else :func:`hm_utils.export.export.export_embeddings_many`
    from the images (``image_size``, ``fit`` when given, ``image_export_options`` such
    as ``shard_dir`` or ``dataset_fn``, and the settings' ``batch_size``, ``shard_size``,
    ``reduced_scale`` and ``precision`` go to it). ``settings``: an
    :class:`hm_utils.export.export.ExportSettings` (None: its defaults); ``use_features`` False
    always takes the images.
    Output: ``(reports, path, reason)``: path ``config.EXPORT_FROM_FEATURES`` or
    ``config.EXPORT_FROM_IMAGES``; reason None, or why the features did not fit."""
    settings = ExportSettings() if settings is None else settings
    reduced_scale = settings.reduced_scale
    reason = (features_usable(models, articles, images, work_dir, name=name, reduced_scale=reduced_scale, fit=fit)
              if settings.use_features else "use_features is False")
    common = dict(include_article_columns=include_article_columns, tabular=tabular, progress=progress)
    if reason is None:
        return (export_from_features(models, articles, images, work_dir, out_paths, name=name,
                                     reduced_scale=reduced_scale, fit=fit, **common), EXPORT_FROM_FEATURES, None)
    if fit is not None:
        image_export_options["fit"] = fit
    reports = export_embeddings_many(models, articles, images, {n: Path(p) for n, p in out_paths.items()},
                                     image_size=image_size, reduced_scale=reduced_scale,
                                     batch_size=settings.batch_size, shard_size=settings.shard_size,
                                     precision=settings.precision, **common, **image_export_options)
    return reports, EXPORT_FROM_IMAGES, reason
