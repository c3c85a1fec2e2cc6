"""Benchmark: the embedding head's training on stored backbone features (notebook 03), against
the head's FLOP count and the machine's measured matrix-multiply throughput, with the compile
options side by side in the same process.

The head is the profile's (:func:`hm_utils.model.siamese.build_head`: 1,280 features -> Dense 1,100 relu
-> BatchNorm -> Dense 550 relu; "combined" adds the tabular encoder), trained as notebook 03
trains it (:func:`hm_utils.model.siamese.build_siamese`, the triplet loss, AdamW, batch ``--batch-size``
triplets, :func:`hm_utils.model.triplet_datasets.cached_triplet_dataset`) on ``--articles`` random
feature rows and ``--triplets`` random triplets (speed does not depend on the values). Each
option set trains the same model from the same seed for ``--epochs`` epochs; seconds per epoch
is the median over the epochs after the first (which traces). Options (``Model.compile``):

* ``baseline``: Keras's defaults as notebook 03 compiled it (on a CPU-only machine Keras 3 runs
  the TensorFlow backend without XLA: ``jit_compile="auto"`` resolves to False);
* ``xla``: ``jit_compile=True`` (the training step compiled by XLA: fused kernels);
* ``spe``: ``steps_per_execution=N`` (N steps per call into the graph: less Python per step);
* ``xla+spe``: both.

FLOPs per triplet (dense layers only; BatchNorm, ReLU and the loss are a few %): three rows
(anchor, positive, negative), each 2·in·out forward per Dense layer, 2·in·out for the weight
gradient and 2·in·out for the input gradient (not for the first layer, whose input is data);
a validation triplet costs the forward only. Matmul throughput: ``tf.matmul`` float32 of the
first layer's own shape ([3B, 1280] x [1280, 1100]) and of 2048 x 2048, in GFLOP/s.

    python -m benchmarks.bench_head_training                      # demo settings, image_only and combined
    python -m benchmarks.bench_head_training --triplets 27440 --articles 2111   # scale 0.02
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def matmul_gflops(m: int, k: int, n: int, seconds: float = 2.0) -> float:
    import tensorflow as tf

    a = tf.random.normal([m, k])
    b = tf.random.normal([k, n])
    f = tf.function(lambda x, y: tf.matmul(x, y))
    f(a, b).numpy()
    reps, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        f(a, b).numpy()
        reps += 1
    return 2.0 * m * k * n * reps / (time.perf_counter() - t) / 1e9


def head_flops(head) -> tuple[float, float]:
    """(training FLOPs per row, forward FLOPs per row) of the head's Dense layers. A layer fed
    only by the data (``head_dense`` of image_only, ``tab_dense1``) needs no input gradient;
    ``head_dense`` of combined is counted with its whole input gradient (it needs the tabular
    part's 1,100 of its 2,380 inputs: a 3 % overcount of the total)."""
    import keras

    data_fed = {"tab_dense1"} | ({"head_dense"} if "tabular" not in head.input else set())
    fwd = train = 0.0
    for layer in head.layers:
        if isinstance(layer, keras.layers.Dense):
            k_in, k_out = (int(v) for v in layer.kernel.shape)
            f = 2.0 * k_in * k_out
            fwd += f
            train += f * (2 if layer.name in data_fed else 3)
    return train, fwd


def _epoch_timer_class():
    """The training's own per-epoch timer (:class:`hm_utils.model.training.EpochTimer`)."""
    from hm_utils.model.training import EpochTimer

    return EpochTimer


def train_once(variant: str, options: dict, feats, tab, train_rows, val_rows, args) -> dict:
    import keras
    import tensorflow as tf

    from hm_utils.model.losses import make_loss
    from hm_utils.model.siamese import build_head, build_siamese, tabular_stats
    from hm_utils.model.triplet_datasets import cached_triplet_dataset

    keras.utils.set_random_seed(42)
    stats = tabular_stats(tab) if variant == "combined" else None
    head = build_head(feats.shape[1], variant, 550, 1100, False, stats)
    model = build_siamese(head)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=4e-3),
                  loss=make_loss("triplet", margin=0.2), **options)
    feats_t = tf.constant(feats)
    tab_t = tf.constant(tab) if variant == "combined" else None
    timer = _epoch_timer_class()()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        hist = model.fit(cached_triplet_dataset(train_rows, feats_t, tab_t, args.batch_size, True, 42),
                         validation_data=cached_triplet_dataset(val_rows, feats_t, tab_t, args.batch_size, False, 42),
                         epochs=args.epochs, callbacks=[timer], verbose=0, shuffle=False)
    sec = float(np.median(timer.seconds[1:]))
    train_f, fwd_f = head_flops(head)
    flop = 3 * (len(train_rows) * train_f + len(val_rows) * fwd_f)
    return {"seconds_per_epoch": sec, "triplets_per_s": (len(train_rows) + len(val_rows)) / sec,
            "train_triplets_per_s": len(train_rows) / sec, "gflops": flop / sec / 1e9,
            "final_loss": float(hist.history["loss"][-1]), "final_val_loss": float(hist.history["val_loss"][-1]),
            "mflop_per_triplet": 3 * train_f / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=2724, help="feature rows (demo: 2,724 with a photo)")
    ap.add_argument("--triplets", type=int, default=6725, help="triplets (demo: 6,725; 80 %% train)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--spe", type=int, default=16, help="steps_per_execution of the spe options")
    ap.add_argument("--variants", default="image_only,combined")
    ap.add_argument("--options", default="baseline,xla,spe,xla+spe")
    ap.add_argument("--rounds", type=int, default=2, help="times each option set is trained (interleaved)")
    args = ap.parse_args(argv)
    import tensorflow as tf

    rng = np.random.default_rng(0)
    # features like the backbone's: non-negative (after ReLU6 + average pooling), mean ~0.4
    feats = np.maximum(rng.normal(0.3, 0.5, (args.articles, 1280)), 0).astype(np.float32)
    tab = rng.normal(0, 1, (args.articles, 11)).astype(np.float32)
    rows = rng.integers(0, args.articles, (args.triplets, 3))
    n_val = args.triplets // 5
    train_rows, val_rows = rows[n_val:], rows[:n_val]
    print(f"bench_head_training: {len(train_rows):,} training + {len(val_rows):,} validation triplets over "
          f"{args.articles:,} articles, batch {args.batch_size}, {args.epochs} epochs; cores {os.cpu_count()}, "
          f"load {', '.join(f'{v:.2f}' for v in os.getloadavg())}; TensorFlow {tf.__version__}", flush=True)
    mm = {"first layer [%d,1280]x[1280,1100]" % (3 * args.batch_size): matmul_gflops(3 * args.batch_size, 1280, 1100),
          "2048 x 2048": matmul_gflops(2048, 2048, 2048)}
    for k, v in mm.items():
        print(f"matmul float32 {k}: {v:.0f} GFLOP/s", flush=True)
    peak = max(mm.values())
    opts = {"baseline": {}, "xla": {"jit_compile": True}, "spe": {"steps_per_execution": args.spe},
            "xla+spe": {"jit_compile": True, "steps_per_execution": args.spe}}
    chosen = [o.strip() for o in args.options.split(",") if o.strip()]
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        res = {o: [] for o in chosen}
        for _ in range(args.rounds):
            for o in chosen:
                res[o].append(train_once(variant, opts[o], feats, tab, train_rows, val_rows, args))
        base = np.median([r["triplets_per_s"] for r in res["baseline"]]) if "baseline" in res else None
        print(f"\n[{variant}] {res[chosen[0]][0]['mflop_per_triplet']:.1f} MFLOP per training triplet "
              f"(dense layers, 3 rows, forward + backward)", flush=True)
        for o in chosen:
            tps = [r["triplets_per_s"] for r in res[o]]
            gf = [r["gflops"] for r in res[o]]
            loss = [r["final_loss"] for r in res[o]]
            vloss = [r["final_val_loss"] for r in res[o]]
            ratio = f"; {np.median(tps) / base:.2f}x baseline" if base else ""
            print(f"[{variant}] {o:8s} {np.median(tps):7.0f} triplets/s ({min(tps):.0f}-{max(tps):.0f}); "
                  f"{np.median(gf):5.1f} GFLOP/s = {100 * np.median(gf) / peak:.0f}% of the best matmul; "
                  f"final loss {np.median(loss):.4f} (val {np.median(vloss):.4f}){ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
