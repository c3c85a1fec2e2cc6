"""Ensembling prediction lists: rank fusion, similarity scoring, alignment; by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hm_utils.ensembling import (
    PredictionList,
    align_lists,
    anchor_queries,
    ensemble,
    rank_scores,
    read_submission_list,
    row_group_sum,
)
from hm_utils.ranking import ArticleEmbeddings
from hm_utils.submission import make_submission, write_submission

POPULAR = np.arange(900, 912)


def padded(*ids):
    return list(ids) + [-1] * (12 - len(ids))


def test_row_group_sum_by_hand():
    keys = np.array([[1, 2, 1, 3, 2, 1]])
    vals = np.array([[1.0, 2, 3, 4, 5, 6]])
    # key 1: 1+3+6 = 10, key 2: 2+5 = 7, key 3: 4
    assert row_group_sum(keys, vals).tolist() == [[10, 7, 10, 4, 7, 10]]


def test_rank_scores_reciprocal_rank_and_vote_by_hand():
    # list A: [1, 2], list B: [2, 3, 2]; weights 1 and 1
    cand = np.array([padded(1, 2) + padded(2, 3, 2)])
    rank, vote = rank_scores(cand, 2, [1.0, 1.0])
    # 1: A rank 0 -> 1/1 = 1              -> 1/2   vote 1/2
    # 2: A rank 1 -> 1/2, B rank 0 -> 1    -> 3/4   vote 2/2 (B's repeat of 2 counts once)
    # 3: B rank 1 -> 1/2                   -> 1/4   vote 1/2
    assert rank[0, 0] == pytest.approx(0.5) and rank[0, 1] == pytest.approx(0.75)
    assert rank[0, 12] == pytest.approx(0.75) and rank[0, 13] == pytest.approx(0.25)
    assert vote[0, [0, 1, 13]].tolist() == [0.5, 1.0, 0.5]
    assert rank[0, 2] == 0 and vote[0, 2] == 0  # padding


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
    keys, cand = align_lists([PredictionList("a", [3], [[1]]), PredictionList("b", [1], [[2]])])
    assert keys.tolist() == [1, 3] and cand.shape == (2, 24)
    assert cand[0, 12] == 2 and cand[1, 0] == 1 and cand[0, 0] == -1
    with pytest.raises(ValueError, match="more than once"):
        PredictionList("x", [1, 1], [[1], [2]])


def test_submission_file_as_input_list(tmp_path):
    customers = pd.DataFrame({"customer_key": np.arange(2, dtype=np.int32),
                              "customer_id": [f"{i:064x}" for i in range(2)]})
    sub = make_submission(customers, np.array([list(range(1, 13))]), POPULAR, customer_keys=[1])
    path = write_submission(sub, tmp_path / "s.csv")
    pl = read_submission_list(path, customers)
    assert pl.customer_keys.tolist() == [0, 1]
    assert pl.matrix[1].tolist() == list(range(1, 13)) and pl.matrix[0].tolist() == POPULAR.tolist()
    with pytest.raises(ValueError, match="not in customers.csv"):
        read_submission_list(path, customers.iloc[:1])


def test_notebook_helpers_score_lists_and_variants(tmp_path):
    from hm_utils.ensembling import (
        combine_tables, customer_queries, evaluate_ensembles, read_prediction_lists, score_lists, subset_list,
    )
    from hm_utils.ranking import write_predictions

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
