"""What the ranking benchmarks read from a work directory that notebook 04 has filled."""
from __future__ import annotations

from pathlib import Path


def load_ranking_inputs(work_dir):
    """``(transactions, customers, articles, {label: ArticleEmbeddings})`` from ``work_dir`` (the embedding files
    keyed by :func:`hm_utils.core.embedding_index.variant_label`: ``image``, ``combined``); None, after saying so,
    when notebook 04 has not written its embeddings there."""
    work = Path(work_dir)
    if not (work / "article_embeddings.parquet").is_file():
        print(f"{work}: no embeddings from notebook 04 -- run the series first; skipped")
        return None
    from hm_utils.core.embedding_index import variant_label
    from hm_utils.core.workdir import load_articles, load_customers, load_embedding_files, load_transactions

    emb = {variant_label(n): e for n, e in load_embedding_files(work).items()}
    return load_transactions(work), load_customers(work), load_articles(work), emb
