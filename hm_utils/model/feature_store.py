"""The backbone feature store: every article's backbone features, computed once per run.

A frozen backbone maps an article's photo to the same features every time, so
notebook 03 decodes every photo ONCE (one streamed ``tf.data`` pass, parallel
reduced-scale JPEG decoding, :func:`hm_utils.data.images.image_dataset`), sends each
batch through every backbone it is given (the run's backbone and, as a
reference, the same architecture with random weights) and keeps the results on
disk. Training (03), the export (04, :mod:`hm_utils.export.from_features`) and the
quality figures (05) then read the features instead of decoding the photos
again.

Files under ``WORK_DIR/features/`` (``config.FEATURES_DIR``):

* ``<name>.npy``: float32 [n_articles, F], row order = the articles table
  (``articles.parquet``), zeros where ``ok`` is False; read as a memory map.
* ``index.parquet``: ``article_id`` int32, ``has_image`` bool, ``ok`` bool
  (the image was read and decoded, the row holds its features).
* ``manifest.json``: the article fingerprint and settings (image size, reduced
  scale), the unreadable article ids and, per name: backbone architecture,
  weights file and its sha256 (None for random weights), a digest of the
  backbone's weights (:func:`hm_utils.model.inference.model_digest`), image_size,
  pooling, feature_dim, seconds, images_per_second (of the model alone), runtime
  ("openvino" or "keras", :mod:`hm_utils.model.backbone_runtime`) and runtime_info (its
  version, the converted model's cache key, the first batch's cosine to Keras, any
  fallback reason). Top level: ``runtime`` {asked, used}; ``decoding`` (seconds and
  photos/s of decoding, of the models, of waiting for a batch, and overall).

Writing is atomic: each ``.npy`` is filled under a temporary name and renamed
only when the whole pass succeeded, so a failed run keeps the earlier files.
(The old manifest is removed just before the renames; a crash in that instant
leaves no manifest, and the next call recomputes.) A call whose articles,
image files (paths, sizes, modification times), settings and backbone weights
match the manifest returns it at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from hm_utils.core.arrays import sorted_unique
from hm_utils.core.checks import require_columns  # noqa: E402
from hm_utils.core.config import (ARTICLE_ID, FEATURE_OK, FEATURES_DIR, FEATURES_INDEX, FEATURES_MANIFEST,  # noqa: E402
                                  HAS_IMAGE)
from hm_utils.core.storage import read_json, write_json, write_parquet  # noqa: E402
from hm_utils.data import images as images_module
from hm_utils.data.images import UnreadableImageWarning  # noqa: E402
from hm_utils.data.images import article_image_paths, image_dataset  # noqa: E402
from hm_utils.model.backbone_runtime import OverlapTimes, backbone_function, overlapped  # noqa: E402
from hm_utils.model.feature_cache import FeatureCache  # noqa: E402
from hm_utils.model.inference import model_digest  # noqa: E402
from hm_utils.model.inference import compile_for_inference
from hm_utils.model.numeric_precision import FLOAT32_TOLERANCE  # noqa: E402

MANIFEST_VERSION = 1
# what must agree between a stored feature set and a backbone for the features to be reused
MATCH_KEYS = ("digest", "feature_dim", "pooling", "image_size")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


# ------------------------------------------------------------------ describing ---
def features_dir(work_dir) -> Path:
    """``WORK_DIR/features``."""
    return Path(work_dir) / FEATURES_DIR


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def backbone_pooling(model: keras.Model) -> str:
    """"avg" when the backbone ends in global average pooling, "flatten" when in a
    Flatten layer (:func:`hm_utils.model.siamese.build_backbone`), else the last layer's class name."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.GlobalAveragePooling2D):
        return "avg"
    if isinstance(last, keras.layers.Flatten):
        return "flatten"
    return type(last).__name__


def _architecture(model: keras.Model) -> str:
    """The backbone's architecture: the name of the network nested in it (e.g. "resnet50")."""
    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[0] if nested else model.name


