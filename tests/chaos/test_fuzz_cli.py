"""Fuzzing the CLI's arguments (issue 7, bad input): every bad argument is a one-line error, exit 2.

Hypothesis builds argument lists for `tradelab sweep`, `regimes`, `lake query|check|resample|drop`,
`ingest synthetic|sample`, `params schema` and `nightly|weekend -p name=value --config FILE` from
the real option names and values that are valid, odd (0, -1, 1.5, 1e400, NaN, huge integers,
unicode, empty) or wrong in kind (paths under a regular file, folders for files, dates that are not
dates). The command runs in-process through Click's runner (a process per example would be 30x
slower) on a fresh copy of a small lake, from a scratch folder. It must exit 0, or exit 2 naming
the problem (``error: ...``, or Click's usage error naming the option), with the lake's files
unchanged byte for byte and ``params/current.json`` untouched. Never an uncaught exception.
`lake query` must never change the lake, whatever the SQL. For the jobs, only the notebook's execution
is replaced by a recorder of its parameters (running it takes a minute); lock, run folder, status
and install step run for real. A few real processes at the end check that no traceback reaches stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
import typer
from click.testing import CliRunner, Result

from tests.kit import tree_digest
from tradelab.cli import app

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
#: Signs of an exception that escaped into the output instead of a message naming the problem.
CRASH_SIGNS = ("Traceback", "object has no attribute", "NoneType", "not subscriptable", "unexpected keyword argument",
               "got multiple values", "unhashable type", "not enough values to unpack", "codec can't")


COMMAND = typer.main.get_command(app)  # built once: typer's runner rebuilds it on every call (50 ms)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``tradelab ARGS`` in this process (Click's runner: separate stdout and stderr)."""
    return CliRunner().invoke(COMMAND, [str(a) for a in args], env=env, prog_name="tradelab")


def assert_user_error(r: Result, message: str | None = None) -> None:
    """Exit 2 and the problem named (ours: an ``error: ...`` line; Click's: its usage error), no crash."""
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise AssertionError("uncaught exception:\n" + "".join(traceback.format_exception(*r.exc_info)))
    assert r.exit_code == 2, (r.exit_code, r.output)
    for sign in CRASH_SIGNS:
        assert sign not in r.output, r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    if errors:
        assert len(errors[0].strip()) > len("error: ") + 5, r.stderr
    else:
        assert "Usage:" in r.stderr and "Error" in r.stderr, r.output
    if message is not None:
        assert message in r.stderr, r.stderr


def assert_ok_or_user_error(r: Result) -> None:
    if r.exit_code != 0 or r.exception is not None:
        assert_user_error(r)


