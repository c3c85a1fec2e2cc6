"""The papermill runner: notebook selection, parameters, and failures named by notebook and cell."""
from __future__ import annotations

import json
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from hm_utils.runner.series import (PipelineError, list_notebooks, main, parse_param, parse_params, run_series,
                                    select_notebooks)


def _write_nb(path, *sources, parameters: str = ""):
    cells = [new_markdown_cell("# test"),
             new_code_cell('DATA_DIR = None\nWORK_DIR = "w"\nPROFILE = "demo"\nSEED = 42' + parameters)]
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
    out = subprocess.run([sys.executable, "-m", "hm_utils.runner.series", "--profile", "huge"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_param_values_are_literals_else_strings():
    assert parse_param("EPOCHS=1") == ("EPOCHS", 1)
    assert parse_param("SHARE=0.5") == ("SHARE", 0.5)
    assert parse_param("MAX_TRIPLETS=None") == ("MAX_TRIPLETS", None)
    assert parse_param("IMAGE_SIZE=(96, 64)") == ("IMAGE_SIZE", (96, 64))
    assert parse_param("STRATEGIES=['original', 'hard']") == ("STRATEGIES", ["original", "hard"])
    assert parse_param("FLAG=true") == ("FLAG", True)                 # JSON spelling
    assert parse_param('W={"a": 1, "b": null}') == ("W", {"a": 1, "b": None})
    assert parse_param("BACKBONE=resnet50") == ("BACKBONE", "resnet50")  # not a literal: the string
    assert parse_param("NAME='01'") == ("NAME", "01")
    assert parse_param("DATE=2020-09-15") == ("DATE", "2020-09-15")
    assert parse_param("EQ=a=b") == ("EQ", "a=b")                     # split at the first '='
    assert parse_param("EMPTY=") == ("EMPTY", "")
    assert parse_params(["A=1", "B=x", "A=2"]) == {"A": 2, "B": "x"}  # a later KEY wins
    assert parse_params(None) == {}
    for bad in ("EPOCHS", "=1", "2X=1", "A B=1"):
        with pytest.raises(ValueError, match="KEY=VALUE"):
            parse_param(bad)
    with pytest.raises(ValueError, match="--work-dir"):
        parse_param("WORK_DIR=/tmp/x")


def test_cli_param_reaches_the_notebook(tmp_path, capsys):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _write_nb(nbdir / "01_params.ipynb",
              "import json, pathlib\npathlib.Path(WORK_DIR, 'p.json').write_text(json.dumps([EPOCHS, BACKBONE]))",
              parameters="\nEPOCHS = 10\nBACKBONE = 'lite0'")
    _write_nb(nbdir / "02_other.ipynb",  # declares neither: papermill must not be handed them
              "import json, pathlib\npathlib.Path(WORK_DIR, 'q.json').write_text(json.dumps('EPOCHS' in globals()))")
    work = tmp_path / "work"
    rc = main(["--profile", "tiny", "--work-dir", str(work), "--notebooks-dir", str(nbdir), "--no-report",
               "--param", "EPOCHS=3", "--param", "BACKBONE=resnet50", "--param", "NOBODY=1"])
    assert rc == 0
    assert json.loads((work / "p.json").read_text()) == [3, "resnet50"]
    assert json.loads((work / "q.json").read_text()) is False
    console = capsys.readouterr()
    assert "Passed unknown parameter" not in console.out + console.err
    assert (console.out.count("--param EPOCHS: taken by 01") == 1
            and "--param NOBODY: declared by none of these notebooks" in console.out), console.out
    assert main(["--profile", "tiny", "--work-dir", str(work), "--notebooks-dir", str(nbdir), "--no-report",
                 "--param", "SEED=1"]) == 2
    assert "--seed" in capsys.readouterr().err


# ------------------------------------------------- console, run record ---
NOISE_MARKERS = ("Kernel is running over TCP", "absl::InitializeLog", "port.cc:", "cudart_stub.cc",
                 "cpu_feature_guard", "cuInit", "To enable the following instructions")


def test_startup_noise_filter_drops_known_lines_only():
    from hm_utils.runner.console import is_startup_noise
    dropped = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795847699.746097    6512 port.cc:153] oneDNN custom operations are on. You may see ...",
        "I0000 00:00:1795847699.746928    6512 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.",
        "I0000 00:00:1795847745.473319    7487 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
        "available CPU instructions in performance-critical operations.",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
        "appropriate compiler flags.",
    ]
    for line in dropped:
        assert is_startup_noise(line, gpu_present=False) and is_startup_noise(line, gpu_present=True), line
    cuinit = ("E0000 00:00:1795847702.168972    6512 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
              "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")
    assert is_startup_noise(cuinit, gpu_present=False)
    assert not is_startup_noise(cuinit, gpu_present=True)  # with a GPU it is a real error
    kept = [
        "E0000 00:00:1795847702.168972    6512 some_op.cc:12] Resource exhausted: OOM when allocating tensor",
        "W0000 00:00:1795847702.168972    6512 port.cc:99] something else entirely",
        "Segmentation fault (core dumped)",
        "Traceback (most recent call last):",
        "",
    ]
    for line in kept:
        assert not is_startup_noise(line, gpu_present=False), line


