"""Backbone features per article in memory: :class:`FeatureCache`, and :func:`compute_feature_cache`, which fills one.

A frozen backbone maps an article's photo to the same features every time, so training
(:func:`hm_utils.model.training.train_siamese`) trains only the head on features computed once.
:func:`compute_feature_cache` streams every needed image from disk once (``tf.data``, parallel
reduced-scale JPEG decoding, :func:`hm_utils.data.images.image_dataset`) and keeps the features
([n_articles, F] float32 in memory, or a ``.npy`` memory map on disk for big runs). The run's
feature store on disk (:mod:`hm_utils.model.feature_store`) is read back as a :class:`FeatureCache` too
(:func:`hm_utils.model.feature_store.load_features`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from hm_utils.data.images import image_dataset, report_unreadable  # noqa: E402


@dataclass
class FeatureCache:
    """Backbone features per article, computed once.

    article_ids: int64 [n]; features: float32 (or float16) [n, F], zeros where
    not ``ok`` (in memory, or a ``np.memmap``); ok: bool [n], False where the
    image was missing or unreadable; seconds: wall time of the extraction;
    unreadable: what could not be read (paths from :func:`compute_feature_cache`,
    article ids from :func:`hm_utils.model.feature_store.load_features`); digest: the
    backbone's weights digest (:func:`hm_utils.model.inference.model_digest`) when known,
    which :func:`hm_utils.model.training.train_siamese` checks against its backbone; images_per_second.
    """
    article_ids: np.ndarray
    features: np.ndarray
    ok: np.ndarray
    seconds: float = 0.0
    unreadable: list = field(default_factory=list)
    digest: str | None = None

    @property
    def images_per_second(self) -> float:
        n = int(self.ok.sum())
        return n / self.seconds if self.seconds > 0 else float("nan")

    def rows(self, article_ids) -> np.ndarray:
        """Row of each article id in the cache, int64; -1 where absent or not ok."""
        pos = pd.Series(np.arange(len(self.article_ids)), index=self.article_ids)
        pos = pos[self.ok]
        return pd.Series(np.asarray(article_ids, np.int64)).map(pos).fillna(-1).to_numpy(np.int64)


def compute_feature_cache(backbone_model: keras.Model, article_ids, paths, batch_size: int = 64,
                          reduced_scale: bool = True, dtype: str = "float32",
                          cache_path: str | os.PathLike | None = None, progress: bool = True) -> FeatureCache:
    """Run the (frozen) backbone once over every article's image.

    article_ids: [n] ints; paths: [n] image paths (None/"" = no image); the
    image size is the backbone's input size. Images stream from disk via
    :func:`hm_utils.data.images.image_dataset`; unreadable files are skipped and
    reported (warning naming them). ``cache_path`` (a ``.npy`` file, e.g.
    ``WORK_DIR/cache/features.npy``) writes the features into a memory map
    instead of RAM, for runs too big for memory. Returns a :class:`FeatureCache`.
    """
    article_ids = np.asarray(article_ids, dtype=np.int64)
    paths = np.asarray(paths, dtype=object)
    if len(paths) != len(article_ids):
        raise ValueError(f"{len(article_ids)} article ids but {len(paths)} paths")
    has = np.array([p is not None and str(p) != "" and str(p) != "nan" for p in paths], dtype=bool)
    idx_with = np.flatnonzero(has)
    h, w = backbone_model.input_shape[1:3]
    feat_dim = int(backbone_model.output_shape[-1])
    if cache_path is not None:
        Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
        features = np.lib.format.open_memmap(cache_path, mode="w+", dtype=dtype, shape=(len(article_ids), feat_dim))
    else:
        features = np.zeros((len(article_ids), feat_dim), dtype=dtype)
    ok = np.zeros(len(article_ids), dtype=bool)
    sub_paths = [str(p) for p in paths[idx_with]]
    t0 = time.perf_counter()
    seen = []
    ds = image_dataset(sub_paths, (h, w), batch_size=batch_size, reduced_scale=reduced_scale)
    n_batches = -(-len(sub_paths) // batch_size) if sub_paths else 0

    @tf.function(reduce_retracing=True)
    def _forward(x):
        return backbone_model(x, training=False)

    for idx, imgs in tqdm(ds, total=n_batches, desc="backbone features", unit="batch", disable=not progress):
        idx = idx.numpy()
        rows = idx_with[idx]
        features[rows] = _forward(imgs).numpy().astype(dtype, copy=False)
        ok[rows] = True
        seen.append(idx)
    seconds = time.perf_counter() - t0
    unreadable = report_unreadable(sub_paths, np.concatenate(seen) if seen else np.zeros(0, np.int64))
    if isinstance(features, np.memmap):
        features.flush()
    return FeatureCache(article_ids, features, ok, seconds, [sub_paths[i] for i in unreadable])
