"""What a backbone computes in, and how close the fast path must stay to the plain model.

- :func:`resolve_precision`: ``"auto"`` -> ``"bfloat16"`` on a CPU with AMX-BF16 and no
  visible GPU, else ``"float32"`` (:func:`cpu_has_fast_bfloat16` reads ``/proc/cpuinfo``).
- The first-batch check of :func:`hm_utils.model.inference.make_embed_fn`: its thresholds
  (:data:`CHECK_IMAGES`, :data:`FLOAT32_TOLERANCE`, :data:`BFLOAT16_MIN_COSINE`) and the
  row-wise cosine it measures with (:func:`row_cosines`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hm_utils.core.similarity import pairwise_cosine

PRECISIONS = ("auto", "float32", "bfloat16")


# ------------------------------------------------------------- precision ---
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags (lower case) from ``/proc/cpuinfo``; empty where it cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.lower().startswith("flags"):
            return set(line.split(":", 1)[1].lower().split())
    return set()


def cpu_has_fast_bfloat16(flags: set[str] | None = None) -> bool:
    """True when the CPU has AMX with bfloat16 (``amx_bf16``): the case where the
    bfloat16 rewrite pays several times over (without AMX, AVX512-BF16 alone
    gains far less)."""
    return "amx_bf16" in (cpu_flags() if flags is None else flags)


def resolve_precision(precision: str = "auto", *, flags: set[str] | None = None,
                      gpus: int | None = None) -> str:
    """``"auto"`` -> ``"bfloat16"`` on a CPU with AMX-BF16 and no visible GPU,
    else ``"float32"``; ``"float32"``/``"bfloat16"`` are returned as they are.
    ``flags`` and ``gpus`` override what is read from the machine (for tests)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision != "auto":
        return precision
    if gpus is None:
        import tensorflow as tf
        gpus = len(tf.config.list_physical_devices("GPU"))
    return "bfloat16" if gpus == 0 and cpu_has_fast_bfloat16(flags) else "float32"


# ------------------------------------------------------ first-batch check ---
# First-batch check of the compiled path against the plain float32 models, on up
# to CHECK_IMAGES images. float32: largest |difference| / max(1, largest |plain
# value|) must stay <= FLOAT32_TOLERANCE, else every model runs whole (traced,
# float32). bfloat16: every embedding's cosine to the plain one must be >=
# BFLOAT16_MIN_COSINE; with precision "auto" a lower one switches the backbones to
# float32 (a model whose head amplifies small feature differences, such as the
# demo's image-only model on its untrained backbone: cosine 0.92-1.0), with
# "bfloat16" asked for explicitly it is only a warning.
CHECK_IMAGES = 8
FLOAT32_TOLERANCE = 1e-4
BFLOAT16_MIN_COSINE = 0.995


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`hm_utils.core.similarity.pairwise_cosine` of two float [n, d] arrays, except
    that two all-zero rows (a relu embedding that is zero either way) count as equal: 1."""

    both_zero = ~np.asarray(a).any(axis=1) & ~np.asarray(b).any(axis=1)
    return np.where(both_zero, 1.0, pairwise_cosine(a, b))
