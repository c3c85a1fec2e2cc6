"""The frozen backbone's forward pass on an optimised CPU runtime (OpenVINO), with the
Keras model as the reference and the fallback; and decoding overlapped with it.

Notebook 03 sends every article photo through the frozen backbone (and its untrained
reference) once (:func:`hm_utils.model.feature_store.compute_features`). TensorFlow's graph of the
model (batch norms folded, weights frozen: :func:`hm_utils.model.inference.compile_for_inference`)
was the fastest path so far; OpenVINO's CPU plug-in (Intel's inference runtime, Apache-2.0,
``pip install openvino``) runs the same float32 network with its own convolution kernels
(oneDNN, NHWC -> blocked layouts chosen once, convolution + bias + ReLU6 fused), and
converts a Keras 3 model directly (``openvino.convert_model``). It was chosen by
measurement over ONNX Runtime (graph from ``model.export(format="onnx")`` / tf2onnx), which
needs two more packages for the conversion and was no faster here; see
``benchmarks/RESULTS_backbone.md``.

Runtimes (``BACKBONE_RUNTIME``, :data:`RUNTIMES`):

* ``"keras"``: the Keras model compiled for inference by TensorFlow (the reference).
* ``"openvino"``: the converted model, float32 (``INFERENCE_PRECISION_HINT=f32``: on CPUs with
  AMX OpenVINO would otherwise compute in bfloat16, which moves the features' cosine to
  about 0.9995, outside the bound below).
* ``"auto"``: ``"openvino"`` when the package imports, else ``"keras"``.

The converted model is a cache (derived data) under :func:`runtime_cache_dir`, one folder
per key: a hash of the backbone's weights (:func:`hm_utils.model.inference.model_digest`), its
architecture (the Keras config), the input size and the OpenVINO version. The folder is
written under a temporary name and renamed when complete; ``meta.json`` holds the sha256 of
``model.xml`` and ``model.bin``, so a damaged or half-written folder is detected, deleted and
rebuilt. Nothing here is ever fatal: a missing package, a failed conversion or a converted
model whose first batch disagrees with Keras (any row's cosine below :data:`MIN_COSINE`, or a
relative difference above :data:`hm_utils.model.numeric_precision.FLOAT32_TOLERANCE` x 10) falls back to
the Keras model with a warning, and :attr:`BackboneFunction.runtime` says which ran.

Overlap (:func:`overlapped`): a worker thread pulls the next decoded batch from the
``tf.data`` pipeline (whose parallel map decodes a batch's photos on all cores) while the
calling thread runs the model on the current one; both release the GIL, so both cores stay
busy. The time spent producing batches (decode) and running the model are measured apart, so
the photos/s of each part can be printed.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from hm_utils.model.inference import model_digest
from hm_utils.model.numeric_precision import CHECK_IMAGES, FLOAT32_TOLERANCE, row_cosines

RUNTIMES = ("auto", "keras", "openvino")
DEFAULT_RUNTIME = "auto"
RUNTIME_CACHE_ENV = "HM_RUNTIME_CACHE"
MIN_COSINE = 0.9999          # per-row cosine to the Keras model's features the fast path must keep
MICRO_BATCH = 4              # photos per OpenVINO call (a caller's batch is split): see openvino_fn
_FILES = ("model.xml", "model.bin")


class RuntimeFallbackWarning(UserWarning):
    """The fast runtime could not be used; the Keras model runs instead."""


# ------------------------------------------------------------------ choosing ---
def openvino_version() -> str | None:
    """The installed OpenVINO's version string, None when it does not import."""
    try:
        import openvino as ov
    except Exception:  # ImportError, or a broken install
        return None
    return str(ov.get_version())


