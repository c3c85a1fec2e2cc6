"""``tf.data`` pipelines of triplets for the siamese training (:func:`hm_utils.model.training.train_siamese`).

Both give (x, y) batches for a siamese model (:func:`hm_utils.model.siamese.build_siamese`): x holds
``<role>_<input>`` for role in anchor, positive, negative; y is zeros (the loss reads only the
embeddings; InfoNCE reads ``y`` as the articles' identifiers [B, 3], the rows of the three articles,
so that a row's own articles are never counted as its negatives). :func:`cached_triplet_dataset` gathers backbone features computed once
(:class:`hm_utils.model.feature_cache.FeatureCache`) for a head; :func:`image_triplet_dataset` decodes
the three images of every triplet from disk each epoch for a whole tower.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from hm_utils.core.checks import require_columns
from hm_utils.core.config import ARTICLE_ID, PRODUCT_CODE
from hm_utils.data.images import read_and_decode  # noqa: E402
from hm_utils.model.siamese import ROLES  # noqa: E402


def cached_triplet_dataset(rows: np.ndarray, features, tabular: tf.Tensor | None, batch_size: int,
                           shuffle: bool, seed: int) -> tf.data.Dataset:
    """(x, y) batches for the siamese head: x = {role_features [B, F], role_tabular [B, 11]}, y the
    triplets' rows float32 [B, 3] (article identifiers for :class:`hm_utils.model.losses.InfoNCELoss`).

    ``features``: a tensor (in memory), or a ``np.memmap`` (on-disk cache), whose
    rows are then read batch by batch instead of being loaded whole."""
    ds = tf.data.Dataset.from_tensor_slices(rows.astype(np.int64))
    if shuffle:
        ds = ds.shuffle(max(len(rows), 1), seed=seed, reshuffle_each_iteration=True)
    if isinstance(features, np.memmap):
        mm, dim = features, int(features.shape[1])

        def take(idx):
            f = tf.numpy_function(lambda i: np.asarray(mm[i], dtype=np.float32), [idx], tf.float32)
            f.set_shape([None, dim])
            return f
    else:
        def take(idx):
            return tf.cast(tf.gather(features, idx), tf.float32)

    def gather(r):
        x = {}
        for j, role in enumerate(ROLES):
            x[f"{role}_features"] = take(r[:, j])
            if tabular is not None:
                x[f"{role}_tabular"] = tf.gather(tabular, r[:, j])
        return x, tf.cast(r, tf.float32)

    return ds.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def image_triplet_dataset(rows: np.ndarray, paths: np.ndarray, tabular: np.ndarray | None,
                          image_size: tuple[int, int], batch_size: int, shuffle: bool, seed: int,
                          reduced_scale: bool = True) -> tf.data.Dataset:
    """(x, y) batches for the full siamese tower: every triplet's three images
    decoded from disk each epoch (no cache), y the triplet's rows float32 [3] per element (article
    identifiers). Triplets with an unreadable image are dropped."""
    paths_t = tf.constant([str(p) for p in paths])
    tab_t = tf.constant(tabular, tf.float32) if tabular is not None else None
    size = (int(image_size[0]), int(image_size[1]))
    ds = tf.data.Dataset.from_tensor_slices(rows.astype(np.int64))
    if shuffle:
        ds = ds.shuffle(max(len(rows), 1), seed=seed, reshuffle_each_iteration=True)

    def load(r):
        x = {}
        for j, role in enumerate(ROLES):
            x[f"{role}_image"] = read_and_decode(paths_t[r[j]], size, reduced_scale)
            if tab_t is not None:
                x[f"{role}_tabular"] = tab_t[r[j]]
        return x, tf.cast(r, tf.float32)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def product_triplet_rows(articles: pd.DataFrame, ids: np.ndarray, ok: np.ndarray, n: int, seed: int,
                         held_out_share: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Free supervision from the catalogue: ``n`` triplets (rows into ``ids`` int64 [n, 3]) whose anchor is an
    article with features (``ok``) whose product (``product_code``) has another coloured article with features,
    positive that other article (drawn at random), negative a random article with features of another product.
    A seeded ``held_out_share`` of the products with 2+ such articles is never used; returns (rows, held-out
    product codes int64 sorted). No triplet when no product qualifies. ``articles``: ``article_id``,
    ``product_code``."""

    require_columns(articles, [ARTICLE_ID, PRODUCT_CODE], "articles table (product positives)")
    code = pd.Series(articles[PRODUCT_CODE].to_numpy(np.int64), index=articles[ARTICLE_ID].to_numpy(np.int64))
    prod = code.reindex(np.asarray(ids, np.int64)).to_numpy()
    usable = np.flatnonzero(np.asarray(ok, bool) & ~pd.isna(prod))
    prod = prod.astype(np.float64)
    codes, counts = np.unique(prod[usable], return_counts=True)
    multi = codes[counts > 1].astype(np.int64)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(multi, size=int(round(held_out_share * len(multi))), replace=False)) if len(multi) \
        else np.zeros(0, np.int64)
    train_codes = np.setdiff1d(multi, held)
    anchors = usable[np.isin(prod[usable], train_codes)]
    if n <= 0 or not len(anchors):
        return np.zeros((0, 3), np.int64), held
    a = rng.choice(anchors, size=int(n))
    by_code = pd.Series(anchors).groupby(prod[anchors]).apply(np.asarray)
    pos = np.array([rng.choice(by_code[prod[r]][by_code[prod[r]] != r]) for r in a], np.int64)
    neg = rng.choice(usable, size=int(n))
    same = prod[neg] == prod[a]
    while same.any():  # a negative of the anchor's own product is redrawn
        neg[same] = rng.choice(usable, size=int(same.sum()))
        same = prod[neg] == prod[a]
    return np.stack([a, pos, neg], axis=1).astype(np.int64), held