def test_summarize_outputs():
    from hm_utils.runner.series import summarize_outputs
    assert summarize_outputs([]) == "nothing"
    paths = ["a.parquet", "figures/01_x.png", "figures/01_y.png", "metrics/01_a.json", "models/m/x.keras"]
    assert summarize_outputs(paths) == "a.parquet, figures/ (2), metrics/01_a.json, models/m/x.keras"
    assert summarize_outputs([f"f{i}.csv" for i in range(10)], max_items=3) == "f0.csv, f1.csv, f2.csv, +7 more"


def test_run_record_peak_memory_and_failure(tmp_path):
    """The run record holds every notebook of the last run with its kernel's peak
    memory: a notebook that holds 400 MB for a moment (and frees it before it ends)
    peaks at least that high, one that does not stays well below; a failure is
    recorded and keeps the earlier entries."""
    from hm_utils.runner.series import read_run_record, run_record_path
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _write_nb(nbdir / "01_big.ipynb",
              "import numpy as np, time\na = np.ones(50_000_000)  # 400 MB, every page touched\ntime.sleep(0.5)\n"
              "del a")
    _write_nb(nbdir / "02_small.ipynb", "import numpy as np\nx = np.ones(10)")
    _write_nb(nbdir / "03_fails.ipynb", "raise RuntimeError('stop here')")
    work = tmp_path / "work"
    lines = []
    results = run_series("tiny", work, None, only="01,02", notebooks_dir=nbdir, log=lines.append, report=False)
    record = read_run_record(work)
    assert [e["notebook"] for e in record] == ["01_big", "02_small"]
    assert all(e["status"] == "ok" and e["seconds"] > 0 and e["profile"] == "tiny" for e in record)
    big, small = record[0]["peak_rss_gb"], record[1]["peak_rss_gb"]
    assert big >= 0.40, big
    assert big - small >= 0.30, (big, small)
    assert [r.peak_rss_gb for r in results] == [big, small]
    assert any(line.startswith("[1/2] 01_big") and "started" in line for line in lines)
    assert any(line.startswith("[1/2] 01_big") and " ok in " in line and f"peak {big:.2f} GB" in line for line in lines)

    with pytest.raises(PipelineError):
        run_series("tiny", work, None, only="03", notebooks_dir=nbdir, log=lines.append, report=False)
    record = {e["notebook"]: e for e in json.loads(run_record_path(work).read_text())}
    assert set(record) == {"01_big", "02_small", "03_fails"}
    assert record["03_fails"]["status"] == "failed"
    assert "code cell 2" in record["03_fails"]["error"] and "stop here" in record["03_fails"]["error"]
    assert record["01_big"]["peak_rss_gb"] == big
    assert any("03_fails" in line and "FAILED" in line for line in lines)


