"""Benchmark: one training epoch with and without the backbone feature cache.

Same model (frozen backbone + the original head), same triplets, same batch
size, in the same process:

* **cached** (our way): every article's image goes once through the frozen
  backbone (:func:`hm_utils.model.feature_cache.compute_feature_cache`); an epoch then
  trains only the head on gathered features.
* **baseline** (plain): every epoch decodes the three images of every triplet
  from disk (the same ``tf.data`` reduced-scale decoder) and runs them through
  the whole siamese tower, the frozen backbone included.

``--scale`` is the fraction of the competition: triplets = scale x 1,371,980
customers (one triplet each, the original rule), articles = scale x 105,542.
Images are the real photos of ``../shared/hm_sample`` (~1750 x 1166 JPEGs, reused
in turn) or, without it, generated JPEGs of the same size. The uncached epoch is
far too slow to run whole on a CPU, so it is timed on ``--steps`` batches (after
one warm-up batch) and scaled to the epoch's number of batches; the feature
extraction likewise on up to ``--max-images`` images. Printed: measured times,
the per-epoch ratio, and the break-even number of epochs, plus peak RSS.

Run: ``python -m benchmarks.bench_training --scale 0.02 [--backbones small_cnn,resnet50]``
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

N_CUSTOMERS_FULL = 1_371_980
N_ARTICLES_FULL = 105_542


def _image_paths(n: int, workdir: Path) -> list[str]:
    """n image paths: hm_sample's real photos in turn, or generated 1750 x 1166 JPEGs."""
    from hm_utils.core.config import SHARED_SAMPLE

    real = sorted((Path(os.environ.get("HM_SAMPLE_DIR", SHARED_SAMPLE)) / "images").glob("*/*.jpg"))
    if not real:
        from PIL import Image

        rng = np.random.default_rng(0)
        real = []
        for i in range(16):
            arr = np.clip(rng.normal(128, 60, (1750, 1166, 3)), 0, 255).astype(np.uint8)
            p = workdir / f"gen_{i}.jpg"
            Image.fromarray(arr).save(p, quality=90)
            real.append(p)
    return [str(real[i % len(real)]) for i in range(n)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_backbone(name: str, n_triplets: int, n_articles: int, image_size, batch_size: int, steps: int,
                   max_images: int, seed: int = 0) -> dict:
    import keras
    import tensorflow as tf

    from hm_utils.model.feature_cache import compute_feature_cache
    from hm_utils.model.losses import TripletLoss
    from hm_utils.model.siamese import assemble_embedding_model, build_backbone, build_head, build_siamese
    from hm_utils.model.triplet_datasets import cached_triplet_dataset, image_triplet_dataset

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        paths = np.array(_image_paths(n_articles, Path(tmp)), dtype=object)
        rows = rng.integers(0, n_articles, size=(n_triplets, 3))
        bb = build_backbone(name, image_size, "avg", weights=None, trainable=False)
        head = build_head(bb.output_shape[-1], "image_only", 550)
        tower = assemble_embedding_model(bb, head, "image_only")
        n_batches = -(-n_triplets // batch_size)

        # --- ours: features once, then head-only epochs
        n_feat = min(n_articles, max_images)
        cache = compute_feature_cache(bb, np.arange(n_feat), paths[:n_feat], batch_size=32, progress=False)
        feat_s_measured = cache.seconds
        feat_s = feat_s_measured * n_articles / n_feat
        feats = np.resize(cache.features, (n_articles, cache.features.shape[1]))  # tile the measured rows
        siamese_head = build_siamese(head)
        siamese_head.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=TripletLoss())
        ds = cached_triplet_dataset(rows, tf.constant(feats), None, batch_size, True, seed)
        siamese_head.fit(ds.take(2), epochs=1, verbose=0, shuffle=False)  # trace once
        t0 = time.perf_counter()
        siamese_head.fit(ds, epochs=1, verbose=0, shuffle=False)
        cached_epoch_s = time.perf_counter() - t0

        # --- baseline: decode + backbone for every triplet, every epoch
        siamese_full = build_siamese(tower)
        siamese_full.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=TripletLoss())
        ds_img = image_triplet_dataset(rows[: (steps + 1) * batch_size], paths, None, image_size, batch_size,
                                       False, seed)
        siamese_full.fit(ds_img.take(1), epochs=1, verbose=0, shuffle=False)  # warm-up / trace
        t0 = time.perf_counter()
        siamese_full.fit(ds_img.skip(1).take(steps), epochs=1, verbose=0, shuffle=False)
        step_s = (time.perf_counter() - t0) / steps
        plain_epoch_s = step_s * n_batches

    ratio = plain_epoch_s / cached_epoch_s
    # epochs after which the cache (one extraction + cheap epochs) is ahead of the plain way
    break_even = feat_s / max(plain_epoch_s - cached_epoch_s, 1e-9)
    return {"backbone": name, "image_size": tuple(image_size), "n_triplets": n_triplets, "n_articles": n_articles,
            "feature_images_measured": n_feat, "feature_s_measured": feat_s_measured,
            "feature_s": feat_s, "images_per_s": n_feat / feat_s_measured,
            "cached_epoch_s": cached_epoch_s, "plain_step_s": step_s, "plain_steps_measured": steps,
            "plain_epoch_s": plain_epoch_s, "ratio": ratio, "break_even_epochs": break_even,
            "peak_rss_mb": _peak_rss_mb()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.02, help="fraction of the competition size")
    ap.add_argument("--backbones", default="small_cnn,resnet50")
    ap.add_argument("--image-size", default="300x200", help="HxW fed to the model")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="batches timed for the uncached epoch")
    ap.add_argument("--max-images", type=int, default=256, help="images timed for the feature extraction")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    size = tuple(int(v) for v in args.image_size.lower().split("x"))
    n_triplets = max(args.batch_size, round(args.scale * N_CUSTOMERS_FULL))
    n_articles = max(32, round(args.scale * N_ARTICLES_FULL))
    print(f"bench_training: scale {args.scale}: {n_triplets:,} triplets, {n_articles:,} articles, images {size}, "
          f"batch {args.batch_size}; cpu cores {os.cpu_count()}")
    for name in [b.strip() for b in args.backbones.split(",") if b.strip()]:
        r = bench_backbone(name, n_triplets, n_articles, size, args.batch_size, args.steps, args.max_images)
        print(f"\n[{name}] feature cache: {r['feature_images_measured']} images in {r['feature_s_measured']:.1f} s "
              f"({r['images_per_s']:.1f} images/s) -> {r['feature_s']:.1f} s for {n_articles:,} articles (once)")
        print(f"[{name}] epoch with cache (head only): {r['cached_epoch_s']:.2f} s (measured, whole epoch)")
        print(f"[{name}] epoch without cache: {r['plain_step_s']:.2f} s/batch x {-(-n_triplets // args.batch_size)} "
              f"batches = {r['plain_epoch_s']:.1f} s (timed on {r['plain_steps_measured']} batches)")
        print(f"[{name}] ratio (no cache / cache) per epoch: {r['ratio']:.1f}x; the cache pays for itself after "
              f"{r['break_even_epochs']:.2f} epochs; peak RSS {r['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