def resolve_runtime(runtime: str | None = DEFAULT_RUNTIME) -> str:
    """``"auto"``/None -> ``"openvino"`` when it imports, else ``"keras"``; ``"keras"`` and
    ``"openvino"`` are returned as given (a missing package is found, and warned about, when
    the function is built). ValueError names the choices for anything else."""
    runtime = DEFAULT_RUNTIME if runtime is None else str(runtime).lower()
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown backbone runtime {runtime!r}; choose one of {RUNTIMES}")
    if runtime == "auto":
        return "openvino" if openvino_version() is not None else "keras"
    return runtime


def runtime_cache_dir() -> Path:
    """Folder of converted backbones: ``$HM_RUNTIME_CACHE``, else the converted-weights
    folder (:func:`hm_utils.model.efficientnet_lite.weights_cache_dir`) + ``/openvino``."""
    env = os.environ.get(RUNTIME_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from hm_utils.model.efficientnet_lite import weights_cache_dir

    return weights_cache_dir() / "openvino"


def conversion_key(model, image_size, version: str | None = None) -> str:
    """24 hex digits naming a converted model: sha256 of the weights' digest
    (:func:`hm_utils.model.inference.model_digest`), the Keras config (architecture), the input
    size (H, W) and the OpenVINO version."""

    h = hashlib.sha256()
    h.update(model_digest(model).encode())
    h.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    h.update(json.dumps([int(v) for v in image_size]).encode())
    h.update(str(version if version is not None else openvino_version()).encode())
    return h.hexdigest()[:24]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ the cache ---
def _read_cached(folder: Path, core):
    """The model in ``folder`` when its files match ``meta.json``'s hashes, else None."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        for name in _FILES:
            if _sha256(folder / name) != meta["sha256"][name]:
                return None
        return core.read_model(str(folder / "model.xml"))
    except Exception:  # missing, truncated, not JSON, not a model: damaged
        return None


def converted_model(model, image_size, cache_dir=None):
    """``(openvino.Model, info)`` for a Keras ``model`` taking float32 [B, H, W, 3]
    (``image_size`` (H, W)), read from the cache or converted (``openvino.convert_model``)
    and stored there (weights kept float32: ``compress_to_fp16=False``). ``info``: ``key``,
    ``path`` (the folder), ``cached`` (True: read back), ``rebuilt`` (True: a damaged folder
    was replaced), ``convert_seconds``. Raises whatever the conversion raises; a cache that
    cannot be written only warns."""
    import openvino as ov

    core = _core()
    version = openvino_version()
    root = Path(cache_dir) if cache_dir is not None else runtime_cache_dir()
    key = conversion_key(model, image_size, version)
    folder = root / key
    info = {"key": key, "path": str(folder), "cached": False, "rebuilt": False, "convert_seconds": 0.0}
    if folder.exists():
        ov_model = _read_cached(folder, core)
        if ov_model is not None:
            return ov_model, {**info, "cached": True}
        info["rebuilt"] = True
        shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    h, w = (int(v) for v in image_size)
    ov_model = ov.convert_model(model, input=[([-1, h, w, 3], ov.Type.f32)])
    info["convert_seconds"] = round(time.perf_counter() - t, 3)
    tmp = root / f".{key}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov_model, str(tmp / "model.xml"), compress_to_fp16=False)
        meta = {"key": key, "openvino": version, "image_size": [h, w], "model": getattr(model, "name", None),
                "sha256": {name: _sha256(tmp / name) for name in _FILES},
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process stored the same key first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        warnings.warn(f"could not store the converted backbone in {root} ({exc}); it is used, not kept",
                      RuntimeFallbackWarning, stacklevel=2)
    return ov_model, info


_CORE = None


def _core():
    global _CORE
    if _CORE is None:
        import openvino as ov
        _CORE = ov.Core()
    return _CORE


# ------------------------------------------------------------------ running ---
class BackboneFunction:
    """images float32 [B, H, W, 3] (raw 0..255 RGB, numpy or tensor) -> np.float32 [B, F].

    ``runtime``: the runtime that runs now ("openvino" or "keras"; it can turn to "keras" on
    the first batch when the check fails); ``asked``: the setting it was built from;
    ``info``: what the manifest records (runtime, version, conversion key/seconds, cached,
    first-batch ``min_cosine`` and ``max_relative_difference``, ``fallback_reason``)."""

    def __init__(self, fast: Callable | None, keras_fn: Callable, reference: Callable, runtime: str,
                 asked: str, info: dict, check_images: int = CHECK_IMAGES):
        self._fast, self._keras_fn, self._reference = fast, keras_fn, reference
        self.runtime, self.asked, self.info = runtime, asked, info
        self._check_images = check_images
        self._checked = fast is None

    def _fall_back(self, reason: str):
        warnings.warn(f"backbone runtime {self.runtime!r} not used ({reason}); running the Keras model",
                      RuntimeFallbackWarning, stacklevel=3)
        self.info["fallback_reason"] = reason
        self.runtime = self.info["runtime"] = "keras"
        self._fast = None

    def __call__(self, images) -> np.ndarray:
        if self._fast is None:
            return self._keras_fn(images)
        x = np.ascontiguousarray(np.asarray(images, np.float32))
        try:
            out = np.asarray(self._fast(x), np.float32)
        except Exception as exc:
            self._fall_back(f"it raised {type(exc).__name__}: {exc}")
            return self._keras_fn(images)
        if not self._checked:
            self._checked = True
            k = min(self._check_images, len(out))
            if k:
                ref = np.asarray(self._reference(x[:k]), np.float32)
                cos = row_cosines(out[:k], ref)
                rel = float(np.abs(ref - out[:k]).max()) / max(1.0, float(np.abs(ref).max()))
                self.info["min_cosine"] = round(float(cos.min()), 8)
                self.info["max_relative_difference"] = float(f"{rel:.3g}")
                if not (cos.min() >= MIN_COSINE and rel <= 10 * FLOAT32_TOLERANCE):
                    self._fall_back(f"its first batch differs from the Keras model's: row cosine "
                                    f"{cos.min():.6f} (bound {MIN_COSINE}), relative difference {rel:.2e}")
                    return self._keras_fn(images)
        return out


def openvino_fn(ov_model, threads: int | None = None, micro_batch: int | None = MICRO_BATCH) -> Callable:
    """The converted model compiled for the CPU in float32 (latency hint: one stream using
    ``threads`` threads, default all cores): float32 [B,H,W,3] numpy -> float32 [B,F].

    A batch is run ``micro_batch`` photos at a time (None or 0: whole). A photo's features do
    not depend on the others in its batch, and at 300 x 200 four photos' activations stay in
    the cores' caches where 64 do not: on 2 cores batch 4 ran 1.21x the photos/s of batch 64
    (``benchmarks/RESULTS_backbone.md``, "Smaller batches")."""
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = _core().compile_model(ov_model, "CPU", config)
    request = compiled.create_infer_request()
    lock = threading.Lock()
    step = int(micro_batch) if micro_batch else 0
    if step < 0:
        raise ValueError(f"micro_batch must be >= 0, got {micro_batch}")

    def run(x):
        with lock:  # one infer request; its output buffer is copied before it is reused
            if not step or len(x) <= step:
                return np.array(request.infer([x])[0], np.float32, copy=True)
            out = None
            for i in range(0, len(x), step):
                y = request.infer([x[i:i + step]])[0]
                if out is None:
                    out = np.empty((len(x), *y.shape[1:]), np.float32)
                out[i:i + len(y)] = y
            return out
    return run


def backbone_function(model, image_size, runtime: str | None = DEFAULT_RUNTIME, *,
                      keras_fn: Callable | None = None, cache_dir=None, threads: int | None = None,
                      micro_batch: int | None = MICRO_BATCH) -> BackboneFunction:
    """The frozen ``model``'s forward pass on ``runtime`` (:data:`RUNTIMES`), as a
    :class:`BackboneFunction` images float32 [B, H, W, 3] -> np.float32 [B, F].

    ``keras_fn``: the Keras path (default: ``model(x, training=False)`` as numpy), used for
    ``runtime="keras"`` and as the fallback. The first batch on the fast runtime is checked
    against ``model(x, training=False)`` on :data:`hm_utils.model.numeric_precision.CHECK_IMAGES` images.
    ``cache_dir``: where converted models are kept (default :func:`runtime_cache_dir`);
    ``threads`` and ``micro_batch`` go to :func:`openvino_fn`."""
    def plain(x):
        return np.asarray(model(np.asarray(x, np.float32), training=False), np.float32)
    keras_fn = keras_fn or plain
    asked = DEFAULT_RUNTIME if runtime is None else str(runtime).lower()
    chosen = resolve_runtime(asked)
    info = {"runtime": chosen, "asked": asked, "version": None, "fallback_reason": None}
    if chosen == "keras":
        import keras
        info["version"] = f"keras {keras.__version__}"
        return BackboneFunction(None, keras_fn, plain, "keras", asked, info)
    version = openvino_version()
    if version is None:
        fn = BackboneFunction(None, keras_fn, plain, "openvino", asked, {**info})
        fn._fall_back("the openvino package is not installed (pip install openvino)")
        return fn
    try:
        ov_model, conv = converted_model(model, image_size, cache_dir)
        fast = openvino_fn(ov_model, threads, micro_batch)
    except Exception as exc:
        fn = BackboneFunction(None, keras_fn, plain, "openvino", asked, {**info, "version": f"openvino {version}"})
        fn._fall_back(f"conversion failed: {type(exc).__name__}: {str(exc)[:300]}")
        return fn
    info.update(version=f"openvino {version}", key=conv["key"], cached=conv["cached"], rebuilt=conv["rebuilt"],
                convert_seconds=conv["convert_seconds"], micro_batch=int(micro_batch or 0))
    return BackboneFunction(fast, keras_fn, plain, "openvino", asked, info)


# ------------------------------------------------------------------ overlap ---
class OverlapTimes:
    """Seconds spent producing batches (``decode``: in the worker thread), running the model
    (``model``: the caller's time between batches) and waiting for a batch (``wait``: decode not
    hidden behind the model), and ``images`` counted; photos/s of each part."""

    def __init__(self):
        self.decode = self.model = self.wait = 0.0
        self.images = 0

    def rates(self, wall: float) -> dict:
        def per_s(s):
            return round(self.images / s, 2) if s > 0 else None
        return {"decode_seconds": round(self.decode, 3), "model_seconds": round(self.model, 3),
                "wait_seconds": round(self.wait, 3), "decode_images_per_second": per_s(self.decode),
                "model_images_per_second": per_s(self.model), "images_per_second": per_s(wall)}


_DONE = object()


def overlapped(batches: Iterable, times: OverlapTimes | None = None, depth: int = 2,
               count: Callable = len) -> Iterator:
    """Yield the items of ``batches`` (an iterable whose ``next`` does the decoding, e.g. a
    ``tf.data`` dataset without prefetch) as they are produced by a worker thread that keeps
    up to ``depth`` ready while the caller works on the current one. ``times`` (an
    :class:`OverlapTimes`) accumulates decode seconds (worker), model seconds (caller's time
    between items) and wait seconds; ``count(item)`` images per item. An exception in the
    worker is raised in the caller; closing the generator early stops the worker."""
    times = times if times is not None else OverlapTimes()
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def work():
        try:
            it = iter(batches)
            while not stop.is_set():
                t = time.perf_counter()
                item = next(it, _DONE)
                times.decode += time.perf_counter() - t
                q.put(item)
                if item is _DONE:
                    return
        except BaseException as exc:  # handed to the caller
            q.put(exc)

    worker = threading.Thread(target=work, name="decode-batches", daemon=True)
    worker.start()
    try:
        while True:
            t = time.perf_counter()
            item = q.get()
            times.wait += time.perf_counter() - t
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            t = time.perf_counter()
            yield item
            times.model += time.perf_counter() - t
            times.images += int(count(item))
    finally:
        stop.set()
        while worker.is_alive():  # unblock a worker waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.05)
