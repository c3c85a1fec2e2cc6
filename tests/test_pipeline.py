"""The papermill runner: notebook selection, parameters, and failures named by notebook and cell."""
from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from hm_utils.pipeline import PipelineError, list_notebooks, run_series, select_notebooks


def _write_nb(path, *sources):
    cells = [new_markdown_cell("# test"),
             new_code_cell('DATA_DIR = None\nWORK_DIR = "w"\nPROFILE = "demo"\nSEED = 42')]
    cells[1].metadata["tags"] = ["parameters"]
    cells += [new_code_cell(s) for s in sources]
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "py",
                                                                      "language": "python"}}), path)


def test_series_is_numbered_and_complete():
    names = [p.stem for p in list_notebooks()]
    assert names == sorted(names)
    assert all(n[:2].isdigit() and n[2] == "_" for n in names)
    assert names[0] == "01_data_preparation"


def test_select_notebooks(tmp_path):
    for n in ("01_a_b", "02_c_d", "03_e_f"):
        (tmp_path / f"{n}.ipynb").write_text("{}")
    nbs = list_notebooks(tmp_path)
    assert [p.stem for p in select_notebooks(nbs, "03,1")] == ["01_a_b", "03_e_f"]
    assert select_notebooks(nbs, None) == nbs
    with pytest.raises(ValueError, match="unknown notebook.*09"):
        select_notebooks(nbs, "09")


def test_runner_passes_parameters_and_names_failing_cell(tmp_path):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _write_nb(nbdir / "01_write_params.ipynb",
              "import json, pathlib\npathlib.Path(WORK_DIR, 'p.json').write_text(json.dumps([PROFILE, SEED, DATA_DIR]))")
    _write_nb(nbdir / "02_fail_here.ipynb", "x = 1", "raise ValueError('boom in the third code cell')")
    work = tmp_path / "work"
    results = run_series("tiny", work, None, only="01", seed=7, notebooks_dir=nbdir, log=lambda *a: None)
    assert json.loads((work / "p.json").read_text()) == ["tiny", 7, None]
    assert (work / "executed" / "01_write_params.ipynb").is_file()
    assert results[0].notebook == "01_write_params"
    with pytest.raises(PipelineError) as err:
        run_series("tiny", work, None, notebooks_dir=nbdir, log=lambda *a: None)
    assert err.value.notebook == "02_fail_here"
    assert err.value.cell == 3  # parameters, "x = 1", then the raise (papermill's injected cell not counted)
    assert "code cell 3" in str(err.value) and "raise ValueError" in str(err.value)
    assert "boom" in str(err.value)


def test_cli_bad_profile_exits_2():
    out = subprocess.run([sys.executable, "-m", "hm_utils.pipeline", "--profile", "huge"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "invalid choice" in out.stderr