def test_finished_kernel_is_shut_down_without_sigint(tmp_path):
    """jupyter_client interrupts a kernel before shutting it down; the runner does
    not (a SIGINT inside a message handler made ipykernel log "KeyboardInterrupt
    caught in kernel" after notebooks that ran fine). The notebook makes every
    SIGINT after its cells leave a mark in WORK_DIR."""
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _write_nb(nbdir / "01_sigint.ipynb",
              "import pathlib, signal\n"
              "record = lambda *a: pathlib.Path(WORK_DIR, 'sigint.txt').open('a').write('INT\\n')\n"
              "kernel = get_ipython().kernel\n"
              "kernel.post_handler_hook = lambda: signal.signal(signal.SIGINT, record)")
    work = tmp_path / "work"
    run_series("tiny", work, None, notebooks_dir=nbdir, log=lambda *a: None, report=False)
    assert (work / "executed" / "01_sigint.ipynb").is_file()
    assert not (work / "sigint.txt").exists()


@pytest.mark.slow
def test_cli_console_keeps_real_kernel_output_and_drops_startup_noise(tmp_path):
    """TensorFlow's start-up lines (and, without a GPU, the cuInit error) stay off
    the console but stay in the kernel log; a line the kernel process writes to
    its stderr itself still shows; a failure names notebook, cell and error, shows
    the cell's stderr and points to the executed copy."""
    import os

    from hm_utils.runner.console import has_nvidia_device, is_startup_noise
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _write_nb(nbdir / "01_uses_tf.ipynb",
              "import tensorflow as tf\nprint(float(tf.reduce_sum(tf.ones((2, 2)))))",
              "import os\nos.write(2, b'REAL LINE FROM THE KERNEL PROCESS\\n')")
    _write_nb(nbdir / "02_fails.ipynb", "x = 1",
              "import sys\nprint('the cell explains itself on stderr', file=sys.stderr)\n"
              "raise KeyError('missing column xyz')")
    work = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-m", "hm_utils.runner.series", "--profile", "tiny", "--work-dir", str(work),
                          "--notebooks-dir", str(nbdir), "--no-report"],
                         capture_output=True, text=True, env=env, timeout=600)
    console = out.stdout + out.stderr
    assert out.returncode == 1, console
    assert "[1/2] 01_uses_tf" in console and "[2/2] 02_fails" in console
    assert "  [kernel] REAL LINE FROM THE KERNEL PROCESS" in console
    kernel_log = (work / "executed" / "01_uses_tf.kernel.log").read_text()
    assert "REAL LINE FROM THE KERNEL PROCESS" in kernel_log
    noise = [ln for ln in kernel_log.splitlines() if is_startup_noise(ln)]
    for line in noise:
        assert line not in console
    for marker in NOISE_MARKERS:
        if marker == "cuInit" and has_nvidia_device():
            continue
        assert marker not in console, marker
    assert "notebook 02_fails failed in code cell 3: KeyError: 'missing column xyz'" in console
    assert "the cell explains itself on stderr" in console
    # the executed notebook carries what the cells printed, and none of what C++ code wrote to the process's
    # stderr (TensorFlow's start-up lines, the kernel's own line): that stays in the kernel log
    cells = nbformat.read(work / "executed" / "01_uses_tf.ipynb", as_version=4).cells
    shown = json.dumps([c.get("outputs", []) for c in cells])
    assert "4.0" in shown
    for marker in (*NOISE_MARKERS, "REAL LINE FROM THE KERNEL PROCESS"):
        assert marker not in shown, marker
    assert f"executed copy (all outputs and the full traceback): {work / 'executed' / '02_fails.ipynb'}" in console