def describe_backbone(model: keras.Model, architecture: str | None = None, weights_file=None) -> dict:
    """What the manifest records for one backbone: ``backbone`` (architecture name),
    ``weights_file`` (str or None) and its ``weights_sha256``, ``digest`` of the
    weights, ``image_size`` [H, W], ``pooling``, ``feature_dim`` F."""
    h, w = (int(v) for v in model.input_shape[1:3])
    return {"backbone": architecture or _architecture(model),
            "weights_file": None if weights_file is None else str(weights_file),
            "weights_sha256": None if weights_file is None else file_sha256(weights_file),
            "digest": model_digest(model), "image_size": [h, w], "pooling": backbone_pooling(model),
            "feature_dim": int(model.output_shape[-1])}


def _file_stamp(path) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a file; (-1, -1) when absent or None."""
    if path is None:
        return (-1, -1)
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (int(st.st_size), int(st.st_mtime_ns))


def article_fingerprint(articles: pd.DataFrame, images: pd.DataFrame, settings: dict):
    """``(article_ids int64 [n], paths object [n] (None: no image), has_image bool [n],
    fingerprint str)`` for ``articles`` in row order; the fingerprint hashes the ids,
    the image paths, each image file's size and modification time (so photos
    rewritten in place make a stored set stale) and ``settings`` (a JSON-able dict)."""
    require_columns(articles, [ARTICLE_ID], "articles table")
    ids = articles[ARTICLE_ID].to_numpy(np.int64)
    if len(sorted_unique(ids)) != len(ids):
        u, c = np.unique(ids, return_counts=True)
        raise ValueError(f"articles table lists article {int(u[c > 1][0])} more than once")
    paths = article_image_paths(images, ids)
    has = np.array([p is not None for p in paths], bool)
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ids).tobytes())
    h.update("\n".join("" if p is None else str(p) for p in paths).encode())
    h.update(np.array([_file_stamp(p) for p in paths], np.int64).tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return ids, paths, has, h.hexdigest()


def decode_options(fit: str | None = None) -> dict:
    """The decoding options a store records besides the image size and reduced scale:
    ``{"fit": fit}``, ``fit`` None meaning the default of :mod:`hm_utils.data.images`
    (``DEFAULT_FIT``); ``{}`` where images.py has no such option."""
    default = getattr(images_module, "DEFAULT_FIT", None)
    if default is None:
        if fit is not None:
            raise ValueError(f"fit={fit!r} given, but hm_utils.data.images has no fit option")
        return {}
    return {"fit": default if fit is None else str(fit)}


def read_manifest(work_dir) -> dict:
    """The store's manifest; FileNotFoundError names the folder and what writes it."""
    path = features_dir(work_dir) / FEATURES_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no backbone feature store at {path.parent} (written by notebook "
                                "03_model_training, hm_utils.model.feature_store.compute_features; run it first)")
    return read_json(path)


def _reusable(old: dict | None, fingerprint: str, entries: dict, fdir: Path) -> bool:
    if not old or old.get("version") != MANIFEST_VERSION or old.get("fingerprint") != fingerprint:
        return False
    if not (fdir / FEATURES_INDEX).is_file():
        return False
    for name, entry in entries.items():
        have = old.get("features", {}).get(name)
        if have is None or any(have.get(k) != entry[k] for k in MATCH_KEYS) or not (fdir / f"{name}.npy").is_file():
            return False
    return True


