"""What a notebook shows and records: figures saved as PNG (and shown), and
its key figures as a small JSON that the tests read back.

Layout: ``WORK_DIR/figures/<name>.png`` and ``WORK_DIR/metrics/<notebook>.json``.
"""
from __future__ import annotations

from pathlib import Path

from hm_utils.core.config import FIGURES_DIR, METRICS_DIR
from hm_utils.core.storage import atomic_path, read_json, write_json


def save_figure(fig, work_dir: str | Path, name: str, show: bool = True, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``WORK_DIR/figures/<name>.png`` (atomically),
    show it inline when running in a notebook, close it, and return the path."""
    import matplotlib.pyplot as plt  # the figure exists, so pyplot (and its backend) is set up already

    path = Path(work_dir) / FIGURES_DIR / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    if show:
        try:
            from IPython import get_ipython
            from IPython.display import display
            if get_ipython() is not None:
                display(fig)
        except ImportError:  # pragma: no cover - IPython always present with jupyter
            pass
    plt.close(fig)
    return path


def record_metrics(work_dir: str | Path, notebook: str, metrics: dict) -> Path:
    """Write a notebook's key figures to ``WORK_DIR/metrics/<notebook>.json``
    (numpy numbers become plain JSON numbers). Returns the path."""
    return write_json(metrics, Path(work_dir) / METRICS_DIR / f"{notebook}.json")


def load_metrics(work_dir: str | Path, notebook: str) -> dict:
    """Read back what :func:`record_metrics` wrote."""
    return read_json(Path(work_dir) / METRICS_DIR / f"{notebook}.json")
