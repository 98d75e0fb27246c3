"""Fuzzing the params file (issue 7, bad input): a broken file is refused by name, and installs nothing.

The base is a valid file written by ``pipeline.params_store.write_candidate`` (an active entry and a flat
one). Hypothesis edits its JSON one to three times (drops a field, gives one a value of the wrong
type, adds an unknown field, puts a number out of range) and may then break the bytes (truncated,
not UTF-8, a BOM, UTF-16, a key repeated, a NaN token, one byte flipped). Then:

* ``research.params.load`` returns a usable file (every entry builds its strategy's params and exit
  rules, and it round-trips) or raises ValueError naming the file; never anything else;
* ``tradelab params validate|show|diff`` exit 0, or exit 2 with ``error: <file>: ...``;
* the nightly's install step (``tradelab.cli.jobs._install``) given the broken file as tonight's
  candidate, or finding it as ``current.json``, raises ValueError and leaves the params folder
  (current.json and history) unchanged byte for byte.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.params_store import install, write_candidate
from research.params import EntryVerdict, ParamsFile, dumps, load, loads
from tests.chaos.test_fuzz_cli import assert_user_error, invoke
from tests.kit import tree_digest
from tests.kit import entry, params_file

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=10)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | TEXT,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=6)
NUMBERS = st.sampled_from([-1, 0, 1, 1.5, -1e308, 1e308, 2**63, -(2**63) - 1, 10**30, 0.9999999, 1.0, 2, 10.0,
                           float("nan"), float("inf"), -0.0, 5e-324])
STRINGS = st.sampled_from(["", "x", "sma_cross", "golden_goose", "all", "up_normal", "warmup", "active", "kept",
                           "2024-05-02T22:05:01Z", "2024-05-02T22:05:01+05:00", "2024-05-02T22:05:01", "2024-02-30",
                           "9999-12-31", "0000-01-01", "\u0000", "ééé", "1Day", "1Week", "10", "nightly", "sharpe"]) | TEXT


def _base() -> ParamsFile:
    flat = entry(symbol="MSFT", regime="up_normal", status="flat", out_of_sample=None, deflated_sharpe=None,
                 gate=EntryVerdict(passed=False, reasons=("oos_sharpe missing",)))
    return params_file([entry(), flat])


def _nodes(doc, at: tuple = ()) -> list[tuple]:
    """The path of every value in a JSON document, the root included."""
    out = [at]
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        out += _nodes(v, (*at, k))
    return out


def _at(doc, path: tuple):
    for k in path:
        doc = doc[k]
    return doc


@st.composite
def broken(draw, base: bytes) -> bytes:
    """The base file's bytes, edited as JSON 1-3 times and maybe broken as bytes."""
    doc = json.loads(base)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_nodes(doc)))
        op = draw(st.sampled_from(["drop", "wrong type", "number", "string", "extra"]))
        if not path:  # the root itself
            doc = draw(JSON) if op == "wrong type" else doc
            continue
        parent, key = _at(doc, path[:-1]), path[-1]
        if op == "drop":
            del parent[key]
        elif op == "extra" and isinstance(parent, dict):
            parent[draw(STRINGS) or "x"] = draw(JSON)
        else:
            parent[key] = draw({"wrong type": JSON, "number": NUMBERS, "string": STRINGS, "extra": JSON}[op])
        if not isinstance(doc, (dict, list)):
            break
    data = json.dumps(doc, indent=2, ensure_ascii=draw(st.booleans())).encode()
    op = draw(st.sampled_from([None, None, "truncate", "invalid utf-8", "bom", "utf-16", "repeat key", "NaN",
                               "flip a byte"]))
    if op == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif op == "invalid utf-8":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])) + data[at:]
    elif op == "bom":
        data = b"\xef\xbb\xbf" + data
    elif op == "utf-16":
        data = data.decode().encode("utf-16")
    elif op == "repeat key":
        data = data.replace(b'"schema_version": 1', b'"schema_version": 1, "schema_version": 1', 1)
    elif op == "NaN":
        data = data.replace(b"0.97", b"NaN", 1)
    elif op == "flip a byte" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ (1 << draw(st.integers(0, 7)))]) + data[at + 1:]
    return data


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):
    """The base file (written by the project) and a params folder with it installed as current.json."""
    home = tmp_path_factory.mktemp("params")
    base = write_candidate(_base(), home / "base.json")
    install(load(base), home / "params")
    return home, base


