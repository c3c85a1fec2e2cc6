"""Benchmark: the frozen backbone's pass on OpenVINO against Keras, in the same process.

The backbone is the profiles' EfficientNet-Lite0 with its ImageNet weights at 300 x 200
(average pooling, 1280 features), as notebook 03 runs it. Two image sets:

* real: photos of ``../shared/hm_catalogue`` (128 x 128 JPEGs of H&M articles; a seeded
  sample of ``--max-images``), skipped with a reason when the folder is missing;
* synthetic: the synthetic catalogue at ``--scale`` of the competition's 105,542 articles
  (``hm_utils.synthetic.generate.generate_synthetic``, 300 x 200 JPEGs; 1,055 articles at 0.01, about
  90 % with a photo), generated once into a temporary folder.

Two measurements per set, the methods interleaved round by round (``--repeats``) so that other
jobs on a shared machine hit all of them alike; each figure is printed as the median and the
range over the rounds:

1. **Model alone**: the photos decoded once into memory, then only the forward pass, batch by
   batch (``--batch-size``): ``keras`` the plain model call ``model(x, training=False)``;
   ``tf-graph`` the Keras model compiled by TensorFlow for inference (batch norms folded, frozen
   graph: the path notebook 03 took before the runtime existed, still the ``"keras"`` runtime);
   ``tf-graph16`` the same graph fed 16 photos a call (its best batch on 2 cores);
   ``openvino64`` the converted model (float32) fed whole batches; ``openvino`` the same run
   :data:`hm_utils.model.backbone_runtime.MICRO_BATCH` photos a call, as notebook 03 runs it.
   Photos/s of wall time and CPU ms per photo (process CPU time / photos: less sensitive to
   other jobs than wall time).
2. **Whole pass** as notebook 03 runs it (:func:`hm_utils.model.feature_store.compute_features`: decoding
   overlapped with the backbone and its untrained reference, features written to disk) with
   ``runtime="keras"`` and ``runtime="openvino"``: photos/s overall, of decoding and of the models.

Also: the largest per-row cosine gap between OpenVINO's and Keras's features on the set.

    python -m benchmarks.bench_backbone --scale 0.01
    python -m benchmarks.bench_backbone --scale 0.01 --repeats 5 --max-images 512 --sets real
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hm_utils.core.config import ARTICLE_ID, HAS_IMAGE  # noqa: E402

N_COMPETITION_ARTICLES = 105_542
IMAGE_SIZE = (300, 200)
REPO_ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = REPO_ROOT.parent / "shared" / "hm_catalogue"


def machine_state() -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), load average {load} (1/5/15 min), {platform.python_version()}"


def real_image_table(n: int, seed: int = 0) -> pd.DataFrame | None:
    if not (CATALOGUE / "articles.csv").is_file():
        return None
    paths = sorted((CATALOGUE / "images").rglob("*.jpg"))
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(paths), min(n, len(paths)), replace=False))
    return pd.DataFrame({ARTICLE_ID: [int(paths[i].stem) for i in picked],
                         "abs_path": [str(paths[i]) for i in picked], HAS_IMAGE: True})


def synthetic_image_table(folder: Path, scale: float) -> pd.DataFrame:
    from hm_utils.synthetic.generate import generate_synthetic

    n = max(64, round(scale * N_COMPETITION_ARTICLES))
    out = generate_synthetic(folder, n_articles=n, n_customers=200, n_transactions=2_000, image_size=IMAGE_SIZE,
                             seed=42, progress=False)
    art = pd.read_csv(out / "articles.csv", dtype={"article_id": str})
    rows = []
    for a in art["article_id"]:
        p = out / "images" / a[:3] / f"{a}.jpg"
        rows.append((int(a), str(p), p.is_file()))
    return pd.DataFrame(rows, columns=[ARTICLE_ID, "abs_path", HAS_IMAGE])


def decode_all(paths, batch_size):
    from hm_utils.data.images import image_dataset

    return [imgs.numpy() for _, imgs in image_dataset(paths, IMAGE_SIZE, batch_size=batch_size)]


def _summary(values, fmt="{:.1f}"):
    v = np.asarray(values, float)
    return f"{fmt.format(np.median(v))} ({fmt.format(v.min())}-{fmt.format(v.max())})"


def bench_set(name: str, table: pd.DataFrame, backbones: dict, args, cache: Path, work: Path) -> dict:
    import tensorflow as tf

    from hm_utils.model.backbone_runtime import backbone_function
    from hm_utils.model.feature_store import compute_features
    from hm_utils.model.inference import compile_for_inference
    from hm_utils.model.numeric_precision import row_cosines

    model = backbones["backbone"]
    paths = table.loc[table[HAS_IMAGE], "abs_path"].tolist()
    batches = decode_all(paths[: args.max_images], args.batch_size)
    n = sum(len(b) for b in batches)
    graph = compile_for_inference(model, [tf.TensorSpec([None, *IMAGE_SIZE, 3], tf.float32)], "float32")
    ov = backbone_function(model, IMAGE_SIZE, "openvino", cache_dir=cache)
    ov_whole = backbone_function(model, IMAGE_SIZE, "openvino", cache_dir=cache, micro_batch=0)

    def graph_in(step):
        return lambda x: np.concatenate([np.asarray(graph(tf.constant(x[i:i + step])))
                                         for i in range(0, len(x), step)])
    methods = {"keras": lambda x: np.asarray(model(x, training=False)),
               "tf-graph": lambda x: np.asarray(graph(tf.constant(x))),
               "tf-graph16": graph_in(16),
               "openvino64": ov_whole,
               "openvino": ov}
    # warm-up (traces, compiles, the first-batch check) and the features' agreement
    outs = {k: np.concatenate([f(b) for b in batches]) for k, f in methods.items()}
    cos = row_cosines(outs["openvino"], outs["keras"])
    print(f"[{name}] model alone on {n} photos, batch {args.batch_size}: OpenVINO vs Keras features: row cosine "
          f"min {cos.min():.7f}, mean {cos.mean():.7f}; runtime used: {ov.runtime}", flush=True)
    wall = {k: [] for k in methods}
    cpu = {k: [] for k in methods}
    for _ in range(args.repeats):
        for k, f in methods.items():
            w, c = time.perf_counter(), time.process_time()
            for b in batches:
                f(b)
            wall[k].append(n / (time.perf_counter() - w))
            cpu[k].append(1000 * (time.process_time() - c) / n)
    for k in methods:
        print(f"[{name}]   {k:10s} {_summary(wall[k])} photos/s, {_summary(cpu[k])} CPU ms/photo", flush=True)
    for base in ("keras", "tf-graph", "tf-graph16", "openvino64"):
        ratios = np.array(wall["openvino"]) / np.array(wall[base])
        cpu_ratio = np.array(cpu[base]) / np.array(cpu["openvino"])
        print(f"[{name}]   openvino / {base}: {_summary(ratios, '{:.2f}')}x photos/s (round by round), "
              f"{_summary(cpu_ratio, '{:.2f}')}x less CPU per photo", flush=True)
    result = {"n_model": n, "wall": wall, "cpu": cpu, "min_cosine": float(cos.min())}

    # the whole pass, as notebook 03 runs it (both backbones, decoding overlapped, files written)
    articles = table[[ARTICLE_ID]].copy()
    images = table.copy()
    passes = {"keras": [], "openvino": []}
    for r in range(args.repeats_pass):
        for runtime in passes:
            shutil.rmtree(work, ignore_errors=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                man = compute_features(backbones, articles, images, work, batch_size=args.batch_size,
                                       runtime=runtime, runtime_cache=cache, progress=False)
            passes[runtime].append(man["decoding"])
    n_pass = int(man["n_ok"])
    print(f"[{name}] whole pass (decode + backbone + untrained reference, written), {n_pass} photos, "
          f"{args.repeats_pass} round(s):", flush=True)
    for runtime, recs in passes.items():
        print(f"[{name}]   {runtime:9s} {_summary([d['images_per_second'] for d in recs])} photos/s overall; "
              f"decoding {_summary([d['decode_images_per_second'] for d in recs])}, models "
              f"{_summary([d['model_images_per_second'] for d in recs])} photos/s", flush=True)
    ratios = [o["images_per_second"] / k["images_per_second"] for o, k in zip(passes["openvino"], passes["keras"])]
    print(f"[{name}]   whole pass openvino / keras: {_summary(ratios, '{:.2f}')}x", flush=True)
    result["passes"] = passes
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.01, help="fraction of the competition's articles (synthetic)")
    ap.add_argument("--max-images", type=int, default=256, help="photos timed for the model alone (and real set size)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the model-alone timing")
    ap.add_argument("--repeats-pass", type=int, default=1, help="rounds of the whole pass")
    ap.add_argument("--sets", default="real,synthetic")
    args = ap.parse_args(argv)
    from hm_utils.model.backbone_runtime import openvino_version
    from hm_utils.model.siamese import build_backbone

    print(f"bench_backbone: EfficientNet-Lite0 (ImageNet) at {IMAGE_SIZE[0]} x {IMAGE_SIZE[1]}; openvino "
          f"{openvino_version()}; {machine_state()}", flush=True)
    backbones = {"backbone": build_backbone("efficientnet_lite0", IMAGE_SIZE, "avg", "imagenet", trainable=False,
                                            seed=42),
                 "untrained": build_backbone("efficientnet_lite0", IMAGE_SIZE, "avg", None, trainable=False,
                                             seed=42)}
    tmp = Path(tempfile.mkdtemp(prefix="bench_backbone_"))
    try:
        for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
            if name == "real":
                table = real_image_table(args.max_images)
                if table is None:
                    print(f"[real] skipped: no photos at {CATALOGUE} (../shared/hm_catalogue beside the checkout)")
                    continue
                print(f"[real] {len(table)} photos of ../shared/hm_catalogue (128 x 128 JPEGs, padded to 300 x 200)")
            else:
                t = time.perf_counter()
                table = synthetic_image_table(tmp / "synthetic", args.scale)
                print(f"[synthetic] scale {args.scale}: {len(table):,} articles, {int(table[HAS_IMAGE].sum()):,} "
                      f"with a 300 x 200 photo (generated in {time.perf_counter() - t:.0f} s)", flush=True)
            bench_set(name, table, backbones, args, tmp / "cache", tmp / f"work_{name}")
        print(f"machine after: {machine_state()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
