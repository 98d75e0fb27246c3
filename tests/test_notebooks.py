"""Notebooks run as tests, with tiny parameters, through papermill and a real kernel."""

from __future__ import annotations

from pathlib import Path

import papermill as pm

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_lake_quickstart_notebook(sample_lake, tmp_path: Path):
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / "lake_quickstart.ipynb"), str(out),
                        parameters={"lake_root": str(sample_lake.root), "symbol": "MSFT"},
                        kernel_name="python3", cwd=str(NOTEBOOKS), progress_bar=False)
    text = out.read_text()
    assert "3270" in text  # MSFT's real daily bar count, from DuckDB in the kernel
