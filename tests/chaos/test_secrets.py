"""Secrets (issue 7, item 6): with fake Alpaca keys in the environment, nothing tradelab writes or
prints holds them.

The keys are set as a user sets them (APCA_API_KEY_ID / APCA_API_SECRET_KEY, read by
``tradelab/cli/live.py`` and ``ingest.py``), then the demo's path runs: the nightly (papermill, a real
kernel, tiny parameters), a parity replay of its params through the live bridge against the
simulator, ``tradelab sim`` with ``tradelab live halt`` against it (the keys on the wire), and
``tradelab live status``. Every file under the test's folder is then read as bytes: the run folder
(executed notebook, HTML, status.json, params.json, report.html), params/ and its history, the
replay's decision log and SQLite state store (and its WAL), the lake the jobs wrote to, the kernel's
IPython profile and Jupyter runtime folders; and every captured stdout/stderr. Each is searched for the key and
the secret as they are, URL-encoded, and in base64 (both alphabets, at the three alignments, so a key
inside a larger base64 blob is found too).

The live runner trading the simulator in its own process is covered the same way by
``tests/tradelab/test_cli_live.py`` (the keys-never-leak part of its SIGTERM test).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

from tests.test_notebooks import NOTEBOOKS, OPEN_GATE, TINY

# '/', '+' and '=' make the URL-encoded and base64 forms differ from the raw one.
KEY, SECRET = "PKCHAOS7FAKE0KEY9QZX", "chaos/fake+Secret=9mYq2RtW0vXb4Ns8Lk"


def forms(secret: str) -> dict[str, bytes]:
    """The byte strings that betray ``secret``: raw, URL-encoded, and base64 at every alignment."""
    raw = secret.encode()
    out = {"raw": raw, "url-encoded": quote(secret, safe="").encode()}
    if quote_plus(secret) != quote(secret, safe=""):  # differs only for spaces
        out["form-encoded"] = quote_plus(secret).encode()
    for pad in range(3):  # the characters that depend on the secret's bytes only, wherever it starts
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            full = encode(b"\0" * pad + raw)
            out[f"{name}+{pad}"] = full[4 if pad else 0:(pad + len(raw)) // 3 * 4]
    return out


NEEDLES = {f"{what} ({form})": needle for what, value in (("key", KEY), ("secret", SECRET))
           for form, needle in forms(value).items()}


def leaks(data: bytes) -> list[str]:
    """Which forms of the key or the secret ``data`` holds."""
    return [name for name, needle in NEEDLES.items() if needle in data]


def produced(root: Path) -> list[Path]:
    """Every file under ``root``, not following symlinks (the notebooks link points at the sources)."""
    return sorted(Path(d) / f for d, _, files in os.walk(root, followlinks=False) for f in files
                  if not (Path(d) / f).is_symlink())


def tradelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradelab", *args], capture_output=True, cwd=cwd, timeout=600)


def test_the_scanner_finds_every_form_inside_other_bytes():
    for name, needle in NEEDLES.items():
        assert leaks(b"prefix " + needle + b" suffix") and name in leaks(needle), name
    for pad in range(3):  # a secret inside a larger base64 blob, at each alignment
        blob = base64.b64encode(b"x" * pad + json.dumps({"secret": SECRET}).encode())
        assert any(n.startswith("secret (base64+") for n in leaks(blob)), pad
    assert leaks(f"https://x/?k={quote(SECRET, safe='')}".encode()) == ["secret (url-encoded)"]
    assert leaks(b"nothing to see") == []


def test_fake_keys_appear_in_no_file_and_no_output_of_the_demo_path(sample_lake_rw, tmp_path, monkeypatch, chaos):
    # Arrange: the keys in the environment, as a user sets them; the kernel's files inside tmp_path
    env = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET, "TRADELAB_LAKE": str(sample_lake_rw.root),
           "IPYTHONDIR": str(tmp_path / "ipython"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter"),
           "PYTHONPATH": str(NOTEBOOKS.parent)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "notebooks").symlink_to(NOTEBOOKS)
    outputs: dict[str, bytes] = {}
    sim = subprocess.Popen([sys.executable, "-m", "tradelab", "sim", "--symbols", "MSFT", "--start", "2012-06-01",
                            "--speed", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Act: the nightly, its params replayed through the live bridge, halt against the simulator, status
        overrides = [a for k, v in {**TINY, "gate": OPEN_GATE}.items() for a in ("-p", f"{k}={json.dumps(v)}")]
        nightly = tradelab("nightly", *overrides, "-p", f"lake={sample_lake_rw.root}", cwd=tmp_path)
        assert nightly.returncode == 0, nightly.stderr[-3000:]
        parity = tradelab("parity", "--candidates", "--work-dir", str(tmp_path / "parity"), cwd=tmp_path)
        assert b"parity OK" in parity.stdout, parity.stdout[-2000:] + parity.stderr[-2000:]
        url = re.search(rb"simulator at (http://\S+)", sim.stdout.readline()).group(1).decode()
        halt = tradelab("live", "halt", "--url", url, "--state-dir", str(tmp_path / "halted"), cwd=tmp_path)
        assert halt.returncode == 0 and b"halt: 0 closing orders sent" in halt.stdout, halt.stderr[-2000:]
        status = tradelab("live", "status", "--state-dir", str(tmp_path / "parity"), cwd=tmp_path)
        assert status.returncode == 0 and b"last decision" in status.stdout, status.stderr[-2000:]
    finally:
        sim.send_signal(signal.SIGTERM)
        sim_out, sim_err = sim.communicate(timeout=60)
    for name, run in (("nightly", nightly), ("parity", parity), ("halt", halt), ("status", status)):
        outputs[f"{name} stdout"], outputs[f"{name} stderr"] = run.stdout, run.stderr
    outputs["sim stdout"], outputs["sim stderr"] = sim_out, sim_err

    # Assert: not one form of either key in any file or output
    files = produced(tmp_path)
    kinds = {p.name for p in files}
    assert {"nightly.ipynb", "nightly.html", "status.json", "params.json", "report.html", "summary.json",
            "current.json", "decisions.jsonl", "state.db", "HALT"} <= kinds, sorted(kinds)
    found = {str(p.relative_to(tmp_path)): leaks(p.read_bytes()) for p in files}
    found |= {name: leaks(text) for name, text in outputs.items()}
    found = {where: what for where, what in found.items() if what}
    chaos["files_scanned"] += len(files)
    chaos["secrets_leaked"] += sum(len(what) for what in found.values())
    assert found == {}, f"the fake keys leaked into {found}"