# ------------------------------------------------------------------ forward pass ---
def _forward_fn(model: keras.Model, image_size, check_images: int = 8):
    """images float32 [B,H,W,3] -> np.float32 [B,F]: the backbone compiled for inference
    (:func:`hm_utils.model.inference.compile_for_inference`, float32: batch norms folded, weights
    frozen into one graph), checked on the first batch against ``model(x, training=False)``
    (largest difference / max(1, largest value) <= ``FLOAT32_TOLERANCE``); where the check
    fails or compiling raises, a plain ``tf.function`` of the model. ``fn.state["compiled"]``
    says which ran."""

    @tf.function(reduce_retracing=True)
    def plain(x):
        return model(x, training=False)

    state = {"compiled": True, "checked": False}
    try:
        spec = [tf.TensorSpec([None, int(image_size[0]), int(image_size[1]), 3], tf.float32)]
        compiled = compile_for_inference(model, spec, "float32")
    except Exception as exc:  # an architecture the folding/freezing does not handle
        warnings.warn(f"backbone {model.name!r} could not be compiled for inference ({type(exc).__name__}: "
                      f"{exc}); running it as a plain graph", stacklevel=3)
        state["compiled"] = False

    def fn(images):
        if not state["compiled"]:
            return np.asarray(plain(images), np.float32)
        out = np.asarray(compiled(images), np.float32)
        if not state["checked"]:
            state["checked"] = True
            k = min(check_images, int(out.shape[0]))
            ref = np.asarray(model(images[:k], training=False), np.float32)
            rel = float(np.abs(ref - out[:k]).max()) / max(1.0, float(np.abs(ref).max())) if k else 0.0
            if rel > FLOAT32_TOLERANCE:
                warnings.warn(f"compiled backbone {model.name!r} differs from the plain model by {rel:.2e} "
                              "(relative); running it as a plain graph", stacklevel=3)
                state["compiled"] = False
                return np.asarray(plain(images), np.float32)
        return out
    fn.state = state
    return fn


class _LazyForward:
    """:func:`_forward_fn`, built on its first call (the Keras path is compiled only where it
    runs: runtime "keras", or a fallback); ``compiled``: None until then, then whether the
    compiled graph (rather than the plain model) ran."""

    def __init__(self, model, image_size):
        self._model, self._size, self._fn = model, image_size, None

    def build(self):
        if self._fn is None:
            self._fn = _forward_fn(self._model, self._size)
        return self

    def __call__(self, images):
        return self.build()._fn(tf.convert_to_tensor(images, tf.float32))

    @property
    def compiled(self):
        return None if self._fn is None else bool(self._fn.state["compiled"])