# -- the scratch world: a small lake, a params folder, placeholder notebooks ---------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """A scratch working folder (the CLI writes runs/ there) with a lake template and params/current.json."""
    from data_lake import Lake
    from data_lake.sources.sample import sample_bars, sample_meta
    from data_lake.sources.synthetic import synthetic_meta
    from pipeline.params_store import install
    from tests.kit import minute_bars
    from tests.kit import params_file

    home = tmp_path_factory.mktemp("cli")
    template = home / "template"
    lake = Lake(template)
    lake.write_bars("FZ", "1Day", sample_bars("AAPL").iloc[-300:], sample_meta())
    lake.write_bars("FZ", "1Min", minute_bars(["2013-03-01"]), synthetic_meta())
    install(params_file(), home / "params")
    (home / "notebooks").mkdir()
    for name in ("nightly_optimize.ipynb", "weekend_sweep.ipynb"):
        (home / "notebooks" / name).write_text("{}")
    (home / "file.txt").write_text("a regular file, not a folder\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        for var in ("TRADELAB_LAKE", "APCA_API_KEY_ID", "APCA_API_SECRET_KEY"):
            mp.delenv(var, raising=False)
        yield SimpleNamespace(home=home, template=template, params=tree_digest(home / "params"))


def run_on_fresh_lake(world: SimpleNamespace, args: list[str], chaos) -> Result:
    """Run ``args`` against a copy of the template lake: a refusal must leave it (and params/) as it was."""
    chaos["inputs_fuzzed"] += 1
    with tempfile.TemporaryDirectory(dir=world.home) as tmp:
        root = Path(tmp) / "lake"
        shutil.copytree(world.template, root)
        before = tree_digest(root)
        r = invoke(*args, env={"TRADELAB_LAKE": str(root)})
        event(f"exit {r.exit_code}")  # --hypothesis-show-statistics: how many ran
        assert_ok_or_user_error(r)
        if r.exit_code != 0:
            assert tree_digest(root) == before, f"{args} changed the lake (exit {r.exit_code})"
    assert tree_digest(world.home / "params") == world.params
    return r


# -- values: valid, odd and wrong ------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=10)
NUMBERS = (st.sampled_from(["0", "-1", "1", "2", "1.5", "nan", "inf", "-inf", "1e30", "1e400", "99999999999999999999",
                            "-0", "", " ", "x", "0x10", "1_000", "0.05", "0,0.05"])
           | st.integers(-10**6, 10**6).map(str) | st.floats().map(repr) | TEXT)
INTS = st.sampled_from(["0", "1", "2", "5", "50", "-1", "100000", "100001", "9223372036854775807",
                        "99999999999999999999", "1.5", "x", ""])
DATES = st.sampled_from(["2012-06-01", "2013-01-02", "2030-01-01", "garbage", "", "2013-02-30", "99999-01-01",
                         "1900-01-01", "2013-01-01T00:00:00+05:00", "20130102"]) | TEXT
PATHS = st.sampled_from(["out/rows.csv", "out/rows.parquet", "rows.txt", "file.txt/x.csv", "file.txt/x.html",
                         "out", "", ".csv", "deep/a/b/c.html", "plot.html", "."])
FRACTIONS = st.sampled_from(["0", "0,0.05", "0.5", "1", "-1", "nan", "inf", "x", "", "0.02,0.02", "1e-300"]) | NUMBERS
GRID = st.builds("{}={}".format, st.sampled_from(["fast", "slow", "short", "kind", "", "zz", "period", "fast "]),
                 st.sampled_from(["5:20:5", "5,10", "10", "50", "5:10:0", "5:1e12:1", "0:inf:1", "nan", "inf", "a:b:c",
                                  "", "5:10", "1e400", "-5", "20:5:5", "sma,ema", "true", "1:3:0.5"]) | NUMBERS)


def mostly(valid: list[str], odd: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Two draws in three valid: most examples then get past the first check and reach the deeper ones."""
    return st.sampled_from(valid) | st.sampled_from(valid) | odd


SWEEP_OPTIONS = {
    "--stop-loss": mostly(["0", "0,0.05"], FRACTIONS), "--take-profit": mostly(["0", "0.1"], FRACTIONS),
    "--trailing-stop": mostly(["0", "0.05"], FRACTIONS),
    "--time-stop": mostly(["0", "5", "0,5"], st.sampled_from(["1.5", "-1", "nan", "inf", "1e30", "2147483648"]) | NUMBERS),
    "--fees": mostly(["0.001", "0"], NUMBERS), "--slippage": mostly(["0", "0.0005"], NUMBERS),
    "--walk-forward": mostly(["6m:3m", "63b:21b"], st.sampled_from(["0y:0m", "x", "100y:1m", "", "1y", "6m:3m:1m"]) | TEXT),
    "--start": mostly(["2012-06-01"], DATES), "--end": mostly(["2013-02-01"], DATES),
    "--heatmap": mostly(["fast,slow", "slow,fast", "fast,stop_loss"],
                        st.sampled_from(["x", ",", "fast,zzz", "fast", "slow,fast,kind"]) | TEXT),
    "--max-memory": mostly(["2G", "512M"], st.sampled_from(["0", "1K", "1e400G", "x", "99999999999G", "-1G"])),
    "--chunk": mostly(["1", "3"], INTS), "--min-trades": mostly(["0", "5"], INTS), "--top": mostly(["3"], INTS),
    "--objective": mostly(["sharpe", "total_return"], st.sampled_from(["x", "", "Sharpe"])),
    "--timeframe": mostly(["1Day"], st.sampled_from(["1Min", "2Day", ""])),
    "--benchmark": mostly(["FZ"], st.sampled_from(["!!", "IBM", ""])),
    "--workers": st.sampled_from(["0", "-1", "x", "1.5"]),  # never > 0: a Dask cluster takes seconds to start
    "--out": mostly(["out/rows.csv", "out/rows.parquet"], PATHS), "--plot": mostly(["plots/p.html"], PATHS),
    "--by-regime": None, "--no-guards": None, "--resume": None, "--anchored": None, "--short": None,
}
REGIME_OPTIONS = {"--trend-window": mostly(["20", "50"], INTS), "--slope-bars": mostly(["10"], INTS),
                  "--er-window": mostly(["20"], INTS), "--vol-window": mostly(["20"], INTS),
                  "--vol-history": mostly(["100"], INTS), "--slope-min": mostly(["0.001"], NUMBERS),
                  "--er-min": mostly(["0.3"], NUMBERS), "--low-pct": mostly(["0.2"], NUMBERS),
                  "--high-pct": mostly(["0.8"], NUMBERS), "--extreme-pct": mostly(["0.97"], NUMBERS),
                  "--plot": mostly(["plots/r.html"], PATHS)}


@st.composite
def options(draw, table: dict, max_size: int = 3) -> list[str]:
    out: list[str] = []
    for name in draw(st.lists(st.sampled_from(sorted(table)), max_size=max_size, unique=True)):
        out += [name] if table[name] is None else [name, draw(table[name])]
    return out


@st.composite
def sweep_args(draw) -> list[str]:
    args = ["sweep", "--strategy", draw(mostly(["sma_cross"], st.sampled_from(["rsi_reversion", "pairs", "nope", ""]))),
            "--symbols", draw(mostly(["FZ"], st.sampled_from(["fz, FZ", "", "!!", "NOPE", "FZ,NOPE"])))]
    for _ in range(draw(st.integers(0, 2))):
        args += ["--grid", draw(mostly(["fast=5:20:5", "slow=30,60", "fast=5,10"], GRID))]
    return args + draw(options(SWEEP_OPTIONS))


# -- the tests -------------------------------------------------------------------------------------

SWEEP = ["sweep", "--strategy", "sma_cross", "--symbols", "FZ", "--grid"]


@settings(FUZZ, max_examples=80)
@given(sweep_args())
# regressions: each crashed (or crashed only after the sweep had run and written) before the fix
@example([*SWEEP, "fast=5:1e12:1"])  # MemoryError
@example([*SWEEP, "fast=5", "--time-stop", "inf"])  # OverflowError
@example([*SWEEP, "fast=5", "--time-stop", "1e30"])  # OverflowError
@example([*SWEEP, "fast=5", "--grid", "fast=6"])  # after the sweep
@example([*SWEEP, "short=1"])  # TypeError
@example([*SWEEP, "fast=5", "--heatmap", "x"])  # after the sweep
@example([*SWEEP, "fast=5", "--out", "file.txt/x.csv"])  # after the sweep
@example([*SWEEP, "fast=5", "--workers", "-1"])  # 30 s, then crash
@example([*SWEEP, "fast=5", "--start", "garbage"])  # a message not naming --start
@example([*SWEEP, "fast=5", "--stop-loss", ""])  # ZeroDivisionError
@example([*SWEEP, "fast=sma,ema"])  # TypeError in the params check
def test_sweep_arguments(world, chaos, args):
    run_on_fresh_lake(world, args, chaos)


@settings(FUZZ, max_examples=60)
@given(mostly(["FZ"], st.sampled_from(["fz", "", "!!", "NOPE"])).flatmap(
    lambda bench: options(REGIME_OPTIONS, 4).map(lambda opts: ["regimes", "--benchmark", bench, *opts])))
@example(["regimes", "--benchmark", "FZ", "--trend-window", "99999999999999999999"])  # OverflowError in the kernel
@example(["regimes", "--benchmark", "FZ", "--plot", "file.txt/x.html"])  # crashed after writing the labels
@example(["regimes", "--benchmark", "FZ", "--plot", "."])  # IsADirectoryError after writing the labels
@example(["regimes", "--benchmark", "FZ", "--slope-min", "nan"])  # accepted: every comparison with NaN fails
def test_regimes_arguments(world, chaos, args):
    run_on_fresh_lake(world, args, chaos)


def _sql() -> st.SearchStrategy[str]:
    """SQL that reads, SQL that would write (LAKE stands for the lake's path), and junk."""
    writes = ["COPY (SELECT 1 AS a) TO 'LAKE/bars/timeframe=1Day/symbol=FZ/year=2013/x.parquet'",
              "ATTACH 'LAKE/extra.db' AS x", "EXPORT DATABASE 'LAKE/export'",
              "CREATE TABLE t AS SELECT 1", "SELECT 1; COPY (SELECT 1) TO 'x.csv'", "INSTALL httpfs", "LOAD parquet",
              "EXPLAIN ANALYZE COPY (SELECT 1) TO 'y.csv'", "PRAGMA version", "SET threads = 1", "CHECKPOINT"]
    reads = ["SELECT * FROM bars", "select symbol, count(*) from bars group by 1", "describe bars", "show tables",
             "summarize select 1 as a", "SELECT 1;", "", ";", "-- nothing", "select 'x", "select * from nope",
             "select gen_random_uuid() u, '101'::bit b, '\\x00\\xff'::blob c, 1.5::decimal(4,2) d",
             "select 'infinity'::timestamp t", "select 1 as a, 2 as a", "select [1, 2] l, {'a': 1} s",
             "select 1e308 * 10 x, 'nan'::double y", "select * from quarantine", "select '[red]x[/]' as \"[b]\""]
    return st.sampled_from(writes + reads) | TEXT | st.builds("{}; {}".format, st.sampled_from(reads), st.sampled_from(writes))


@settings(FUZZ, max_examples=120)
@given(_sql(), st.sampled_from([[], ["--format", "json"], ["--format", "csv"], ["--format", "xml"]]))
@example("", [])  # the empty query crashed (AttributeError)
def test_lake_query_never_changes_the_lake(world, chaos, sql, fmt):
    chaos["inputs_fuzzed"] += 1
    with tempfile.TemporaryDirectory(dir=world.home) as tmp:
        root = Path(tmp) / "lake"
        shutil.copytree(world.template, root)
        before = tree_digest(root)
        r = invoke("lake", "query", sql.replace("LAKE", str(root)), *fmt, "--lake", str(root))
        assert_ok_or_user_error(r)
        assert tree_digest(root) == before, f"{sql!r} changed the lake"


@pytest.mark.parametrize("sql, fmt, message", [
    ("select gen_random_uuid() u", "json", None),  # UnicodeDecodeError in the JSON encoder
    ("select '101'::bit b", "json", None),  # OverflowError in the JSON encoder
    ("", "table", "expected one SELECT"),  # AttributeError
    ("COPY (SELECT 1) TO 'LAKE/bars/x.parquet'", "table", "got COPY"),  # wrote a file into the lake
    ("select 1; select 2", "csv", "got SELECT, SELECT"),
])
def test_lake_query_regressions(world, tmp_path: Path, chaos, sql, fmt, message):
    chaos["inputs_fuzzed"] += 1
    root = tmp_path / "lake"
    shutil.copytree(world.template, root)
    before = tree_digest(root)

    r = invoke("lake", "query", sql.replace("LAKE", str(root)), "--format", fmt, "--lake", str(root))

    if message is None:
        assert r.exit_code == 0 and r.exception is None, r.output
    else:
        assert_user_error(r, message)
    assert tree_digest(root) == before


MAINTENANCE = st.one_of(
    options({"--symbol": st.sampled_from(["FZ", "!!", "", "NOPE"]) | TEXT, "--timeframe": st.sampled_from(["1Day", "1Min", "x"]),
             "--limit": INTS}).map(lambda o: ["lake", "check", *o]),
    st.tuples(st.sampled_from(["FZ", "fz,FZ", "", "!!", "NOPE"]),
              st.sampled_from(["5Min", "5Min,15Min", "7Min", ",", "1Day", "1Min", "", "1Hour,1Hour"]),
              st.sampled_from(["1Min", "1Day", "5Min", "x"])).map(
        lambda t: ["lake", "resample", "--symbols", t[0], "--to", t[1], "--from", t[2]]),
    st.tuples(st.sampled_from(["FZ", "fz", "!!", "", "NOPE"]) | TEXT, st.sampled_from(["1Day", "1Min", "9Day", ""]),
              st.booleans()).map(lambda t: ["lake", "drop", t[0], "--timeframe", t[1], *(["--yes"] if t[2] else [])]),
    st.just(["lake", "info"]),
    st.tuples(st.sampled_from(["FZ", "S1,S2", "", "!!", "a,,b"]), st.sampled_from(["0", "1", "3", "-1", "10001", "x", "1.5"]),
              INTS, st.sampled_from(["1Day", "1Min", "15Min", "1Week", ""]), DATES).map(
        lambda t: ["ingest", "synthetic", "--symbols", t[0], "--days", t[1], "--seed", t[2], "--timeframe", t[3],
                   "--end", t[4]]),
    st.tuples(st.sampled_from(["IBM", "TSLA", "", "ibm,IBM", "!!"]), st.sampled_from(["all", "raw", "split", "x", ""])).map(
        lambda t: ["ingest", "sample", "--symbols", t[0], "--adjustment", t[1]]),
    st.sampled_from(["out/schema.json", "file.txt/x.json", ".", "out"]).map(lambda p: ["params", "schema", "--out", p]),
)


@settings(FUZZ, max_examples=120)
@given(MAINTENANCE)
@example(["ingest", "synthetic", "--symbols", "S1", "--days", "1", "--end", "garbage"])  # DateParseError
@example(["params", "schema", "--out", "."])  # IsADirectoryError
@example(["params", "schema", "--out", "file.txt/x.json"])  # NotADirectoryError
def test_lake_ingest_and_params_arguments(world, chaos, args):
    run_on_fresh_lake(world, args, chaos)


# -- nightly / weekend: -p NAME=VALUE and --config, with only the notebook run stubbed ------------

PARAM_NAMES = mostly(["strategies", "symbols", "lake", "params_dir"], st.sampled_from(
    ["run_dir", "class", "import", "1x", "", "x y", "é", "lake "]) | TEXT)
PARAM_VALUES = mostly(['5', '"x"', '[1,2]', 'lake2', '["sma_cross"]'], st.sampled_from(
    ['null', 'true', '[' * 5000, '{"a":', 'NaN', '\x00', '', '"a\\u0000b"', '{"a": {"b": [1, 2.5e400]}}', '-1e999']) | TEXT)
CONFIGS = (st.sampled_from([None, None, None, "runs_dir = 'r'\n", "[parameters]\nstrategies = ['sma_cross']\n"])
           | st.sampled_from(["folder", "missing.toml", "kernel = 'nope'\n", "notebook = 5\n", "[parameters]\nlake = 5\n",
                              "[parameters]\nclass = 1\n", "timeout_per_cell = -1\n", "bogus = 1\n", "parameters = 3\n",
                              "[parameters]\n'a b' = 1\n", "x = \n", "\x00\x01", "notebook = 'missing.ipynb'\n",
                              "[parameters]\nparams_dir = ['a']\n"])
           | st.binary(max_size=40))


@st.composite
def job_args(draw) -> tuple[list[str], object]:
    args = [draw(st.sampled_from(["nightly", "weekend"]))]
    for _ in range(draw(st.integers(0, 3))):
        args += ["-p", draw(PARAM_NAMES) + draw(mostly(["="], st.sampled_from(["", "=="]))) + draw(PARAM_VALUES)]
    return args, draw(CONFIGS)


@pytest.fixture()
def stub_job(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace the notebook run (a minute) by a recorder of its parameters; the rest of the job runs for real."""
    from tradelab import jobs

    calls: list[dict] = []

    def execute(config, job, run_dir, params, progress_bar):
        calls.append(dict(params))
        return None, None, None  # no error, no failed cell, no traceback

    monkeypatch.setattr(jobs, "_execute", execute)
    return calls


@settings(FUZZ, max_examples=150)
@given(job_args())
@example((["nightly"], "folder"))  # IsADirectoryError
@example((["weekend"], b"\x80\x81"))  # UnicodeDecodeError
@example((["nightly", "-p", "x=" + "[" * 100_000], None))  # RecursionError
@example((["nightly", "-p", "class=1"], None))  # ran the notebook: a SyntaxError in its injected cell
@example((["nightly"], "[parameters]\nclass = 1\n"))  # ran the notebook: a SyntaxError in its injected cell
@example((["nightly", "-p", "lake=5"], None))  # TypeError building the path
@example((["nightly", "-p", "params_dir=[1]"], None))  # TypeError building the path
def test_job_arguments(world, stub_job, chaos, case):
    args, config = case
    chaos["inputs_fuzzed"] += 1
    with tempfile.TemporaryDirectory(dir=world.home) as tmp:
        if config == "folder":
            args = [*args, "--config", tmp]
        elif config is not None:
            path = Path(tmp) / "job.toml"
            if config != "missing.toml":
                path.write_bytes(config if isinstance(config, bytes) else config.encode())
            args = [*args, "--config", str(path)]
        stub_job.clear()

        r = invoke(*args)
        event(f"exit {r.exit_code}")

    assert_ok_or_user_error(r)
    if r.exit_code == 0:
        (given,) = stub_job
        assert Path(given["lake"]).is_absolute() and Path(given["run_dir"]).is_dir()
        assert all(name.isidentifier() and name not in ("class", "import") for name in given)
        if args[0] == "nightly":
            assert Path(given["params_dir"]).is_absolute()
    assert tree_digest(world.home / "params") == world.params


def test_unreachable_scheduler_is_a_user_error(world, tmp_path: Path, chaos):
    import dask

    chaos["inputs_fuzzed"] += 1
    root = tmp_path / "lake"
    shutil.copytree(world.template, root)
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        r = invoke("sweep", "--strategy", "sma_cross", "--symbols", "FZ", "--grid", "fast=5",
                   "--scheduler", "tcp://127.0.0.1:1", "--lake", str(root))

    assert_user_error(r, "Dask: Timed out trying to connect to tcp://127.0.0.1:1")


# -- a few real processes: nothing but one line on stderr -----------------------------------------


def test_real_processes_print_no_traceback(world, tmp_path: Path, chaos):
    root = tmp_path / "lake"
    shutil.copytree(world.template, root)
    before = tree_digest(root)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("Datetime,Open,High,Low,Close,Volume\n2024-03-04T09:30:00-05:00,1,2,0.5,1,10\n"
                     "2024-03-04 09:31:00,1,2,0.5,1,10\n")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    cases = [
        (["ingest", "csv", str(mixed), "--symbol", "FZ", "--timeframe", "1Min", "--tz", "America/New_York"], "timestamps mix"),
        (["params", "validate", str(deep)], "nested too deeply"),
        (["sweep", "--strategy", "sma_cross", "--symbols", "FZ", "--grid", "fast=5", "--time-stop", "inf"], "--time-stop"),
        (["lake", "query", ""], "expected one SELECT"),
        (["nightly", "--config", str(tmp_path)], "Is a directory"),
    ]
    env = {**os.environ, "TRADELAB_LAKE": str(root)}
    procs = [(subprocess.Popen([sys.executable, "-m", "tradelab", *args], cwd=world.home, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE), message) for args, message in cases]
    for proc, message in procs:
        stdout, stderr = proc.communicate(timeout=120)
        chaos["inputs_fuzzed"] += 1
        assert proc.returncode == 2, (proc.args, stderr)
        assert "Traceback" not in stderr and stderr.startswith("error: ") and message in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1, stderr
    assert tree_digest(root) == before