BASE = dumps(_base())
#: inputs that crashed, or passed as valid, before the fix
DEEP = b"[" * 100_000 + b"]" * 100_000
HUGE_TIME_STOP = BASE.replace(b'"time_stop": 0', b'"time_stop": ' + b"9" * 30, 1)  # valid, then crashed numba
OVERFLOW = BASE.replace(b'"sharpe": 1.1', b'"sharpe": 1e400', 1)  # silently became null
UTF16 = BASE.decode().encode("utf-16")  # "invalid field (top level)"


@settings(FUZZ, max_examples=400)
@given(broken(BASE))
@example(DEEP)
@example(b'{"a":' * 5000 + b"1" + b"}" * 5000)
@example(HUGE_TIME_STOP)
@example(OVERFLOW)
@example(UTF16)
@example(BASE.replace(b'"fast": 10', b'"fast": ' + b"9" * 5000, 1))  # the int-digits limit's own advice
def test_a_broken_file_is_refused_by_name(files, chaos, data):
    home, base = files
    chaos["inputs_fuzzed"] += 1
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        path = Path(tmp) / "edited.json"
        path.write_bytes(data)
        try:
            pf = load(path)
        except ValueError as exc:  # every other exception type fails the test
            message = str(exc)
            assert message.startswith(f"{path}: ") and len(message.splitlines()[0]) > len(str(path)) + 10, message
            valid = False
        else:  # accepted: then it is usable by the sweep and the live bridge
            for e in pf.entries:
                e.make_params(), e.exit_rules.to_rules()
                assert all(v is None or math.isfinite(v) for v in e.in_sample.model_dump().values())
            assert loads(dumps(pf)) == pf
            valid = True
        command = ["params", "validate", str(path)] if len(data) % 3 == 0 else \
            ["params", "show", str(path)] if len(data) % 3 == 1 else ["params", "diff", str(base), str(path)]

        r = invoke(*command)

    if valid:
        assert r.exit_code == 0, r.output
    else:
        assert_user_error(r, f"error: {path}: ")


@settings(FUZZ, max_examples=150)
@given(broken(BASE), st.booleans())
@example(DEEP, True)
@example(DEEP, False)
@example(HUGE_TIME_STOP, True)
def test_a_broken_file_installs_nothing(files, chaos, data, as_current):
    """Broken as tonight's candidate, or found as current.json: the params folder stays as it was."""
    from tradelab.cli.jobs import _install

    home, _ = files
    chaos["inputs_fuzzed"] += 1
    with tempfile.TemporaryDirectory(dir=home) as tmp:
        params_dir, run_dir = Path(tmp) / "params", Path(tmp) / "run"
        shutil.copytree(home / "params", params_dir)
        run_dir.mkdir()
        current = params_dir / "current.json"
        if as_current:  # a hand-edit broke the file in force; tonight's candidate is fine and promoted
            current.write_bytes(data)
            candidate = params_file(promoted=True, previous=_base().sha256(), code_version="tonight")
            write_candidate(candidate, run_dir / "params.json")
        else:
            (run_dir / "params.json").write_bytes(data)
        before = tree_digest(params_dir)

        try:
            _install(run_dir, params_dir)
        except ValueError as exc:
            assert str(exc).startswith((str(current), str(run_dir / "params.json"))), exc  # names the file
            assert tree_digest(params_dir) == before, "a refused install changed the params folder"
        else:  # the edits left the file valid (and, as current.json, the same file): a normal install
            if as_current:
                assert load(current).code_version == "tonight"
