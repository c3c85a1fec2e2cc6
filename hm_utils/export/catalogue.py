"""What a backbone and trained heads see in a catalogue of real photos (no transactions): every photo
embedded, then measured with :mod:`hm_utils.embeddings.quality` (nearest neighbour of the same product or
type, siblings in the top 5) beside untrained references, pixel thumbnails, attributes and random vectors.

Command::

    python -m hm_utils.export.catalogue CATALOGUE_DIR [--out PATH.csv] [--backbone efficientnet_lite0]
        [--image-size 224 224] [--fit stretch|pad] [--model path.keras ...] [--center | --no-center]
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from hm_utils.core.config import ARTICLE_ID
from hm_utils.core.storage import atomic_path, write_csv
from hm_utils.data.images import DEFAULT_FIT, FITS, report_unreadable, resize_and_pad
from hm_utils.data.loading import find_images, read_articles_csv
from hm_utils.embeddings.quality import attribute_vectors, markdown_table, quality_table, random_vectors


def fit_image(img, size: tuple[int, int], fit: str):
    """Decoded photo float32 [h, w, 3] -> [H, W, 3] as :mod:`hm_utils.data.images` does after decoding:
    "pad" keeps the aspect ratio and pads with white, "stretch" resizes regardless of shape."""
    import tensorflow as tf


    out = resize_and_pad(img, size) if fit == "pad" else tf.image.resize(img, size, antialias=True)
    return tf.ensure_shape(tf.clip_by_value(out, 0.0, 255.0), [size[0], size[1], 3])


def pixel_thumbnails(image_size: tuple[int, int], side: int = 16):
    """A reference "model" with no learning at all: the photo (float32 [B, H, W, 3], 0..255, as a
    backbone gets it) shrunk to ``side`` x ``side`` by area averaging and flattened to float32
    [B, side * side * 3]. Nearest neighbours of these vectors are photos that look alike pixel by pixel,
    which is what an untrained convolutional network mostly measures too."""
    import keras

    inp = keras.Input(shape=(int(image_size[0]), int(image_size[1]), 3), name="image")
    x = keras.layers.Resizing(side, side, interpolation="area", name="thumbnail")(inp)
    return keras.Model(inp, keras.layers.Flatten(name="flatten")(x), name=f"pixels_{side}")


def photo_features(models: dict, paths, tabular: np.ndarray | None = None, fits: dict | None = None,
                   batch_size: int = 64, progress: bool = True) -> dict:
    """Several keras models over the same photos, each photo read and decoded ONCE (one tf.data pass).

    ``models`` ``{name: model}``: a backbone (``image`` float32 [B, H, W, 3] raw 0..255 RGB) or an
    embedding model (dict input ``image`` + ``tabular`` float32 [B, 11] when combined: then ``tabular``
    rows [n, 11] are needed). Each gets the photo (decoded at full scale) brought to its own input size by
    ``fits[name]``: "pad" (default) or "stretch". ``paths`` [n]. Output ``{name: (float32 [n, F], ok bool
    [n])}``; unreadable photos are skipped, not ok, and named in a warning.
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    from hm_utils.model.siamese import model_variant

    paths, fits = [str(p) for p in paths], fits or {}
    keys = {}
    for name, m in models.items():
        shape = (m.input["image"] if isinstance(m.input, dict) else m.inputs[0]).shape
        keys[name] = (int(shape[1]), int(shape[2]), fits.get(name, DEFAULT_FIT))
        if keys[name][2] not in FITS:
            raise ValueError(f"unknown fit {keys[name][2]!r} for {name}; choose one of {FITS}")
        if model_variant(m) == "combined" and tabular is None:
            raise ValueError(f"combined model {name} needs the tabular rows")

    def load(i, p):
        img = tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False)
        img = tf.cast(tf.ensure_shape(img, [None, None, 3]), tf.float32)
        return i, {key: fit_image(img, key[:2], key[2]) for key in set(keys.values())}

    ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths), dtype=tf.int64), tf.constant(paths, tf.string)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    calls = {name: tf.function(lambda x, m=m: m(x, training=False), reduce_retracing=True)
             for name, m in models.items()}
    out, ok, seen = {}, np.zeros(len(paths), bool), []
    for idx, images in tqdm(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE), total=-(-len(paths) // batch_size),
                            desc="photos", unit="batch", disable=not progress):
        idx = idx.numpy()
        for name, m in models.items():
            x = images[keys[name]]
            if isinstance(m.input, dict):
                x = {"image": x, **({"tabular": tf.constant(tabular[idx])} if model_variant(m) == "combined" else {})}
            y = calls[name](x).numpy()
            out.setdefault(name, np.zeros((len(paths), y.shape[1]), np.float32))[idx] = y
        ok[idx] = True
        seen.append(idx)
    report_unreadable(paths, np.concatenate(seen) if seen else np.zeros(0, np.int64), "photo")
    return {name: (out.get(name, np.zeros((len(paths), 0), np.float32)), ok.copy()) for name in models}