# ------------------------------------------------------------------ the store ---
def compute_features(backbones: dict, articles: pd.DataFrame, images: pd.DataFrame, work_dir, *,
                     batch_size: int = 64, reduced_scale: bool = True, fit: str | None = None,
                     architectures: dict | None = None, weights_files: dict | None = None,
                     runtime: str | None = "auto", runtime_cache=None, progress: bool = True) -> dict:
    """Compute (or reuse) the backbone features of every article with an image.

    Inputs: ``backbones`` ``{name: keras.Model}`` (names of letters, digits, ``_``
    and ``-``; e.g. ``{"backbone": ..., "untrained": ...}``), each taking float32
    [B, H, W, 3] raw 0..255 RGB (all the same H, W) and returning float32 [B, F];
    ``articles`` (``article_id``; defines the row order); ``images``
    (``article_id``, ``has_image``, ``abs_path``, as
    :func:`hm_utils.core.workdir.load_images` returns); ``batch_size`` images per
    backbone call; ``reduced_scale`` and ``fit`` (None: the default of
    :mod:`hm_utils.data.images`) go to :func:`hm_utils.data.images.image_dataset`; ``architectures`` / ``weights_files``
    ``{name: ...}`` are recorded in the manifest (default: the nested network's
    name / None). ``runtime``: "auto" | "keras" | "openvino", what runs the backbones
    (:mod:`hm_utils.model.backbone_runtime`; the Keras model is the reference and the fallback,
    features equal within a row cosine of 0.9999); ``runtime_cache``: where converted
    models are kept (default :func:`hm_utils.model.backbone_runtime.runtime_cache_dir`).

    Every image is decoded once (a worker thread decodes the next batch while the
    backbones run on the current one: :func:`hm_utils.model.backbone_runtime.overlapped`) and each batch goes through every backbone
    (backbones with identical weights run once; their files are hard links).
    Output: the manifest dict (see the module docstring) plus ``reused``: True
    when an earlier call's files matched (same articles, images, settings and
    weights digests) and nothing was computed. A missing or unreadable image
    leaves a zero row with ``ok`` False; unreadable ones are listed in the
    manifest and named in an :class:`hm_utils.data.images.UnreadableImageWarning`.
    """
    names = list(backbones)
    if not names:
        raise ValueError("no backbones given")
    bad = [n for n in names if not _NAME.match(str(n))]
    if bad:
        raise ValueError(f"feature set names must be letters, digits, '_' or '-': {bad}")
    sizes = {n: tuple(int(v) for v in m.input_shape[1:3]) for n, m in backbones.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"the backbones take different image sizes {sizes}; one decode pass needs one size")
    image_size = next(iter(sizes.values()))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    image_options = decode_options(fit)
    settings = {"image_size": list(image_size), "reduced_scale": bool(reduced_scale), **image_options}
    ids, paths, has, fingerprint = article_fingerprint(articles, images, settings)
    architectures, weights_files = architectures or {}, weights_files or {}
    entries = {n: describe_backbone(m, architectures.get(n), weights_files.get(n)) for n, m in backbones.items()}
    fdir = features_dir(work_dir)
    try:
        old = read_manifest(work_dir)
    except (FileNotFoundError, ValueError):
        old = None
    if _reusable(old, fingerprint, entries, fdir):
        return {**old, "reused": True}

    # one leader per distinct backbone (same weights, pooling and size compute the same features)
    leader, first = {}, {}
    for n in names:
        leader[n] = first.setdefault(json.dumps([entries[n][k] for k in MATCH_KEYS]), n)
    leaders = [n for n in names if leader[n] == n]
    fdir.mkdir(parents=True, exist_ok=True)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = {n: fdir / f".{n}.npy.tmp-{token}.npy" for n in names}
    try:
        arrays = {n: np.lib.format.open_memmap(tmp[n], mode="w+", dtype=np.float32,
                                               shape=(len(ids), entries[n]["feature_dim"])) for n in leaders}
        ok = np.zeros(len(ids), bool)
        keras_fns = {n: _LazyForward(backbones[n], image_size) for n in leaders}
        calls = {n: backbone_function(backbones[n], image_size, runtime, keras_fn=keras_fns[n],
                                      cache_dir=runtime_cache) for n in leaders}
        for n in leaders:  # compile the Keras path before the clock starts where it is the one that runs
            if calls[n].runtime == "keras":
                keras_fns[n].build()
        seconds = {n: 0.0 for n in leaders}
        idx_with = np.flatnonzero(has)
        sub_paths = [str(p) for p in paths[idx_with]]
        t0 = time.perf_counter()
        n_batches = -(-len(sub_paths) // batch_size)
        ds = image_dataset(sub_paths, image_size, batch_size=batch_size, reduced_scale=reduced_scale,
                           prefetch=False, **image_options)
        times = OverlapTimes()
        runtimes = sorted({c.runtime for c in calls.values()})
        bar = tqdm(overlapped(ds, times, count=lambda b: int(b[0].shape[0])), total=n_batches,
                   desc=f"backbone features ({', '.join(leaders)}; {'/'.join(runtimes)})", unit="batch",
                   disable=not progress)
        for idx, imgs in bar:
            rows = idx_with[idx.numpy()]
            x = imgs.numpy()
            for n in leaders:
                t = time.perf_counter()
                arrays[n][rows] = calls[n](x)
                seconds[n] += time.perf_counter() - t
            ok[rows] = True
        wall = time.perf_counter() - t0
        for arr in arrays.values():
            arr.flush()
        del arrays
        for n in names:
            if leader[n] != n:
                try:
                    os.link(tmp[leader[n]], tmp[n])
                except OSError:
                    shutil.copyfile(tmp[leader[n]], tmp[n])
    except BaseException:
        for p in tmp.values():
            p.unlink(missing_ok=True)
        raise

    unreadable = ids[has & ~ok]
    if len(unreadable):
        shown = ", ".join(f"{int(a)} ({paths[i]})" for a, i in zip(unreadable[:10], np.flatnonzero(has & ~ok)[:10]))
        more = f" and {len(unreadable) - 10} more" if len(unreadable) > 10 else ""
        warnings.warn(f"{len(unreadable)} article image(s) could not be read or decoded; their features are "
                      f"zero rows with ok False: article {shown}{more}", UnreadableImageWarning, stacklevel=2)
    n_ok = int(ok.sum())
    manifest = {
        "version": MANIFEST_VERSION, "fingerprint": fingerprint, "settings": settings,
        "n_articles": int(len(ids)), "n_with_image": int(has.sum()), "n_ok": n_ok,
        "unreadable": [int(a) for a in unreadable], "seconds": round(wall, 3),
        "images_per_second": round(n_ok / wall, 2) if wall > 0 else None, "precision": "float32",
        "runtime": {"asked": str(runtime if runtime is not None else "auto"),
                    "used": sorted({calls[leader[n]].runtime for n in names})},
        "decoding": times.rates(wall),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "features": {n: {**entries[n], "file": f"{n}.npy", "shared_with": None if leader[n] == n else leader[n],
                         "compiled": keras_fns[leader[n]].compiled,
                         "runtime": calls[leader[n]].runtime, "runtime_info": dict(calls[leader[n]].info),
                         "seconds": round(seconds[leader[n]], 3),
                         "images_per_second": round(n_ok / seconds[leader[n]], 2) if seconds[leader[n]] > 0
                         else None} for n in names},
    }
    (fdir / FEATURES_MANIFEST).unlink(missing_ok=True)
    for n in names:
        os.replace(tmp[n], fdir / f"{n}.npy")
    index = pd.DataFrame({ARTICLE_ID: ids.astype(np.int32), HAS_IMAGE: has, FEATURE_OK: ok})
    write_parquet(index, fdir / FEATURES_INDEX)
    write_json(manifest, fdir / FEATURES_MANIFEST)
    for stale in set((old or {}).get("features", {})) - set(names):
        (fdir / f"{stale}.npy").unlink(missing_ok=True)
    return {**manifest, "reused": False}


def load_features(work_dir, name: str = "backbone") -> FeatureCache:
    """The stored feature set ``name`` as a :class:`hm_utils.model.feature_cache.FeatureCache`:
    ``article_ids`` int64 [n] (articles-table order), ``features`` float32 [n, F]
    (a read-only memory map), ``ok`` bool [n], ``seconds`` of its computation,
    ``unreadable`` article ids and ``digest`` of the backbone's weights.
    FileNotFoundError / KeyError name what is missing."""
    manifest = read_manifest(work_dir)
    fdir = features_dir(work_dir)
    entry = manifest.get("features", {}).get(name)
    if entry is None:
        raise KeyError(f"no feature set {name!r} in {fdir}; it holds {sorted(manifest.get('features', {}))}")
    index = pd.read_parquet(fdir / FEATURES_INDEX)
    features = np.load(fdir / entry["file"], mmap_mode="r")
    if features.shape != (len(index), entry["feature_dim"]):
        raise ValueError(f"{fdir / entry['file']} has shape {features.shape}, the manifest and index say "
                         f"({len(index)}, {entry['feature_dim']}); delete {fdir} and rerun notebook 03")
    return FeatureCache(index[ARTICLE_ID].to_numpy(np.int64), features, index[FEATURE_OK].to_numpy(bool),
                        float(entry.get("seconds") or 0.0), list(manifest.get("unreadable", [])),
                        digest=entry["digest"])


def features_summary(manifest: dict):
    """One row per feature set: name, backbone, weights file, feature_dim, pooling,
    seconds, images/second, runtime (what ran it; "keras" for stores written before the
    runtime was recorded), shared_with (a name whose backbone had identical weights)."""
    return pd.DataFrame([{"name": n, "backbone": e["backbone"], "weights_file": e["weights_file"],
                          "feature_dim": e["feature_dim"], "pooling": e["pooling"], "seconds": e["seconds"],
                          "images_per_second": e["images_per_second"], "runtime": e.get("runtime", "keras"),
                          "shared_with": e["shared_with"]}
                         for n, e in manifest["features"].items()])


def store_key_figures(store: dict) -> dict:
    """Notebook 03's key figures of the feature store (:func:`compute_features`' summary): reused or computed,
    the feature sets, articles with features, unreadable photos, seconds and photos per second of the pass."""
    return {"features_reused": bool(store["reused"]), "feature_sets": sorted(store["features"]),
            "n_feature_articles": store["n_ok"], "n_unreadable_images": len(store["unreadable"]),
            "feature_seconds": store["seconds"], "feature_images_per_second": store["images_per_second"]}
