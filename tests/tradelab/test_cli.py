"""The CLI as a user runs it: a real process, real lake, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.kit import tree_digest


def run(*args: str, lake: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    if lake is not None:
        e["TRADELAB_LAKE"] = str(lake)
    return subprocess.run([sys.executable, "-m", "tradelab", *args], capture_output=True, text=True, env=e, timeout=120)


@pytest.fixture(scope="module")
def cli_lake(tmp_path_factory) -> Path:
    lake = tmp_path_factory.mktemp("cli") / "lake"
    r = run("ingest", "sample", lake=lake)
    assert r.returncode == 0, r.stderr
    return lake


def test_query_lists_sample_symbols_with_real_counts(cli_lake: Path):
    r = run("lake", "query", "select symbol, count(*) as n from bars where timeframe='1Day' group by symbol order by symbol",
            "--format", "csv", lake=cli_lake)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["symbol,n", "AAPL,3270", "FB,196", "GOOG,2148", "IBM,3270", "MSFT,3270"]


def test_lake_option_beats_default_and_json_format(cli_lake: Path, tmp_path: Path):
    r = subprocess.run([sys.executable, "-m", "tradelab", "lake", "query", "select count(*) as n from bars",
                        "--format", "json", "--lake", str(cli_lake)], capture_output=True, text=True, cwd=tmp_path)
    assert json.loads(r.stdout) == [{"n": 12154}]


def test_info_shows_ranges_and_sources(cli_lake: Path):
    r = run("lake", "info", lake=cli_lake)
    assert r.returncode == 0 and "bokeh_sampledata" in r.stdout and "2000-03-01" in r.stdout


def test_second_ingest_changes_nothing(cli_lake: Path):
    before = tree_digest(cli_lake)
    r = run("ingest", "sample", lake=cli_lake)
    assert r.returncode == 0 and "0 written" in r.stdout
    assert tree_digest(cli_lake) == before


def test_bad_csv_refused_with_row_and_reason(tmp_path: Path):
    lake = tmp_path / "lake"
    csv = tmp_path / "x.csv"
    csv.write_text("Date,Open,High,Low,Close,Volume\n2024-03-04,10,11,9,10.5,100\n2024-03-05,10,11,9,12,100\n")
    r = run("ingest", "csv", str(csv), "--symbol", "XYZ", "--timeframe", "1Day", lake=lake)
    assert r.returncode == 2
    assert "row 2: close outside [low, high]" in r.stderr and "Traceback" not in r.stderr
    assert not (lake / "bars").exists()
    r = run("ingest", "csv", str(csv), "--symbol", "XYZ", "--timeframe", "1Day", "--quarantine", lake=lake)
    assert r.returncode == 0, r.stderr
    q = run("lake", "query", "select row, reason from quarantine", "--format", "csv", lake=lake)
    assert q.stdout.splitlines()[1] == '2,"close outside [low, high]"'


@pytest.mark.parametrize("args, message", [
    (("lake", "query", "select nope from bars"), "query failed"),
    (("ingest", "csv", "missing.csv", "--symbol", "X", "--timeframe", "1Day"), "no such file"),
    (("ingest", "csv", "missing.csv", "--symbol", "X", "--timeframe", "2Day"), "unknown timeframe"),
    (("ingest", "sample", "--symbols", "TSLA"), "not in the sample data"),
    (("lake", "drop", "AAPL", "--timeframe", "1Day"), "--yes"),
])
def test_user_mistakes_are_one_line(tmp_path: Path, args, message):
    r = run(*args, lake=tmp_path / "lake")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_alpaca_without_keys_is_clear(tmp_path: Path):
    env = {k: "" for k in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")}
    r = subprocess.run([sys.executable, "-m", "tradelab", "ingest", "alpaca", "--symbols", "AAPL", "--timeframe", "1Day",
                        "--start", "2024-01-02", "--end", "2024-01-05", "--lake", str(tmp_path / "l")],
                       capture_output=True, text=True, env={**os.environ, **env}, cwd=tmp_path)
    assert r.returncode == 2 and "APCA_API_KEY_ID" in r.stderr


def test_ingest_alpaca_cli_against_the_simulator(tmp_path: Path):
    """The whole user path: keys and URL from the environment, the real alpaca-py client, the lake."""
    from simulator import market_data_app, serve
    from tests.data_lake.test_alpaca_ingest import alpaca_minutes

    key, secret = "PKFAKEKEYID0000001", "fake-secret-never-printed-42"
    frames = {(s, "1Min"): alpaca_minutes("2024-03-04", "2024-03-06", seed=i) for i, s in enumerate(("AAA", "BBB"))}
    with serve(market_data_app(frames, api_key=key, secret_key=secret, max_page_size=500)) as sim:
        env = {"APCA_API_KEY_ID": key, "APCA_API_SECRET_KEY": secret, "TRADELAB_ALPACA_DATA_URL": sim.url}
        args = ("ingest", "alpaca", "--symbols", "AAA,BBB", "--timeframe", "1Min", "--start", "2024-03-04",
                "--end", "2024-03-06")
        r = run(*args, lake=tmp_path / "lake", env=env)
        n_requests = len(sim.state.requests.all("/v2/stocks/bars"))
        again = run(*args, lake=tmp_path / "lake", env=env)
        assert len(sim.state.requests.all("/v2/stocks/bars")) == n_requests  # incremental: nothing missing
    assert r.returncode == 0, r.stderr
    q = run("lake", "query", "select symbol, count(*) n, min(feed) f from bars group by 1 order by 1", "--format", "csv",
            lake=tmp_path / "lake")
    assert q.stdout.splitlines() == ["symbol,n,f", "AAA,1170,iex", "BBB,1170,iex"]
    assert again.returncode == 0 and n_requests > 2
    for out in (r.stdout + r.stderr, again.stdout + again.stderr):
        assert key not in out and secret not in out


def test_synthetic_resample_check_round_trip(tmp_path: Path):
    lake = tmp_path / "lake"
    r = run("ingest", "synthetic", "--symbols", "SYNA,SYNB", "--days", "3", "--seed", "5", "--end", "2024-11-29", lake=lake)
    assert r.returncode == 0, r.stderr
    assert run("lake", "resample", "--symbols", "SYNA", "--to", "1Hour,1Day", lake=lake).returncode == 0
    q = run("lake", "query", "select symbol, timeframe, count(*) n, min(feed) f from bars group by all order by all",
            "--format", "csv", lake=lake)
    # 2024-11-26, -27 (390 min) and the -29 half day (210 min); 1Hour: 7 + 7 + 4
    assert q.stdout.splitlines() == ["symbol,timeframe,n,f", "SYNA,1Day,3,synthetic", "SYNA,1Hour,18,synthetic",
                                     "SYNA,1Min,990,synthetic", "SYNB,1Min,990,synthetic"]
    c = run("lake", "check", lake=lake)
    assert c.returncode == 0 and "no gaps" in c.stdout
    again = run("ingest", "synthetic", "--symbols", "SYNA,SYNB", "--days", "3", "--seed", "5", "--end", "2024-11-29", lake=lake)
    assert "0 written" in again.stdout  # same seed, same bars: nothing changes


def test_lake_query_reads_the_lake_and_nothing_else(cli_lake: Path, tmp_path: Path):
    secret = tmp_path / "secret.csv"
    secret.write_text("a,b\n1,2\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home)}  # DuckDB would put auto-installed extensions under ~/.duckdb
    for sql in (f"select * from read_csv('{secret}')", "select * from read_csv('/etc/passwd')",
                "select * from read_parquet('https://example.com/x.parquet')", "select * from glob('/etc/*')",
                f"select * from read_csv('{cli_lake}/../secret.csv')"):
        r = run("lake", "query", sql, lake=cli_lake, env=env)
        assert r.returncode == 2 and "disabled by configuration" in r.stderr, (sql, r.stderr)
    r = run("lake", "query", "set enable_external_access = true", lake=cli_lake, env=env)
    assert r.returncode == 2
    assert not (home / ".duckdb").exists()
    ok = run("lake", "query", "select count(*) as n from bars", lake=cli_lake, env=env)
    assert ok.returncode == 0 and ok.stdout.strip()
