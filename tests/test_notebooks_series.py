"""Notebook tier: what every executed notebook of the tiny run shows a reader."""
from __future__ import annotations

import nbformat
import pytest

from hm_utils.core.config import EXECUTED_DIR
from hm_utils.runner.console import is_startup_noise

pytestmark = pytest.mark.notebooks

#: TensorFlow's start-up lines as they showed in executed notebooks before the kernels kept file-descriptor
#: output out of the cells (``runner.console.NO_FD_CAPTURE``)
TF_MARKERS = ("absl::InitializeLog", "cudart_stub.cc", "cuda_platform.cc", "cuInit", "port.cc:",
              "cpu_feature_guard", "oneDNN custom operations")


def test_no_tensorflow_start_up_line_in_any_executed_notebook(tiny_series):
    executed = sorted((tiny_series / EXECUTED_DIR).glob("0*.ipynb"))
    assert len(executed) == 7
    found = []
    for path in executed:
        for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
            for out in cell.get("outputs", []):
                for line in "".join(out.get("text", "")).splitlines():
                    if is_startup_noise(line, gpu_present=False) or any(m in line for m in TF_MARKERS):
                        found.append(f"{path.name} cell {i}: {line[:100]}")
    assert found == []
