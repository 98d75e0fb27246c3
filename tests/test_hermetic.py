"""Tests are hermetic (issue 15, item 2): they pass whatever TRADELAB_* and APCA_* variables the caller
has set, as README suggests setting them. Runs tests that read those variables in a child pytest
with hostile values set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = {
    "TRADELAB_LAKE": "/nonexistent/user-lake",
    "TRADELAB_LIVE": "1",
    "TRADELAB_NOW": "2001-01-02T00:00:00Z",  # would refuse every sample bar as "from the future"
    "TRADELAB_ALERT_WEBHOOK": "http://127.0.0.1:9/hook",
    "TRADELAB_ALPACA_DATA_URL": "http://127.0.0.1:9",
    "APCA_API_KEY_ID": "user-key-id",
    "APCA_API_SECRET_KEY": "user-secret-key",
    "APCA_API_BASE_URL": "http://127.0.0.1:9",
}
SELECTED = [
    "tests/tradelab/test_jobs.py::test_nightly_success_keeps_notebook_html_status_and_redacts_secrets",
    "tests/data_lake/test_alpaca_ingest.py",
    "tests/data_lake/test_stamps.py",
    "tests/tradelab/test_cli.py::test_lake_option_beats_default_and_json_format",
]


def test_tests_pass_with_the_callers_variables_set(tmp_path: Path):
    env = {**os.environ, **HOSTILE}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *SELECTED],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
