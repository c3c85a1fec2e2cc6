"""Ensembling prediction lists: rank fusion, similarity scoring, votes; by hand and against a
plain-Python reference written from the definition (no hm_utils list helpers, nothing from benchmarks/)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hm_utils.core.embedding_index import ArticleEmbeddings
from hm_utils.ensemble.ensembling import PredictionList, anchor_queries, ensemble, read_submission_lists
from hm_utils.ranking.submission import make_submission, write_submission

POPULAR = np.arange(900, 912)


def padded(*ids):
    return list(ids) + [-1] * (12 - len(ids))


def ensemble_reference(lists, embeddings, queries, popular, w_sim=1.0, w_rank=1.0, w_vote=0.0, k=12):
    """The ensemble from its definition, customer by customer in plain Python.

    For customer c and article a: rank = round(sum over the lists holding a of weight / (position + 1),
    counting a list's first copy only, divided by the sum of all weights, 9 decimals); vote = lists
    holding a / lists; sim = cosine of a's vector with c's query, or rank again where a has no vector
    or c no query; score = w_sim * sim + w_rank * rank + w_vote * vote. The k best distinct articles,
    ties to the first appearance (list by list, position by position), then popular ids not yet listed.
    """
    keys = sorted({int(c) for pl in lists for c in pl.customer_keys})
    total_w = sum(pl.weight for pl in lists)
    use_sim = embeddings is not None and queries is not None and w_sim != 0
    vec_of = {}
    if use_sim:
        for i, a in enumerate(embeddings.article_ids.tolist()):
            if embeddings.has_embedding[i]:
                vec_of[a] = embeddings.matrix[i]
    out = []
    for c in keys:
        rr, votes, first = {}, {}, []
        for pl in lists:
            rows = pl.customer_keys.tolist()
            if c not in rows:
                continue
            seen = set()
            for pos, a in enumerate(pl.matrix[rows.index(c)].tolist()):
                if a == -1 or a in seen:
                    continue
                seen.add(a)
                if a not in rr:
                    first.append(a)
                rr[a] = rr.get(a, 0.0) + pl.weight / (pos + 1.0)
                votes[a] = votes.get(a, 0) + 1
        q = np.asarray(queries(np.array([c], np.int64)), np.float32)[0] if use_sim else None
        has_q = use_sim and float(np.abs(q).sum()) > 0
        score = {}
        for a in first:
            rank = float(np.round(rr[a] / total_w, 9))
            sim = float(np.dot(vec_of[a], q)) if has_q and a in vec_of else rank
            score[a] = w_sim * sim + w_rank * rank + w_vote * (votes[a] / len(lists))
        row = sorted(first, key=lambda a: (-score[a], first.index(a)))[:k]
        for a in np.asarray(popular).tolist():
            if len(row) < k and a not in row:
                row.append(a)
        out.append(row + [-1] * (k - len(row)))
    return np.array(keys, np.int64), np.array(out, np.int64)


def test_rank_only_ensemble_is_reciprocal_rank_fusion():
    a = PredictionList("a", [0], np.array([padded(1, 2, 3)]))
    b = PredictionList("b", [0, 5], np.array([padded(3, 2), padded(4)]))
    keys, mat = ensemble([a, b], None, None, POPULAR)
    # customer 0: 1 -> 1/2, 2 -> (1/2 + 1/2)/2 = 1/2, 3 -> (1/3 + 1)/2 = 2/3 -> 3, then 1 and 2 (tie: earlier column)
    assert keys.tolist() == [0, 5]
    assert mat[0, :3].tolist() == [3, 1, 2] and mat[0, 3:].tolist() == POPULAR[:9].tolist()
    # customer 5 appears only in b
    assert mat[1, 0] == 4 and len(set(mat[1].tolist())) == 12


def test_similarity_reorders_and_articles_without_embedding_keep_their_rank_score():
    emb = ArticleEmbeddings(np.array([1, 2, 3]),
                            np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32))
    a = PredictionList("a", [0], np.array([padded(2, 3, 1, 7)]))   # 7 has no embedding
    q = lambda keys: np.tile(np.array([[1.0, 0.0]], np.float32), (len(keys), 1))  # noqa: E731
    keys, mat = ensemble([a], emb, q, POPULAR, w_sim=1.0, w_rank=0.0)
    # cos to (1, 0): 1 -> 1.0, 3 -> 0.6, 2 -> 0.0; 7 keeps its rank score 1/4 = 0.25
    assert mat[0, :4].tolist() == [1, 3, 7, 2]
    # with rank weight 1: 2 -> 0 + 1 = 1, 3 -> 0.6 + 0.5 = 1.1, 1 -> 1 + 1/3, 7 -> 0.25 + 0.25
    keys, mat = ensemble([a], emb, q, POPULAR, w_sim=1.0, w_rank=1.0)
    assert mat[0, :4].tolist() == [1, 3, 2, 7]
    # a customer without a query vector: rank order only
    keys, mat = ensemble([a], emb, lambda k: np.zeros((len(k), 2), np.float32), POPULAR)
    assert mat[0, :4].tolist() == [2, 3, 1, 7]


def test_anchor_queries_and_alignment():
    emb = ArticleEmbeddings(np.array([1, 2]), np.array([[3.0, 4.0], [0.0, 2.0]], np.float32))
    q = anchor_queries(lambda keys: np.array([1, -1, 5])[keys], emb)
    np.testing.assert_allclose(q(np.array([0, 1, 2])), [[0.6, 0.8], [0, 0], [0, 0]])
    # the union of the lists' customers, sorted; a customer missing from a list still gets 12 articles
    keys, mat = ensemble([PredictionList("a", [3], [[1]]), PredictionList("b", [1], [[2]])], None, None, POPULAR)
    assert keys.tolist() == [1, 3] and mat[:, 0].tolist() == [2, 1] and mat[0, 1:].tolist() == POPULAR[:11].tolist()
    with pytest.raises(ValueError, match="more than once"):
        PredictionList("x", [1, 1], [[1], [2]])


def test_submission_file_as_input_list(tmp_path):
    customers = pd.DataFrame({"customer_key": np.arange(2, dtype=np.int32),
                              "customer_id": [f"{i:064x}" for i in range(2)]})
    sub = make_submission(customers, np.array([list(range(1, 13))]), POPULAR, customer_keys=[1])
    path = write_submission(sub, tmp_path / "s.csv")
    [pl] = read_submission_lists([path], customers, weights={"s": 0.5})
    assert pl.name == "s" and pl.weight == 0.5
    assert pl.customer_keys.tolist() == [0, 1]
    assert pl.matrix[1].tolist() == list(range(1, 13)) and pl.matrix[0].tolist() == POPULAR.tolist()
    with pytest.raises(ValueError, match="not in customers.csv"):
        read_submission_lists([path], customers.iloc[:1])


def test_notebook_helpers_score_lists_and_variants(tmp_path):
    from hm_utils.core.workdir import write_predictions
    from hm_utils.ensemble.ensembling import (combine_tables, customer_queries, evaluate_ensembles,
                                              read_prediction_lists, score_lists, subset_list)

    # customer 0 bought {1, 2}; customer 1 bought {5}
    hold = pd.DataFrame({"customer_key": [0, 0, 1], "article_id": [1, 2, 5]})
    write_predictions(tmp_path, "a", [0, 1, 2], np.array([padded(1, 9), padded(5), padded(7)]))
    write_predictions(tmp_path, "b", [0, 1], np.array([padded(2), padded(8, 5)]))
    lists = read_prediction_lists(tmp_path, ["a", "b"])
    scores = score_lists(lists, hold).set_index("list")["map12"]
    # a: customer 0 AP = (1/1)/2 = 1/2, customer 1 AP = 1 -> 3/4; b: 1/2 and (1/2)/1 -> 1/2
    assert scores["a"] == pytest.approx(0.75) and scores["b"] == pytest.approx(0.5)
    assert subset_list(lists[0], [1, 2]).customer_keys.tolist() == [1, 2]
    variants, out = evaluate_ensembles(lists, None, None, POPULAR, hold, {"rank": {"w_sim": 0.0, "w_rank": 1.0}})
    # rank fusion, customer 0: 1 -> 1/2, 2 -> 1/2, 9 -> 1/4 -> [1, 2, 9] (tie 1/2: earlier column) AP = 1
    # customer 1: 5 -> (1 + 1/2)/2 = 3/4, 8 -> 1/2 -> [5, 8] AP = 1; customer 2 is not in the held-out week
    assert out["rank"][0].tolist() == [0, 1]
    assert variants["map12"].iloc[0] == pytest.approx(1.0)
    table = combine_tables(score_lists(lists, hold), variants)
    assert table["list"].tolist() == ["rank", "a", "b"] and table["kind"].tolist() == ["ensemble", "input", "input"]
    with pytest.raises(FileNotFoundError, match="06_candidate_ranking"):
        read_prediction_lists(tmp_path, ["missing"])
    tx = pd.DataFrame({"t_dat": pd.to_datetime(["2020-01-01", "2020-01-02"]), "customer_key": [0, 0],
                       "article_id": [1, 1], "price": [0.1, 0.1]})
    emb = ArticleEmbeddings(np.array([1]), np.array([[0.0, 2.0]], np.float32))
    for mode in ("profile", "anchor"):
        np.testing.assert_allclose(customer_queries(tx, emb, mode)(np.array([0, 1])), [[0, 1], [0, 0]])
    with pytest.raises(ValueError, match="unknown query mode"):
        customer_queries(tx, emb, "nope")


# ----------------------------------------------------------- the fast path ---
def _hand_case(extra_in_a=False, dup_in_b=False):
    """2 customers, 3 lists (customer 1 is missing from list c), 2-D embeddings."""
    emb = ArticleEmbeddings(np.array([1, 2, 3, 4, 5]),
                            np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6], [0.0, 0.0]], np.float32),
                            np.array([True, True, True, True, False]))    # 5 has no embedding
    a = PredictionList("a", [0, 1], np.array([padded(1, 2, 3), padded(4, 7) if extra_in_a else padded(4)]))
    b = PredictionList("b", [0, 1], np.array([padded(3, 4), padded(2, 4, 2) if dup_in_b else padded(2, 4)]))
    c = PredictionList("c", [0], np.array([padded(5, 1)]))
    anchors = np.array([1, 2])                   # customer 0's query is (1, 0), customer 1's (0, 1)
    return [a, b, c], emb, anchor_queries(lambda keys: anchors[keys], emb)


def test_fast_ensemble_two_customers_three_lists_by_hand():
    lists, emb, q = _hand_case()
    keys, mat = ensemble(lists, emb, q, POPULAR, w_sim=1.0, w_rank=1.0)
    # customer 0, rank = round(sum of 1/(position+1) / 3, 9), cosine with (1, 0):
    #   1: (1 + 1/2)/3 = 0.5          cos 1.0 -> 1.5
    #   2: (1/2)/3 = 0.166666667      cos 0.0 -> 0.166666667
    #   3: (1/3 + 1)/3 = 0.444444444  cos 0.6 -> 1.044444444
    #   4: (1/2)/3 = 0.166666667      cos 0.8 -> 0.966666667
    #   5: (1)/3 = 0.333333333        no embedding: rank twice -> 0.666666666
    assert keys.tolist() == [0, 1]
    assert mat[0, :5].tolist() == [1, 3, 4, 5, 2] and mat[0, 5:].tolist() == POPULAR[:7].tolist()
    # customer 1 (not in list c; the weights still sum to 3), cosine with (0, 1):
    #   4: (1 + 1/2)/3 = 0.5  cos 0.6 -> 1.1;   2: 1/3 = 0.333333333  cos 1.0 -> 1.333333333
    assert mat[1, :2].tolist() == [2, 4]
    # the plain-Python definition gives the same lists
    assert (ensemble_reference(lists, emb, q, POPULAR, w_sim=1.0, w_rank=1.0)[1] == mat).all()


def test_fast_ensemble_unknown_article_repeat_inside_a_list_and_votes_by_hand():
    lists, emb, q = _hand_case(extra_in_a=True, dup_in_b=True)
    keys, mat = ensemble(lists, emb, q, POPULAR)
    # customer 1: 7 is not in the embeddings at all: rank (1/2)/3 = 0.166666667 counted twice;
    # b's second 2 adds nothing: 2 -> 1/3 + 1.0, 4 -> 0.5 + 0.6, 7 -> 0.333333334
    assert mat[1, :3].tolist() == [2, 4, 7]
    assert mat[0, :5].tolist() == [1, 3, 4, 5, 2]
    # votes only: customer 0: 1 and 3 in two lists (2/3), 2, 4, 5 in one (1/3); ties go to the
    # article seen first (list a before b before c, position by position): 1 (a0), 3 (a2); 2 (a1), 4 (b1), 5 (c0)
    keys, mat = ensemble(lists, emb, q, POPULAR, w_sim=0.0, w_rank=0.0, w_vote=1.0)
    assert mat[0, :5].tolist() == [1, 3, 2, 4, 5]
    # customer 1: 4 in a and b (2/3); 2 in b once however often b lists it, 7 in a (1/3): 2 (b0) after 7 (a1)
    assert mat[1, :3].tolist() == [4, 7, 2]
    assert (ensemble_reference(lists, emb, q, POPULAR, w_sim=0.0, w_rank=0.0, w_vote=1.0)[1] == mat).all()


def test_fast_ensemble_anchor_and_plain_queries_threads_and_blocks_agree():
    lists, emb, q = _hand_case()
    plain = lambda keys: q(keys)   # noqa: E731  - a plain function: no anchor rows, one query per customer
    results = []
    for queries in (q, plain):     # anchor rows (cosines shared per anchor) or one query vector per customer
        for threads, block in ((1, 2048), (2, 1)):
            results.append(ensemble(lists, emb, queries, POPULAR, threads=threads, block_size=block)[1])
    assert all((r == results[0]).all() for r in results)
    assert results[0][0, :5].tolist() == [1, 3, 4, 5, 2] and results[0][1, :2].tolist() == [2, 4]


def _kernel_case(pos_rows, rr, lists_of_col, sims=None, k=3, w_sim=1.0, w_rank=1.0, w_vote=0.0, weights_sum=1.0):
    """Run ``ensemble_rows`` on hand-built aligned rows: codes are positions (no extra ids), code c's
    unit vector has cosine ``sims[c]`` with the one query (None: no similarity)."""
    from hm_utils.ensemble.kernels import ensemble_rows

    pos = np.asarray(pos_rows, np.int32)
    n_codes = int(pos.max()) + 1
    code_of_pos = np.append(np.arange(n_codes, dtype=np.int32), n_codes)
    ids_pad = np.append(np.arange(n_codes, dtype=np.int64) + 100, -1)
    use_sim = sims is not None
    if use_sim:   # 2-d unit vectors at the angle giving each cosine with the query (1, 0)
        sims = np.asarray(sims, np.float64)
        scorable = np.stack([sims, np.sqrt(1 - sims ** 2)], axis=1).astype(np.float32)
        queries = np.array([[1.0, 0.0]], np.float32)
    else:
        scorable, queries = np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32)
    out = np.empty((len(pos), k), np.int32)
    ensemble_rows(pos, code_of_pos, n_codes, np.asarray(rr, np.float64),
                  np.asarray(lists_of_col, np.int64), int(max(lists_of_col)) + 1, weights_sum, scorable, queries,
                  np.zeros(len(pos), np.int64), use_sim, w_sim, w_rank, w_vote, ids_pad, out)
    return out


def test_kernel_merges_copies_keeps_ties_in_first_appearance_order_and_pads():
    # two lists of two columns: reciprocal ranks 1, 1/2 per list (weights 1, sum 2)
    rr, lists_of_col = [1.0, 0.5, 1.0, 0.5], [0, 0, 1, 1]
    # customer 0: article 0 at a0 and b1 -> (1 + 1/2) / 2 = 0.75; 1 at a1 -> 0.25; 2 at b0 -> 0.5
    # customer 1: 3 at a0 and b0 (1.0); PAD; 0 at b1 (0.25): two distinct, the third slot is PAD
    out = _kernel_case([[0, 1, 2, 0], [3, -1, 3, 0]], rr, lists_of_col, w_sim=0.0, weights_sum=2.0)
    assert out.tolist() == [[100, 102, 101], [103, 100, -1]]
    # equal scores: the first appearance wins (1 at a1 before 2 at b1); 1 ulp more beats it
    out = _kernel_case([[0, 1, 3, 2]], rr, lists_of_col, w_sim=0.0, weights_sum=2.0)
    assert out.tolist() == [[100, 103, 101]]
    out = _kernel_case([[0, 1, 3, 2]], [1.0, 0.5, 1.0, np.nextafter(0.5, 1.0)], lists_of_col, w_sim=0.0,
                       weights_sum=2.0, k=4)
    assert out.tolist() == [[100, 103, 101, 102]]   # rounding to 9 decimals makes 1 ulp a tie again
    # a repeat inside one list counts once for it: 1 twice in b scores 1/2 like 0, not 3/4
    out = _kernel_case([[0, 2, 1, 1]], rr, lists_of_col, w_sim=0.0, weights_sum=2.0)
    assert out.tolist() == [[100, 101, 102]]
    # votes count lists
    out = _kernel_case([[1, 0, 0, 2]], rr, lists_of_col, w_sim=0.0, w_rank=0.0, w_vote=1.0, weights_sum=2.0)
    assert out.tolist() == [[100, 101, 102]]        # 0 in both lists (vote 1), 1 and 2 in one (1/2 each)


def test_kernel_scores_cosine_plus_rank_by_hand():
    # one list of three: ranks 1, 1/2, 1/3; cosines 0.1, 0.9, 0.5
    # scores: 0.1 + 1 = 1.1, 0.9 + 0.5 = 1.4, 0.5 + 0.333333333 = 0.833...: order 1, 0, 2
    out = _kernel_case([[0, 1, 2]], [1.0, 0.5, 1 / 3], [0, 0, 0], sims=[0.1, 0.9, 0.5])
    assert out.tolist() == [[101, 100, 102]]
    # similarity alone (w_rank 0): 1 (0.9), 2 (0.5), 0 (0.1)
    out = _kernel_case([[0, 1, 2]], [1.0, 0.5, 1 / 3], [0, 0, 0], sims=[0.1, 0.9, 0.5], w_rank=0.0)
    assert out.tolist() == [[101, 102, 100]]


def test_fast_ensemble_matches_the_definition_on_random_lists_with_exact_cosines():
    """Embeddings with four +-0.5 entries (unit norm, exact float32 dot products: many exact
    ties), lists drawn from 40 articles with repeats, PAD and missing customers, unequal weights."""
    rng = np.random.default_rng(3)
    n_art, d = 40, 16
    vec = np.zeros((n_art, d), np.float32)
    for i in range(n_art):
        vec[i, rng.choice(d, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    has = rng.random(n_art) > 0.1
    emb = ArticleEmbeddings(np.arange(100, 100 + n_art), vec, has)
    ids = np.arange(95, 100 + n_art)                     # 95..99 are not in the embeddings
    lists = []
    for li, w in enumerate([1.0, 0.5, 2.0]):
        keys = np.sort(rng.choice(300, 250, replace=False))
        mat = rng.choice(ids, (250, 12))
        mat[rng.random((250, 12)) < 0.1] = -1
        lists.append(PredictionList(f"l{li}", keys, mat, w))
    anchors = rng.choice(np.r_[ids, -1], 300)
    q = anchor_queries(lambda keys: anchors[keys], emb)
    for kw in ({}, {"w_sim": 0.0}, {"w_rank": 0.0}, {"w_vote": 0.7, "w_sim": 0.5}, {"w_sim": 2.0, "w_rank": 0.3}):
        k1, fast = ensemble(lists, emb, q, POPULAR, block_size=64, **kw)
        k2, ref = ensemble_reference(lists, emb, q, POPULAR, **kw)
        assert (k1 == k2).all() and (fast == ref).all(), kw
        k3, plain = ensemble(lists, emb, lambda keys: q(keys), POPULAR, block_size=64, **kw)
        assert (plain == ref).all(), kw


def test_ensemble_settings_from_profile_and_06s_metrics():
    from dataclasses import asdict

    from hm_utils.core.config import get_profile
    from hm_utils.core.workdir import HoldoutSplit
    from hm_utils.ensemble.ensembling import EnsembleSettings

    profile = get_profile("tiny")
    ranking = HoldoutSplit(5, ("2020-09-16",), np.array([1, 2]), rankers=("a", "b"), bootstrap_samples=50)
    s = EnsembleSettings.from_profile(profile, ranking, seed=7)
    assert (s.holdout_days, s.input_rankers, s.bootstrap_samples, s.query_mode) == (5, ("a", "b"), 50, "profile")
    assert s.embedding_name(["combined", "image_only"]) == "image_only" and s.embedding_name([]) is None
    s = EnsembleSettings.from_profile(profile, HoldoutSplit(7, ("2020-09-16",), np.array([1]), ("a",)),
                                      holdout_days=3, input_rankers=["x"],
                                      input_weights={"x": 2.0}, query_mode="anchor", ensemble_embedding="combined")
    assert (s.holdout_days, s.input_rankers, s.bootstrap_samples) == (3, ("x",), 1000)
    assert s.embedding_name(["image_only"]) == "combined"
    assert EnsembleSettings.from_profile(profile).holdout_days == profile.holdout_days
    rec = asdict(s)
    assert rec["input_weights"] == {"x": 2.0} and rec["profile"] == "tiny" and rec["seed"] == 42
    with pytest.raises(ValueError, match="unknown query mode"):
        EnsembleSettings.from_profile(profile, ranking, query_mode="nope")
    with pytest.raises(ValueError, match="unknown ensemble variant"):
        EnsembleSettings.from_profile(profile, ranking, ensemble_variant="nope")
