"""Health of an embedding matrix: is any of it dead or collapsed?

One function, :func:`embedding_health`, measures article vectors float [n, d] (rows that are
``ok``, i.e. articles with a vector) with four figures:

* ``zero_share``: the share of entries that are exactly 0 (a ReLU output pushed below 0);
* ``dead_units``: the share of the d dimensions that are 0 for EVERY ok row ("never active":
  a unit that carries nothing, whatever the article), with ``n_dead_units``;
* ``effective_rank``: the participation ratio of the singular values s of the CENTRED matrix
  (rows minus their mean), (sum s^2)^2 / sum s^4 (e.g. Gao et al. 2017, "A theory of multineuronal
  dimensionality"; Roy & Vetterli 2007 define a related entropy effective rank): d when all
  directions carry the same variance, 1 when the vectors vary along one line only. Computed from
  the d x d scatter matrix, whose eigenvalues are s^2, so n can be large;
* ``mean_pairwise_cosine``: the mean cosine over pairs of distinct rows
  (:func:`hm_utils.embeddings.quality.mean_pairwise_cosine`, a seeded sample of at most 1,000 rows):
  near 1, the vectors crowd in one direction.

Also ``zero_vector_share`` (rows that are all zeros), ``n_rows`` and ``n_dims``.
:func:`health_warnings` warns, naming the model, when a head has collapsed (zero share or dead
units above :data:`COLLAPSE_SHARE`). No TensorFlow here.
"""
from __future__ import annotations

import warnings

import numpy as np

from hm_utils.embeddings.quality import mean_pairwise_cosine

COLLAPSE_SHARE = 0.10  # zero share or dead units above this: the head has collapsed
HEALTH_KEYS = ("n_rows", "n_dims", "zero_share", "zero_vector_share", "dead_units", "n_dead_units",
               "effective_rank", "mean_pairwise_cosine")


class CollapsedEmbeddingWarning(UserWarning):
    """An embedding with too many zero entries or dead units (see :func:`health_warnings`)."""


def participation_ratio(eigenvalues) -> float:
    """(sum l)^2 / sum l^2 of non-negative values ``l`` (the squared singular values); NaN when all are 0."""
    lam = np.clip(np.asarray(eigenvalues, np.float64), 0.0, None)
    den = float((lam ** 2).sum())
    return float(lam.sum() ** 2 / den) if den > 0 else float("nan")


def embedding_health(vectors, ok=None, block: int = 65_536, sample: int = 1000, seed: int = 0) -> dict:
    """The health figures (module docstring) of ``vectors`` float [n, d] over the rows where ``ok``
    (bool [n]; default all). Returns a dict with :data:`HEALTH_KEYS` (shares in 0..1, effective rank in
    1..d; NaN where undefined, e.g. no ok rows). Read ``block`` rows at a time (a memory map is never
    loaded whole)."""

    v = vectors
    n, d = int(v.shape[0]), int(v.shape[1])
    ok = np.ones(n, bool) if ok is None else np.asarray(ok, bool).reshape(-1)
    if ok.shape[0] != n:
        raise ValueError(f"ok has {ok.shape[0]} entries for {n} vector rows")
    rows = np.flatnonzero(ok)
    m = len(rows)
    out = {"n_rows": m, "n_dims": d}
    if m == 0 or d == 0:
        return {**out, **{k: float("nan") for k in HEALTH_KEYS[2:]}, "n_dead_units": 0}
    zeros, zero_rows = 0, 0
    active = np.zeros(d, bool)
    total = np.zeros(d, np.float64)
    scatter = np.zeros((d, d), np.float64)
    for s in range(0, m, block):
        x = np.asarray(v[rows[s:s + block]], np.float64)
        nz = x != 0
        zeros += int((~nz).sum())
        zero_rows += int((~nz.any(axis=1)).sum())
        active |= nz.any(axis=0)
        total += x.sum(axis=0)
        scatter += x.T @ x
    mean = total / m
    cov = scatter - m * np.outer(mean, mean)  # centred scatter: its eigenvalues are the squared singular values
    lam = np.linalg.eigvalsh((cov + cov.T) / 2)
    out.update(zero_share=zeros / (m * d), zero_vector_share=zero_rows / m, dead_units=float((~active).mean()),
               n_dead_units=int((~active).sum()), effective_rank=participation_ratio(lam))
    picked = np.sort(np.random.default_rng(seed).choice(rows, size=sample, replace=False)) if m > sample else rows
    out["mean_pairwise_cosine"] = mean_pairwise_cosine(np.asarray(v[picked], np.float32), None, sample=len(picked))
    return out


def health_warnings(health: dict[str, dict], threshold: float = COLLAPSE_SHARE) -> list[str]:
    """Warn (:class:`CollapsedEmbeddingWarning`) for every model in ``health`` ``{name: embedding_health
    dict}`` whose zero share or dead-unit share exceeds ``threshold``; returns the messages (empty when
    all are healthy)."""
    msgs = []
    for name, h in health.items():
        z, dead = (float("nan") if h.get(k) is None else float(h[k]) for k in ("zero_share", "dead_units"))
        if z > threshold or dead > threshold:
            msgs.append(f"embedding {name!r} has collapsed: {z:.1%} of its entries are zero and {dead:.1%} of its "
                        f"{h.get('n_dims')} units are dead (never active over {h.get('n_rows')} articles); above "
                        f"{threshold:.0%} (a final ReLU met the loss with zeros? HEAD='residual' cannot die)")
    for msg in msgs:
        warnings.warn(msg, CollapsedEmbeddingWarning, stacklevel=2)
    return msgs


def plain(v):
    """``v`` with numpy scalars as Python numbers and every non-finite float as None, nested dicts and lists
    included (JSON has no NaN)."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    v = v.item() if isinstance(v, np.generic) else v
    return None if isinstance(v, float) and not np.isfinite(v) else v


def health_records(health: dict[str, dict]) -> dict:
    """``health`` with plain Python numbers and NaN as None (for a metrics JSON)."""
    return plain(health)
