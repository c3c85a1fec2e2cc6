"""Ensembling several prediction lists by embedding similarity and rank.

For each customer, the union of the articles the input lists predict is
re-scored and the 12 best kept::

    rank(a)  = sum_l w_l / (r_l(a) + 1) / sum_l w_l            (reciprocal rank, in (0, 1])
    vote(a)  = (number of lists predicting a) / L               (in (0, 1])
    score(a) = w_sim * cos(q_u, e_a) + w_rank * rank(a) + w_vote * vote(a)

``r_l(a)`` is the 0-based position of article ``a`` in list ``l`` (lists
that do not predict it add nothing), ``q_u`` the customer's query embedding
(the anchor article's or the recency-weighted profile, see
:class:`hm_utils.data.purchase_history.CustomerProfiles`). An article without an embedding,
or a customer without a query vector, keeps its rank-based score: its
similarity term is replaced by ``rank(a)``. Reciprocal-rank fusion follows
Cormack, Clarke & Buettcher (2009), "Reciprocal rank fusion outperforms
Condorcet and individual rank learning methods"; the similarity term uses the
triplet-trained embeddings (FaceNet loss, Schroff et al. 2015).

Each customer is one pass of a compiled loop (:func:`ensemble`, with the kernel
of :mod:`hm_utils.ensemble.kernels`; the first, vectorised numpy version,
``ensemble_blockwise``, is the reference ``benchmarks/bench_ensembling.py`` and
the tests compare against): articles become int codes, a stamp array merges an
article's copies while reciprocal ranks and votes are added in list order,
each distinct (query, article) pair is scored once (customers sharing an anchor
article are taken together), and the top 12 are kept by insertion.
``ensemble`` works on several blocks of customers at once in threads.

Notebook 07's settings are one :class:`EnsembleSettings`.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import CUSTOMER_KEY, SUBMISSION_K
from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.core.lists import PAD, fill_with_popular, iter_blocks
from hm_utils.core.metrics import as_prediction_matrix, map_at_k
from hm_utils.core.settings import StageSettings
from hm_utils.core.storage import require_file
from hm_utils.core.workdir import predictions_path, read_predictions
from hm_utils.data.purchase_history import CustomerProfiles
from hm_utils.ensemble.kernels import BlockEnsembler
from hm_utils.ranking.rankers import OriginalRanker
from hm_utils.ranking.submission import read_submission_predictions


@dataclass
class PredictionList:
    """One input list: ``customer_keys`` int64 [n] and ``matrix`` int [n, <=12] (PAD = none)."""
    name: str
    customer_keys: np.ndarray
    matrix: np.ndarray
    weight: float = 1.0

    def __post_init__(self):
        keys, mat = as_prediction_matrix(self.matrix, self.customer_keys, SUBMISSION_K)
        srt = np.sort(keys)
        dup = srt[1:][srt[1:] == srt[:-1]]
        if len(dup):
            raise ValueError(f"prediction list {self.name!r}: customer {dup[0]} appears more than once")
        self.customer_keys, self.matrix = keys, mat


# ------------------------------------------------------------ ensembling ---
class AnchorQueries:
    """Query function from an anchor lookup: ``keys int [b] -> float32 [b, d]``, each
    customer's anchor article's unit embedding (a zero row when there is no anchor or it
    has no embedding).

    Besides being callable it tells :func:`ensemble` *which* embedding row each query is
    (:meth:`rows`), so that each distinct (anchor, candidate) pair is scored once, by one
    dense matrix product per block of customers sharing few anchors.
    """

    def __init__(self, anchor_fn: Callable[[np.ndarray], np.ndarray], embeddings: ArticleEmbeddings):
        self.anchor_fn, self.embeddings = anchor_fn, embeddings

    def rows(self, keys) -> np.ndarray:
        """int64 [b]: the anchor's row in ``embeddings`` (-1: no anchor, or no embedding)."""
        return self.embeddings.rows(self.anchor_fn(np.asarray(keys, np.int64)))

    def __call__(self, keys) -> np.ndarray:
        return self.embeddings.vectors(self.rows(keys))