def main(argv=None) -> int:
    """The catalogue measurement (module docstring): prints the table, writes it as CSV + markdown."""
    p = argparse.ArgumentParser(prog="python -m hm_utils.export.catalogue",
                                description="Quality table of backbone features and embeddings on a photo catalogue")
    p.add_argument("catalogue_dir", type=Path, help="folder with articles.csv and images/0XX/0XXXXXXXXX.jpg")
    p.add_argument("--out", type=Path, default=None, help="CSV to write (a .md copy goes beside it); "
                   "without it the table is only printed")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    p.add_argument("--fit", choices=("pad", "stretch"), default="pad", help="photo to backbone input")
    p.add_argument("--model", type=Path, nargs="*", default=[], help="trained embedding model(s) (.keras)")
    p.add_argument("--center", action=argparse.BooleanOptionalAction, default=None,
                   help="centre the vectors (default: both, raw and centred)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-articles", type=int, default=None, help="only the first N articles (quick checks)")
    args = p.parse_args(argv)

    from hm_utils.model.siamese import build_backbone, load_embedding_model, tabular_features

    arts = read_articles_csv(args.catalogue_dir).iloc[: args.max_articles].reset_index(drop=True)
    found = find_images(args.catalogue_dir, arts[ARTICLE_ID])
    if not found["has_image"].all():
        warnings.warn(f"{int((~found['has_image']).sum())} article(s) have no photo, e.g. "
                      f"{found.loc[~found['has_image'], 'path'].head(3).tolist()}", stacklevel=2)
    rows, size, bb = np.flatnonzero(found["has_image"].to_numpy()), tuple(args.image_size), args.backbone
    models = {f"{bb} untrained": build_backbone(bb, size, "avg", None, seed=args.seed)}
    try:
        models[f"{bb} imagenet"] = build_backbone(bb, size, "avg", "imagenet", seed=args.seed)
    except (FileNotFoundError, ValueError) as err:
        warnings.warn(f"pretrained {bb} skipped: {err}", stacklevel=2)
    models["pixels 16x16"] = pixel_thumbnails(size)
    fits = {name: args.fit for name in models}  # trained models: the project's default fit
    models.update({path.stem: load_embedding_model(path) for path in args.model})
    t0 = time.perf_counter()
    feats = photo_features(models, [str(args.catalogue_dir / q) for q in found["path"].to_numpy()[rows]],
                           tabular_features(arts)[rows] if args.model else None, fits, args.batch_size)
    seconds = time.perf_counter() - t0
    sources = {}
    for name, (f, ok) in feats.items():
        sources[name] = (np.zeros((len(arts), f.shape[1]), np.float32), np.zeros(len(arts), bool))
        sources[name][0][rows], sources[name][1][rows] = f, ok
    sources["attributes"] = attribute_vectors(arts)
    sources["random"] = random_vectors(len(arts), sources[f"{bb} untrained"][0].shape[1], args.seed)
    table = pd.concat([quality_table(sources, arts, center=c, neighbour_queries=None, seed=args.seed)
                       for c in ([False, True] if args.center is None else [args.center])])
    note = (f"{len(arts)} articles, {len(rows)} photos from {args.catalogue_dir}; backbone {bb}, input "
            f"{size[0]}x{size[1]} ({args.fit}), seed {args.seed}; photos through {len(models)} model(s) in "
            f"{seconds:.0f} s ({len(rows) / max(seconds, 1e-9):.1f} photos/s)")
    if args.out is not None:
        write_csv(table.reset_index(), args.out)
        with atomic_path(args.out.with_suffix(".md")) as tmp:
            tmp.write_text(f"{note}\n\n{markdown_table(table)}")
    print(f"{note}\n{markdown_table(table)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
