"""PRODUCT_POSITIVES against the default, on a work dir where 01-03 ran (issue 19, item 5).

    python -m benchmarks.measure_product_positives --work-dir work/demo [--ratio 1.0] [--loss triplet]

Trains the image-only head twice from 03's stored features (same seed, same customer split): the default, and
with ``product_positives=ratio`` (catalogue triplets whose positive is another colour of the anchor's product).
Prints, for each: the held-out customers' next-purchase recall@100 (report half, paired against the features,
:mod:`hm_utils.model.epoch_selection`) and, on the products held out from the catalogue triplets, the share of
articles whose nearest neighbour (cosine, itself excluded, among all articles with features) is another colour
of the same product; the pretrained features' share on the same articles beside them.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np


def same_product_nn(vectors: np.ndarray, ok: np.ndarray, product: np.ndarray, queries: np.ndarray) -> float:
    """Share of ``queries`` (rows) whose nearest ok neighbour (cosine, itself excluded) has their product."""
    u = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = u[queries] @ u.T
    sims[:, ~ok] = -np.inf
    sims[np.arange(len(queries)), queries] = -np.inf
    return float((product[np.argmax(sims, axis=1)] == product[queries]).mean()) if len(queries) else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.measure_product_positives")
    p.add_argument("--work-dir", type=Path, required=True)
    p.add_argument("--profile", default="demo")
    p.add_argument("--ratio", type=float, default=1.0)
    p.add_argument("--loss", default="triplet")
    args = p.parse_args(argv)

    from hm_utils.core.config import BACKBONE_FEATURES, PRODUCT_CODE
    from hm_utils.core.workdir import load_articles, load_images, load_transactions, load_triplets
    from hm_utils.model.feature_store import load_features
    from hm_utils.model.siamese import build_backbone
    from hm_utils.model.epoch_selection import embed_features
    from hm_utils.model.training import TrainingSettings, train_siamese
    from hm_utils.triplets.mining import filter_with_images

    w = args.work_dir
    arts, imgs, tx = load_articles(w), load_images(w), load_transactions(w)
    trip, _ = filter_with_images(load_triplets(w, "original"), imgs)
    base = TrainingSettings.from_profile(args.profile, loss=args.loss)
    bb = build_backbone(base.backbone, base.image_size, base.pooling, base.weights, trainable=False, seed=base.seed)
    cache = load_features(w, BACKBONE_FEATURES)
    product = arts.set_index("article_id").loc[cache.article_ids, PRODUCT_CODE].to_numpy(np.int64)
    runs = {}
    for name, s in (("default", base), (f"product_positives={args.ratio}", replace(base, product_positives=args.ratio))):
        runs[name] = train_siamese(trip, arts, imgs, s, "image_only", backbone_model=bb, feature_cache=cache,
                                   verbose=0, transactions=tx, log=lambda *a: None)
    held = np.asarray(runs[f"product_positives={args.ratio}"].report["held_out_products"], np.int64)
    sib = np.isin(product, held) & cache.ok
    counts = np.bincount(np.unique(product[sib], return_inverse=True)[1]) if sib.any() else np.zeros(0)
    queries = np.flatnonzero(sib)
    print(f"{len(held)} products held out from the catalogue triplets, {len(queries)} of their articles with features "
          f"({int((counts > 1).sum())} products with 2+ of them)")
    feats = np.asarray(cache.features)
    print(f"pretrained features: same-product nearest neighbour {same_product_nn(feats, cache.ok, product, queries):.3f}")
    for name, run in runs.items():
        emb, ok = embed_features(run.model, cache, arts)
        h = run.report["heldout"]
        g = h["vs_features"]["trained"]
        print(f"{name}: kept epoch {run.report['best_epoch']} of {run.report['epochs']}; held-out recall@100 "
              f"{h['recall']['trained']:.4f} (features {h['recall']['features']:.4f}; gain {g['diff']:+.4f} "
              f"[{g['lo']:+.4f}, {g['hi']:+.4f}], {h['n_customers']} customers, {h['n_queries']} purchases); "
              f"same-product nearest neighbour on held-out products {same_product_nn(emb, ok, product, queries):.3f}"
              f"; triplet accuracy {run.report['trained_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
