"""Training chosen by what it is for: the next purchases of customers held out from training.

:func:`hm_utils.model.training.train_siamese` holds out customers (all their triplets). Their purchases
become next-purchase queries (:class:`hm_utils.embeddings.quality.PurchaseQueries`: each purchase
after an earlier one, the previous article as the query, repurchases dropped), split by customer
into two halves (:func:`heldout_queries`):

* ``selection``: after every epoch (and before the first, "epoch 0", the untrained head) the head
  embeds every article with features and :class:`EpochSelection` measures these customers'
  next-purchase recall@k (k = 100) and the held-out triplet accuracy; the best epoch's weights are
  kept and restored at the end, and training stops when recall has not improved for ``patience``
  epochs. Epoch 0 competes too, so training can only keep or add to what the untrained head (the
  projected pretrained features) finds.
* ``report``: customers never used for any choice, on which :func:`paired_recall` compares the chosen
  head with the pretrained features (and random vectors, and popularity) per customer, with a paired
  bootstrap interval (:func:`hm_utils.core.intervals.paired_bootstrap`).

Recall is averaged per customer first (each customer counts once), then over customers.
"""
from __future__ import annotations

import time
from typing import NamedTuple

import keras
import numpy as np
import pandas as pd

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.config import ARTICLE_ID, CUSTOMER_KEY
from hm_utils.core.intervals import paired_bootstrap
from hm_utils.core.metrics import rows_accuracy
from hm_utils.embeddings.health import embedding_health
from hm_utils.embeddings.quality import PurchaseQueries, expected_recall, query_recalls, random_vectors
from hm_utils.model.feature_cache import FeatureCache
from hm_utils.model.siamese import get_head, model_variant, tabular_features

SELECTION_K = 100
SELECTION_QUERIES = 4000  # queries per half at most (seeded sample)
SELECTION_RULES = ("interval", "best")


class Queries(NamedTuple):
    """Next-purchase queries: ``target``, ``previous`` int64 [q] rows of the feature store's articles,
    ``customer`` int64 [q], ``popularity`` float [q] (recall@k of ranking by purchases before the day)."""
    target: np.ndarray
    previous: np.ndarray
    customer: np.ndarray
    popularity: np.ndarray