@pytest.mark.notebooks
def test_cli_tiny_profile_console_is_readable(tmp_path):
    """`hm-pipeline --profile tiny --only 01,02`: a header, per notebook one start
    and one result line (time, peak memory, files written), a closing line with the
    report; no kernel or TensorFlow start-up lines; run.json and the report written."""
    import os
    work = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([sys.executable, "-m", "hm_utils.runner.series", "--profile", "tiny", "--work-dir", str(work),
                          "--only", "01,02"], capture_output=True, text=True, env=env, timeout=900)
    console = out.stdout + out.stderr
    assert out.returncode == 0, console
    for marker in NOISE_MARKERS:
        assert marker not in console, marker
    lines = console.splitlines()
    assert lines[0].startswith("hm-embeddings · profile tiny · 2 notebooks")
    for i, name in ((1, "01_data_preparation"), (2, "02_triplet_mining")):
        starts = [ln for ln in lines if ln.startswith(f"[{i}/2] {name}") and " started " in ln]
        ends = [ln for ln in lines if ln.startswith(f"[{i}/2] {name}") and " ok in " in ln]
        assert len(starts) == 1 and len(ends) == 1, console
        assert " GB · wrote " in ends[0]
    assert "articles.parquet" in console and "triplets.parquet" in console
    assert lines[-1].startswith("done · 2 notebooks in ") and str(work / "report" / "index.html") in lines[-1]
    assert len(lines) <= 12, console  # header (2), 2 x (start, result), a few milestones, done
    record = json.loads((work / "metrics" / "run.json").read_text())
    assert [e["notebook"] for e in record] == ["01_data_preparation", "02_triplet_mining"]
    assert all(e["status"] == "ok" and e["peak_rss_gb"] > 0.05 for e in record)
    assert (work / "report" / "index.html").is_file() and (work / "report" / "02_triplet_mining.html").is_file()


def test_parameters_go_only_to_the_notebooks_that_declare_them(tmp_path):
    from hm_utils.runner.series import parameters_for
    _write_nb(tmp_path / "01_a.ipynb", "x = 1", parameters="\nEPOCHS = 2")
    _write_nb(tmp_path / "02_b.ipynb", "x = 1")
    nbs = list_notebooks(tmp_path)
    per, takers = parameters_for(nbs, {"WORK_DIR": "w", "EPOCHS": 5, "OTHER": 1})
    assert per == {"01_a": {"WORK_DIR": "w", "EPOCHS": 5}, "02_b": {"WORK_DIR": "w"}}
    assert takers == {"WORK_DIR": ["01_a", "02_b"], "EPOCHS": ["01_a"], "OTHER": []}


def test_kernel_command_keeps_fd_output_out_of_the_cells():
    from hm_utils.runner.console import NO_FD_CAPTURE, with_fd_output_kept_out
    cmd = ["/v/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert with_fd_output_kept_out(cmd) == [*cmd, NO_FD_CAPTURE]
    assert with_fd_output_kept_out([*cmd, NO_FD_CAPTURE]) == [*cmd, NO_FD_CAPTURE]   # not twice
    assert with_fd_output_kept_out(["R", "--slave"]) == ["R", "--slave"]               # not an ipykernel


def test_compare_runs_lists_figures_that_differ_and_counts_timings_apart(tmp_path, capsys):
    from hm_utils.runner.compare import compare_runs
    from hm_utils.runner.compare import main as compare_main
    a, b = tmp_path / "a", tmp_path / "b"
    for d, acc, secs, extra in ((a, 0.87, 12.0, {"profile": "demo"}), (b, 0.91, 15.5, {})):
        (d / "metrics").mkdir(parents=True)
        (d / "metrics" / "03_model_training.json").write_text(json.dumps(
            {"models": {"image_only": {"trained_accuracy": acc, "seconds_per_epoch": secs}},
             "curve": [1, 2, 3], "data_dir": str(d), **extra}))
    (a / "metrics" / "04_embedding_export.json").write_text(json.dumps({"n": 1}))
    got = compare_runs(a, b)
    assert got["03_model_training.json"] == ["/models/image_only/trained_accuracy: 0.87 -> 0.91",
                                             "/profile: only in a"]
    assert got["04_embedding_export.json"] == ["only in a"]
    assert got["_volatile"] == ["2"]                        # seconds_per_epoch and data_dir
    assert compare_main([str(a), str(a)]) == 0 and "0 differing figure(s)" in capsys.readouterr().out
    assert compare_main([str(a), str(b)]) == 1
    assert compare_main([str(a), str(tmp_path / "nowhere")]) == 2