def ensemble(lists: list[PredictionList], embeddings: ArticleEmbeddings | None,
             queries: Callable[[np.ndarray], np.ndarray] | None, popular, w_sim: float = 1.0,
             w_rank: float = 1.0, w_vote: float = 0.0, k: int = SUBMISSION_K, block_size: int = 2048,
             progress: bool = True, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble several prediction lists (see the module docstring for the score).

    Inputs: ``lists``; ``embeddings`` (None: rank and vote only); ``queries``:
    a function ``customer_keys int64 [b] -> float32 [b, d]`` giving each
    customer's unit query vector (a zero row = none), e.g. a
    :class:`hm_utils.data.purchase_history.CustomerProfiles` or an :class:`AnchorQueries`;
    ``popular``: int [>=k] ids completing rows with fewer than ``k`` distinct
    candidates; ``threads``: blocks worked on at once (None: the CPU count, at
    most 4; numpy releases the GIL inside each step).

    Output: ``(customer_keys int64 [n], matrix int32 [n, k])`` for the union of
    the lists' customers, ``k`` distinct articles per row. Ties (equal float64
    scores): the article whose first appearance (list by list, position by
    position) comes first.

    How, per block of ``block_size`` customers, in one compiled pass per customer
    (:func:`hm_utils.ensemble.kernels.ensemble_rows`): the entries are merged by
    article (reciprocal ranks and votes added in list order, as a per-customer
    loop would), each distinct article scored once -- its cosine with the query
    computed once per distinct (query, article) pair, customers being taken in
    anchor order with :class:`AnchorQueries` -- and the best ``k`` kept by
    insertion. Same lists as the first vectorisation (``ensemble_blockwise`` in
    ``benchmarks/bench_ensembling.py``) bar float32 rounding of the cosines (a
    different summation order); same rank and vote values.
    """
    query_rows = queries.rows if isinstance(queries, AnchorQueries) and queries.embeddings is embeddings else None
    ens = BlockEnsembler(lists, embeddings, queries, w_sim, w_rank, w_vote, k, query_rows)
    n = len(ens.keys)
    out = np.empty((n, k), np.int32)
    blocks = list(iter_blocks(n, block_size, "", False))
    threads = min(os.cpu_count() or 1, 4) if threads is None else max(int(threads), 1)
    bar = tqdm(total=n, desc="ensembling", unit="customer", leave=False, disable=not progress or len(blocks) < 2)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        work = (lambda se: ens.run_block(*se))
        for (s, e), res in zip(blocks, pool.map(work, blocks) if threads > 1 else map(work, blocks)):
            out[slice(s, e) if ens.perm is None else ens.perm[s:e]] = res
            bar.update(len(res))
    bar.close()
    short = np.flatnonzero((out == PAD).any(axis=1))
    if len(short):
        out[short] = fill_with_popular(out[short], popular, k)
    return ens.keys, out


def anchor_queries(anchor_fn: Callable[[np.ndarray], np.ndarray], embeddings: ArticleEmbeddings
                   ) -> AnchorQueries:
    """Query function from an anchor lookup (e.g. ``OriginalRanker.anchors``): the anchor's
    unit embedding, a zero row when there is no anchor or it has no embedding (an
    :class:`AnchorQueries`, which also tells :func:`ensemble` the anchor's row)."""
    return AnchorQueries(anchor_fn, embeddings)


# ------------------------------------------------------ notebook helpers ---
ENSEMBLE_VARIANTS = {
    "ensemble_rank": {"w_sim": 0.0, "w_rank": 1.0},       # reciprocal-rank fusion only
    "ensemble_sim": {"w_sim": 1.0, "w_rank": 0.0},        # cosine only (rank for articles without embedding)
    "ensemble_sim_rank": {"w_sim": 1.0, "w_rank": 1.0},   # both
}


@dataclass(frozen=True)
class EnsembleSettings(StageSettings):
    """Notebook 07's settings: the profile's, then those of the held-out split notebook 06 wrote
    (:class:`hm_utils.core.workdir.HoldoutSplit`), then the notebook's parameters (:meth:`from_profile`,
    :meth:`~hm_utils.core.settings.StageSettings.from_notebook`); passed whole and recorded whole
    (``to_dict``) in ``metrics/07_ensembling.json``.

    ``profile``: its name; ``holdout_days``: the held-out week's length (06's); ``input_rankers``: 06's
    rankers to ensemble; ``submission_files``: extra submission CSVs as input lists; ``input_weights``:
    list name -> weight in the rank fusion (absent: 1); ``ensemble_embedding``: embedding
    variant of the similarity term (None: the first of "image_only", "image", "combined"
    present); ``query_mode``: "profile" or "anchor"; ``ensemble_variant``: the variant that
    writes the submission (None: the best over the rolling weeks); ``bootstrap_samples`` and
    ``seed``: the paired bootstrap of the keep-or-drop decision; ``block_size``, ``threads``:
    :func:`ensemble`'s blocks (None: CPU count, at most 4).
    """
    profile: str = "demo"
    seed: int = 42
    holdout_days: int = 7
    input_rankers: tuple[str, ...] = ()
    submission_files: tuple[str, ...] = ()
    input_weights: dict = field(default_factory=dict)
    ensemble_embedding: str | None = None
    query_mode: str = "profile"
    ensemble_variant: str | None = None
    bootstrap_samples: int = 1000
    block_size: int = 2048
    threads: int | None = None

    def __post_init__(self):
        if self.query_mode not in ("profile", "anchor"):
            raise ValueError(f"unknown query mode {self.query_mode!r}; choose 'profile' or 'anchor'")
        if self.ensemble_variant is not None and self.ensemble_variant not in ENSEMBLE_VARIANTS:
            raise ValueError(f"unknown ensemble variant {self.ensemble_variant!r}; choose one of "
                             f"{sorted(ENSEMBLE_VARIANTS)}")
        for name, kind in (("seed", int), ("holdout_days", int), ("bootstrap_samples", int), ("block_size", int),
                           ("input_rankers", tuple), ("input_weights", dict)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        object.__setattr__(self, "submission_files", tuple(str(p) for p in self.submission_files))
        if self.threads is not None:
            object.__setattr__(self, "threads", int(self.threads))

    @classmethod
    def profile_values(cls, profile) -> dict:
        return {"profile": profile.name, "holdout_days": profile.holdout_days}

    @classmethod
    def from_profile(cls, profile, /, split=None, **parameters) -> "EnsembleSettings":
        """The defaults, then the profile's, then 06's ``split`` (its ``days``, ``rankers`` and
        ``bootstrap_samples``; :func:`hm_utils.core.workdir.read_holdout_split`), then every parameter that
        is not None."""
        values = {} if split is None else {"holdout_days": split.days, "input_rankers": split.rankers,
                                           "bootstrap_samples": split.bootstrap_samples}
        values.update({k: v for k, v in parameters.items() if v is not None})
        return super().from_profile(profile, **values)

    def embedding_name(self, available) -> str | None:
        """The embedding variant to use among ``available`` names: ``ensemble_embedding`` when
        given, else the image-only one when present, else the first (None: none available)."""
        if self.ensemble_embedding is not None:
            return self.ensemble_embedding
        names = list(available)
        return next((v for v in ("image_only", "image") if v in names), names[0] if names else None)


def read_submission_lists(paths, customers: pd.DataFrame, weights: dict | None = None) -> list[PredictionList]:
    """Submission CSV files as input lists: each read and checked by
    :func:`hm_utils.ranking.submission.read_submission_predictions` (an unknown customer is a
    ValueError naming the file, the row and the customer), named by its file stem and
    weighted by ``weights[stem]`` (default 1.0)."""
    out = []
    for path in paths:
        keys, mat = read_submission_predictions(path, customers)
        out.append(PredictionList(Path(path).stem, keys, mat, float((weights or {}).get(Path(path).stem, 1.0))))
    return out


def subset_list(pl: PredictionList, customer_keys) -> PredictionList:
    """The rows of ``pl`` whose customer is in ``customer_keys``."""
    keep = np.isin(pl.customer_keys, np.asarray(customer_keys, np.int64))
    return PredictionList(pl.name, pl.customer_keys[keep], pl.matrix[keep], pl.weight)


def read_prediction_lists(work_dir, names, subdir: str = "holdout", weights: dict | None = None
                          ) -> list[PredictionList]:
    """``predictions/<subdir>/<name>.parquet`` of each ranker ``name`` (written by notebook 06)
    as :class:`PredictionList` objects, weighted by ``weights[name]`` (default 1.0); a
    missing file is a FileNotFoundError naming it."""

    out = []
    for name in names:
        path = require_file(predictions_path(work_dir, name, subdir), "06_candidate_ranking")
        keys, mat = read_predictions(path)
        out.append(PredictionList(name, keys, mat, float((weights or {}).get(name, 1.0))))
    return out


def customer_queries(transactions: pd.DataFrame, embeddings: ArticleEmbeddings, mode: str = "profile",
                     start_date=None) -> Callable[[np.ndarray], np.ndarray]:
    """Each customer's query vector for :func:`ensemble`, from ``transactions`` only.

    ``mode="profile"``: the recency-weighted profile
    (:class:`hm_utils.data.purchase_history.CustomerProfiles`); ``mode="anchor"``: the
    embedding of the article bought most since ``start_date`` (the original
    ranker's anchor). Returns ``keys int64 [b] -> float32 [b, d]`` unit rows.
    """

    if mode == "profile":
        return CustomerProfiles(embeddings).fit(transactions)
    if mode == "anchor":
        anchors = OriginalRanker(embeddings, start_date=start_date).fit(transactions)
        return anchor_queries(anchors.anchors, embeddings)
    raise ValueError(f"unknown query mode {mode!r}; choose 'profile' or 'anchor'")


def score_lists(lists: list[PredictionList], holdout: pd.DataFrame) -> pd.DataFrame:
    """MAP@12 of each input list on the held-out purchases: DataFrame ``list``, ``map12``, ``customers``."""

    return pd.DataFrame([{"list": pl.name, "map12": map_at_k(pl.matrix, holdout, customer_keys=pl.customer_keys),
                          "customers": len(pl.customer_keys)} for pl in lists])


def evaluate_ensembles(lists: list[PredictionList], embeddings: ArticleEmbeddings | None, queries, popular,
                       holdout: pd.DataFrame, variants: dict | None = None, **kwargs
                       ) -> tuple[pd.DataFrame, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Run each ensemble variant (``{name: {"w_sim": .., "w_rank": ..}}``, default
    :data:`ENSEMBLE_VARIANTS`) on the lists restricted to the held-out customers and
    score MAP@12. Returns (table ``list``, ``map12``, ``seconds``, ``customers``; and
    ``{name: (customer_keys, matrix)}``)."""
    import time


    keys = sorted_unique(holdout[CUSTOMER_KEY].to_numpy()).astype(np.int64)
    sub = [subset_list(pl, keys) for pl in lists]
    rows, out = [], {}
    for name, w in (variants or ENSEMBLE_VARIANTS).items():
        t0 = time.perf_counter()
        k_out, mat = ensemble(sub, embeddings, queries, popular, **w, **kwargs)
        secs = time.perf_counter() - t0
        out[name] = (k_out, mat)
        rows.append({"list": name, "map12": map_at_k(mat, holdout, customer_keys=k_out), "seconds": secs,
                     "customers": len(k_out)})
    return pd.DataFrame(rows), out


def combine_tables(inputs: pd.DataFrame, variants: pd.DataFrame) -> pd.DataFrame:
    """One table of input lists and ensemble variants (column ``kind``), best MAP@12 first."""
    return (pd.concat([inputs.assign(kind="input"), variants.assign(kind="ensemble")], ignore_index=True)
            .sort_values("map12", ascending=False, kind="stable").reset_index(drop=True))