def heldout_queries(transactions: pd.DataFrame, article_ids: np.ndarray, ok: np.ndarray, customers,
                    k: int = SELECTION_K, max_queries: int | None = SELECTION_QUERIES, seed: int = 0
                    ) -> dict[str, Queries]:
    """``{"selection": Queries, "report": Queries}``: the next purchases of ``customers`` (keys), split
    by customer into two seeded halves (a customer's queries all on one side), at most ``max_queries``
    each. ``article_ids`` int [n] / ``ok`` bool [n]: the articles that can be queries and candidates
    (the feature store's rows). Popularity counts every customer's purchases before the query day."""
    arts = pd.DataFrame({ARTICLE_ID: np.asarray(article_ids, np.int64)})
    pq = PurchaseQueries(transactions, arts)
    cust = sorted_unique(np.asarray(customers, np.int64))
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(cust))
    halves = {"selection": cust[np.sort(pick[: len(cust) // 2])], "report": cust[np.sort(pick[len(cust) // 2:])]}
    out = {}
    for name, who in halves.items():
        tgt, prev, _, pg, pe, c = pq.queries(ok, max_queries, seed, customers=who)
        out[name] = Queries(tgt, prev, c, expected_recall(pg, pe, k))
    return out


def customer_mean(values: np.ndarray, customer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(customers sorted, the mean of ``values`` over each customer's queries) float [c]."""
    keys, inv = np.unique(customer, return_inverse=True)
    return keys, np.bincount(inv, weights=values) / np.bincount(inv)


def customer_recall(vectors, ok, q: Queries, k: int = SELECTION_K) -> float:
    """Recall@k averaged per customer, then over customers (NaN without queries)."""
    if not len(q.target):
        return float("nan")
    return float(customer_mean(query_recalls(vectors, ok, q.target, q.previous, k), q.customer)[1].mean())


def paired_recall(sources: dict, ok, q: Queries, baseline: str, k: int = SELECTION_K, seed: int = 0) -> dict:
    """Per source ``{name: vectors [n, d]}`` (and ``"popularity"``): recall@k per customer averaged over
    customers, and for every source but ``baseline`` the paired difference to it with a 95% bootstrap
    interval over customers (:func:`hm_utils.core.intervals.paired_bootstrap`). Output
    ``{"n_customers", "n_queries", "k", "recall": {name: r}, "vs_<baseline>": {name: {"diff", "lo", "hi"}}}``."""

    per = {name: customer_mean(query_recalls(v, ok, q.target, q.previous, k), q.customer)[1]
           for name, v in sources.items()} if len(q.target) else {}
    if len(q.target):
        per["popularity"] = customer_mean(q.popularity, q.customer)[1]
    out = {"n_customers": int(len(np.unique(q.customer))), "n_queries": int(len(q.target)), "k": int(k),
           "recall": {name: float(r.mean()) for name, r in per.items()}, f"vs_{baseline}": {}}
    for name, r in per.items():
        if name != baseline and baseline in per:
            diff, lo, hi = paired_bootstrap(r - per[baseline], seed=seed)
            out[f"vs_{baseline}"][name] = {"diff": diff, "lo": lo, "hi": hi}
    return out


class EpochSelection(keras.callbacks.Callback):
    """Keras callback: after each epoch (and at the start, epoch 0) embed every article with ``embed()``
    (float32 [n, D], rows aligned with ``ok``), measure the selection customers' next-purchase recall@k
    (:func:`customer_recall`) and the triplet accuracy of ``val_rows`` [m, 3] (rows into the same
    matrix); stop after ``patience`` epochs without a higher recall; when training ends restore the
    weights of the kept epoch (:meth:`choose`): the best one, but under ``rule`` "interval" (default) only
    when its per-customer gain over epoch 0 (the untrained start) has a 95% paired bootstrap interval above
    0, else epoch 0: a change the held-out customers do not show to help is not taken (on photos unlike the
    training set's, every learned change costs sight); "best": the best epoch regardless. ``curve``: one
    dict per epoch (epoch, recall, accuracy, seconds of the measurement); ``best_epoch`` (kept),
    ``best_recall_epoch`` (highest recall), ``gain`` (its gain over epoch 0 under "interval")."""

    def __init__(self, head, embed, ok, queries: Queries, val_rows, patience: int = 2, k: int = SELECTION_K,
                 log=print, rule: str = "interval", seed: int = 0):
        super().__init__()
        if rule not in SELECTION_RULES:
            raise ValueError(f"unknown selection rule {rule!r}; choose one of {SELECTION_RULES}")
        self.head, self.embed, self.ok, self.q = head, embed, np.asarray(ok, bool), queries
        self.val_rows, self.patience, self.k, self.log = val_rows, int(patience), int(k), log
        self.rule, self.seed = rule, int(seed)
        self.curve: list[dict] = []
        self.best_epoch, self.best, self.wait, self.best_weights, self.best_per = 0, -np.inf, 0, None, None
        self.start_per, self.start_weights, self.gain, self.best_recall_epoch = None, None, None, 0

    def measure(self, epoch: int) -> dict:

        t0 = time.perf_counter()
        emb = self.embed()
        per = customer_mean(query_recalls(emb, self.ok, self.q.target, self.q.previous, self.k), self.q.customer)[1]
        row = {"epoch": int(epoch), "recall": float(per.mean()) if len(per) else float("nan"),
               "accuracy": rows_accuracy(emb, self.val_rows) if len(self.val_rows) else float("nan"),
               "seconds": time.perf_counter() - t0}
        self.curve.append(row)
        if self.start_per is None:
            self.start_per, self.start_weights = per, [np.array(w) for w in self.head.get_weights()]
        if row["recall"] > self.best + 1e-9:
            self.best, self.best_epoch, self.wait, self.best_per = row["recall"], int(epoch), 0, per
            self.best_weights = [np.array(w) for w in self.head.get_weights()]
        else:
            self.wait += 1
        return row

    def choose(self) -> int:
        """The epoch to keep: the best one (highest recall), under rule "interval" only when its per-customer
        gain over epoch 0 has a 95% paired bootstrap interval above 0 (``gain``: diff, lo, hi), else epoch 0."""

        self.best_recall_epoch = self.best_epoch
        if self.rule == "interval" and self.best_epoch > 0:
            diff, lo, hi = paired_bootstrap(self.best_per - self.start_per, seed=self.seed)
            self.gain = {"diff": diff, "lo": lo, "hi": hi}
            if not lo > 0:
                self.best_epoch, self.best, self.best_weights = 0, self.curve[0]["recall"], self.start_weights
        return self.best_epoch

    def on_train_begin(self, logs=None):
        r = self.measure(0)
        self.log(f"epoch 0 (untrained): held-out recall@{self.k} {r['recall']:.4f}, triplet accuracy {r['accuracy']:.3f}")

    def on_epoch_end(self, epoch, logs=None):
        r = self.measure(epoch + 1)
        self.log(f"epoch {epoch + 1}: held-out recall@{self.k} {r['recall']:.4f}, triplet accuracy "
                 f"{r['accuracy']:.3f} (best: epoch {self.best_epoch})")
        if self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is None:
            return
        best = self.best_epoch
        self.choose()
        self.head.set_weights(self.best_weights)
        why = "" if best == self.best_epoch else (f"; epoch {best}'s gain over it, {self.gain['diff']:+.4f} "
                                                   f"[{self.gain['lo']:+.4f}, {self.gain['hi']:+.4f}], not shown")
        self.log(f"kept epoch {self.best_epoch} (held-out recall@{self.k} {self.best:.4f}{why})")


# ------------------------------------------------------------- reports ---
def held_out_report(emb: np.ndarray, feature_cache, selection, queries, seed: int,
                     untrained: np.ndarray | None = None) -> dict:
    """The health of the trained embedding ``emb`` [n, D] (rows of ``feature_cache``) and, after epoch
    selection, the chosen epoch and the report customers' recall@100 of the embedding, the pretrained
    features and random vectors, paired against the features (:func:`hm_utils.model.epoch_selection.paired_recall`)."""

    out = {"health": embedding_health(emb, feature_cache.ok)}
    if selection is None or queries is None:
        return out
    out["selection_curve"] = selection.curve
    out["best_epoch"] = int(selection.best_epoch)
    out["best_recall_epoch"] = int(selection.best_recall_epoch)
    out["selection_gain"] = selection.gain
    out["selection_recall"] = float(selection.best)
    out["n_selection_customers"] = int(len(np.unique(queries["selection"].customer)))
    out["n_selection_queries"] = int(len(queries["selection"].target))
    sources = {"trained": emb, **({"untrained": untrained} if untrained is not None else {}),
               "features": feature_cache.features, "random": random_vectors(len(emb), emb.shape[1], seed)[0]}
    out["heldout"] = paired_recall(sources, feature_cache.ok, queries["report"], "features", k=selection.k, seed=seed)
    return out


def embed_features(model: keras.Model, feature_cache: FeatureCache, articles: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Every article of ``feature_cache`` through ``model``'s head: (embeddings float32 [n, D] in the cache's
    row order, ok bool [n]); the tabular rows (combined) come from ``articles`` (``article_id`` + the tabular
    columns). Rows without features are zero and not ok."""

    tab = None
    if model_variant(model) == "combined":
        art = articles.assign(**{ARTICLE_ID: articles[ARTICLE_ID].astype(np.int64)}).set_index(ARTICLE_ID)
        tab = tabular_features(art.loc[feature_cache.article_ids].reset_index())
    head, feats, parts = get_head(model), feature_cache.features, []
    for s in range(0, len(feats), 4096):  # a memory-mapped store is read block by block
        x = {"features": np.asarray(feats[s:s + 4096], np.float32)}
        if tab is not None:
            x["tabular"] = tab[s:s + 4096]
        parts.append(np.asarray(head(x, training=False), np.float32))
    emb = np.concatenate(parts) if parts else np.zeros((0, int(head.output_shape[-1])), np.float32)
    emb[~feature_cache.ok] = 0.0
    return emb, feature_cache.ok


def heldout_frame(reports: dict[str, dict]) -> pd.DataFrame:
    """One row per model: head, loss, kept epoch, held-out triplet accuracy (untrained / trained), the report
    customers' next-purchase recall@100 (trained, pretrained features, popularity), the trained head minus the
    features with its 95% paired bootstrap interval, and the health of the trained embedding (zero share, dead
    units, effective rank, mean pairwise cosine). Models trained without epoch selection have None there."""
    rows = []
    for name, r in reports.items():
        held, health = r.get("heldout") or {}, r.get("health") or {}
        rec, vs = held.get("recall", {}), held.get("vs_features", {}).get("trained", {})
        rows.append({"model": name, "head": r.get("head"), "loss": r.get("loss"), "best_epoch": r.get("best_epoch"),
                     "epochs_run": r.get("epochs"), "untrained_accuracy": r.get("untrained_accuracy"),
                     "trained_accuracy": r.get("trained_accuracy"), "recall@100": rec.get("trained"),
                     "features_recall@100": rec.get("features"), "popularity_recall@100": rec.get("popularity"),
                     "gain": vs.get("diff"), "gain_lo": vs.get("lo"), "gain_hi": vs.get("hi"),
                     "n_customers": held.get("n_customers"), "zero_share": health.get("zero_share"),
                     "dead_units": health.get("dead_units"), "effective_rank": health.get("effective_rank"),
                     "mean_cosine": health.get("mean_pairwise_cosine")})
    return pd.DataFrame(rows).set_index("model")


def make_selection(transactions, feature_cache, split, val_rows, head, embed_all, settings, variant, log):
    """(EpochSelection or None, {"selection", "report"} Queries or None, untrained embeddings or None) for
    :func:`hm_utils.model.training.train_siamese`: selection needs stored features (``feature_cache``), held-out
    customers (``split.validation``) and next purchases of both halves; otherwise a note and (None, None, None)."""
    s = settings
    if feature_cache is None or embed_all is None or not len(val_rows):
        log(f"{variant}: no epoch selection (needs stored features and held-out customers); all epochs kept")
        return None, None, None
    queries = heldout_queries(transactions, feature_cache.article_ids, feature_cache.ok,
                              split.validation[CUSTOMER_KEY].to_numpy(), k=s.selection_k, seed=s.seed)
    if not (len(queries["selection"].target) and len(queries["report"].target)):
        log(f"{variant}: the held-out customers have no next purchases to look up; all epochs kept")
        return None, None, None
    selection = EpochSelection(head, embed_all, feature_cache.ok, queries["selection"], val_rows,
                               patience=s.patience, k=s.selection_k, log=log, rule=s.selection_rule, seed=s.seed)
    return selection, queries, embed_all()
