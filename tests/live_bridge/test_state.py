"""The state store: fills counted once, positions from fills, restarts, and kill -9 at any moment."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from live_bridge.ids import client_order_id
from live_bridge.ports import Fill, OrderAck, OrderIntent
from live_bridge.risk import ACCOUNT
from live_bridge.state import EXTERNAL, SCHEMA_VERSION, StateError, StateStore, apply_fill

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)
DAY = date(2024, 1, 2)


def cid(strategy="smacross", symbol="AAPL", minute=0, kind="entry"):
    return client_order_id(strategy, symbol, T0 + timedelta(minutes=minute), kind)


def intent(c, side="buy", qty=10.0, strategy="smacross", symbol="AAPL"):
    return OrderIntent(c, symbol, side, qty, strategy=strategy, reason="test")


def ack(c, status="new", filled=0.0, avg=None, side="buy", qty=10.0, symbol="AAPL"):
    return OrderAck(f"id-{c}", c, symbol, side, qty, filled, avg, status, "market", None, None, T0)


def fill(c, eid, qty, price, side="buy", symbol="AAPL", at=T0):
    return Fill(eid, f"id-{c}", c, symbol, side, qty, price, at)


@pytest.fixture
def store(tmp_path):
    with StateStore(tmp_path / "state.db") as s:
        yield s


def test_a_duplicated_trade_update_is_counted_once(store):
    c = cid()
    store.record_intent(intent(c))

    assert store.record_fill(fill(c, "exec-1", 4, 100.0)) is True
    assert store.record_fill(fill(c, "exec-1", 4, 100.0)) is False

    assert store.position("smacross", "AAPL").qty == 4
    assert store.filled_qty(c) == 4
    assert store.integrity_check().ok


def test_partial_fills_are_summed_at_average_cost(store):
    c = cid()
    store.record_intent(intent(c))

    for eid, qty, price in (("e1", 3, 100.0), ("e2", 5, 101.0), ("e3", 2, 102.0)):
        store.record_fill(fill(c, eid, qty, price))

    p = store.position("smacross", "AAPL")
    assert p.qty == 10 and p.avg_price == pytest.approx((300 + 505 + 204) / 10)
    assert store.filled_qty(c) == 10 and store.net_positions() == {"AAPL": 10}


def test_realized_pnl_per_strategy_and_day(store):
    buy, sell = cid(minute=0), cid(minute=1, kind="exit")
    store.record_fill(fill(buy, "e1", 10, 100.0))
    store.record_fill(fill(sell, "e2", 4, 105.0, "sell"))
    store.record_fill(fill(sell, "e3", 10, 110.0, "sell", at=T0 + timedelta(days=1)))  # flips short

    p = store.position("smacross", "AAPL")
    assert (p.qty, p.avg_price, p.realized_pnl) == (-4, 110.0, 20.0 + 60.0)
    assert store.daily_pnl(DAY) == {"smacross": 20.0}
    assert store.daily_pnl(DAY + timedelta(days=1)) == {"smacross": 60.0}
    assert store.integrity_check().ok


def test_apply_fill_kernel():
    assert apply_fill(0, 0, "sell", 5, 50.0) == (-5, 50.0, 0.0)
    assert apply_fill(-5, 50.0, "buy", 5, 45.0) == (0.0, 0.0, 25.0)
    assert apply_fill(10, 100.0, "sell", 4, 90.0) == (6, 100.0, -40.0)


def test_fills_are_attributed_to_the_intent_then_the_id_then_external(store):
    recorded, unrecorded = cid("pairs", minute=0), cid("sma_convergence", minute=1)
    store.record_intent(intent(recorded, strategy="pairs"))
    store.record_intent(intent(cid("sma_convergence", minute=9), strategy="sma_convergence"))

    store.record_fill(fill(recorded, "e1", 1, 100.0))
    store.record_fill(fill(unrecorded, "e2", 2, 100.0))  # truncated name, resolved from known intents
    store.record_fill(fill("3f1c-manual", "e3", 3, 100.0))
    store.record_fill(fill("3f1c-manual", "e4", 4, 100.0), strategy="rotation")

    assert {k[0]: p.qty for k, p in store.positions().items()} == {
        "pairs": 1, "sma_convergence": 2, EXTERNAL: 3, "rotation": 4}


def test_order_status_is_sticky_once_terminal_and_never_unfills(store):
    c = cid()
    store.record_order(ack(c))
    store.record_order(ack(c, "partially_filled", 4, 100.0))

    assert store.record_order(ack(c, "new")) is False  # a stale poll answer
    store.record_order(ack(c, "filled", 10, 100.5))
    store.record_order(ack(c, "partially_filled", 4, 100.0))

    o = store.order(c)
    assert (o.status, o.filled_qty, o.filled_avg_price) == ("filled", 10, 100.5)
    assert store.order("nope") is None


def test_open_intents_are_those_without_a_terminal_order(store):
    done, working, unsent = cid(minute=0), cid(minute=1), cid(minute=2)
    for c in (done, working, unsent):
        store.record_intent(intent(c))
    store.record_order(ack(done, "filled", 10, 100.0))
    store.record_order(ack(working, "partially_filled", 3, 100.0))

    assert [i.client_order_id for i in store.open_intents()] == [working, unsent]


def test_recording_a_different_intent_under_the_same_id_is_an_error(store):
    c = cid()
    assert store.record_intent(intent(c)) is True
    assert store.record_intent(intent(c)) is False

    with pytest.raises(StateError, match=c):
        store.record_intent(intent(c, qty=11))


def test_one_writer_at_a_time(tmp_path):
    with StateStore(tmp_path / "s.db"):
        with pytest.raises(StateError, match="another writer"):
            StateStore(tmp_path / "s.db")
    StateStore(tmp_path / "s.db").close()  # the lock went with the first store


def test_wal_mode_and_schema_version(tmp_path):
    StateStore(tmp_path / "s.db").close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()

    with pytest.raises(StateError, match="schema version 99"):
        StateStore(tmp_path / "s.db")


def test_a_version_1_store_is_migrated_in_place_and_keeps_its_intents(tmp_path):
    # the version-1 schema as it shipped (no take_profit column, no legs table), with one stored intent
    db = sqlite3.connect(tmp_path / "s.db")
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE intents (
            client_order_id TEXT PRIMARY KEY, symbol TEXT NOT NULL, side TEXT NOT NULL, qty REAL NOT NULL,
            type TEXT NOT NULL, limit_price REAL, stop_price REAL, time_in_force TEXT NOT NULL,
            strategy TEXT NOT NULL, reason TEXT NOT NULL, decision_ref TEXT, created_at TEXT NOT NULL);
        INSERT INTO intents VALUES ('old-1', 'AAPL', 'sell', 10, 'stop', NULL, 95.0, 'gtc', 'sma_cross',
                                    'protective stop', NULL, '2024-01-02T14:31:00+00:00');
    """)
    db.close()
    with StateStore(tmp_path / "s.db") as s:
        assert s.intent("old-1")[0] == OrderIntent("old-1", "AAPL", "sell", 10, type="stop", stop_price=95.0,
                                                   time_in_force="gtc", strategy="sma_cross", reason="protective stop")
        oco = OrderIntent("new-1", "AAPL", "sell", 10, type="stop", stop_price=95.0, time_in_force="gtc",
                          strategy="sma_cross", take_profit=110.0)
        assert s.record_intent(oco) and s.intent("new-1")[0] == oco
        assert s.leg_parents() == {}
    assert sqlite3.connect(tmp_path / "s.db").execute(
        "SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


def test_a_reader_sees_the_writers_commits_beside_it_and_writes_nothing(tmp_path):
    path, c = tmp_path / "s.db", cid()
    with StateStore(path) as writer:
        writer.record_intent(intent(c))
        writer.record_fill(fill(c, "e1", 4, 100.0))
        writer.record_halt(DAY, ACCOUNT, "day loss", at=T0)
        with StateStore(path, read_only=True) as reader:  # no lock taken: the writer holds it
            assert reader.position("smacross", "AAPL").qty == 4
            writer.record_fill(fill(c, "e2", 6, 101.0))  # committed after the reader opened
            assert reader.position("smacross", "AAPL").qty == 10 and reader.fill_count() == 2
            halts = [(h.day, h.scope, h.reason, h.at) for h in reader.recent_halts(5)]
            assert halts == [(DAY, ACCOUNT, "day loss", T0)]
            assert reader.peak_equity() == 0.0 and reader.integrity_check().ok
            with pytest.raises(StateError, match="read-only"):
                reader.record_fill(fill(c, "e3", 1, 102.0))
            with pytest.raises(StateError, match="read-only"):
                reader.peak_equity(1e6)
        assert writer.fill_count() == 2 and writer.peak_equity() == 0.0


def test_a_reader_creates_and_migrates_nothing(tmp_path):
    with pytest.raises(sqlite3.OperationalError):
        StateStore(tmp_path / "none.db", read_only=True)
    assert list(tmp_path.iterdir()) == []  # no database, no lock file

    (tmp_path / "empty.db").touch()  # created by a writer killed before its first transaction
    with StateStore(tmp_path / "empty.db", read_only=True) as s:
        assert s.positions() == {} and s.recent_halts(5) == [] and s.fill_count() == 0
    assert (tmp_path / "empty.db").read_bytes() == b""

    db = sqlite3.connect(tmp_path / "v1.db")  # an older file is read as it is, never migrated
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('schema_version', '1');"
                     "CREATE TABLE positions (strategy TEXT, symbol TEXT, qty REAL, avg_price REAL, realized REAL);"
                     "INSERT INTO positions VALUES ('smacross', 'AAPL', 3, 100, 0);")
    db.close()
    with StateStore(tmp_path / "v1.db", read_only=True) as s:
        assert s.net_positions() == {"AAPL": 3}
    assert sqlite3.connect(tmp_path / "v1.db").execute("SELECT value FROM meta").fetchone() == ("1",)

    db = sqlite3.connect(tmp_path / "v9.db")  # a newer one is refused
    db.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                     "INSERT INTO meta VALUES ('schema_version', '9');")
    db.close()
    with pytest.raises(StateError, match="schema version 9"):
        StateStore(tmp_path / "v9.db", read_only=True)
    assert not any(p.name.endswith(".lock") for p in tmp_path.iterdir())


def test_a_damaged_file_raises_a_database_error_for_a_reader_and_stays_as_it_was(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"not a database at all " * 200)
    before = path.read_bytes()

    with pytest.raises(sqlite3.DatabaseError):
        StateStore(path, read_only=True)

    assert path.read_bytes() == before


def test_integrity_check_finds_tampering_and_overfills(tmp_path):
    c = cid()
    with StateStore(tmp_path / "s.db") as s:
        s.record_order(ack(c, qty=5))
        s.record_fill(fill(c, "e1", 4, 100.0))
        s.record_fill(fill(c, "e2", 4, 100.0))  # the broker says so: kept, and flagged
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("UPDATE positions SET qty = 7")
    db.commit()
    db.close()

    with StateStore(tmp_path / "s.db") as s:
        report = s.integrity_check()

    assert not report.ok
    assert any("fills sum 8 > qty 5" in p for p in report.problems)
    assert any(p.startswith("position ('smacross', 'AAPL'): stored (7.0") for p in report.problems)


def test_halts_and_peak_equity_survive_a_restart(tmp_path):
    with StateStore(tmp_path / "s.db") as s:
        assert s.record_halt(DAY, ACCOUNT, "day loss 2.1%") is True
        assert s.record_halt(DAY, ACCOUNT, "again") is False
        s.record_halt(DAY, "pairs", "lost 1%")
        s.peak_equity(105_000.0)
        s.peak_equity(101_000.0)

    with StateStore(tmp_path / "s.db") as s:
        assert s.halts(DAY) == {ACCOUNT: "day loss 2.1%", "pairs": "lost 1%"}
        assert s.halts(DAY + timedelta(days=1)) == {}
        assert s.peak_equity() == 105_000.0


def test_naive_timestamps_are_refused(store):
    with pytest.raises(ValueError, match="naive"):
        store.record_fill(fill(cid(), "e1", 1, 100.0, at=datetime(2024, 1, 2, 15, 30)))


# --- crashes ------------------------------------------------------------------------------------

WRITER = """
import random, sys
from datetime import UTC, datetime, timedelta
from live_bridge.ids import client_order_id
from live_bridge.ports import Fill, OrderAck, OrderIntent
from live_bridge.state import StateStore

path, run = sys.argv[1], int(sys.argv[2])
rng, t0 = random.Random(run), datetime(2024, 1, 2, 15, 0, tzinfo=UTC)
store = StateStore(path)
print("ready", flush=True)
for i in range(10**9):
    strategy, symbol = rng.choice(["alpha", "beta"]), rng.choice(["AAPL", "MSFT"])
    side = rng.choice(["buy", "sell"])
    qty = rng.randint(1, 20)
    cid = client_order_id(strategy, symbol, t0 + timedelta(minutes=i), "entry", run)
    store.record_intent(OrderIntent(cid, symbol, side, qty, strategy=strategy))
    ack = lambda status, filled: OrderAck("o" + cid, cid, symbol, side, qty, filled, 100.0, status, "market",
                                          None, None, t0)
    store.record_order(ack("new", 0))
    filled = 0
    while filled < qty:
        part = min(qty - filled, rng.randint(1, 8))
        f = Fill(f"{cid}-{filled}", "o" + cid, cid, symbol, side, part, 100 + rng.random(), t0)
        store.record_fill(f)
        store.record_fill(f)  # a repeated trade update
        filled += part
        store.record_order(ack("filled" if filled == qty else "partially_filled", filled))
    if i == 0:
        print("wrote", flush=True)
"""


def spawn_writer(path: Path, run: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(run)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def count(path: Path, table: str) -> int:
    with StateStore(path) as s:
        return s._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_kill_9_at_random_moments_leaves_a_consistent_store(tmp_path):
    path, rng, grew = tmp_path / "state.db", random.Random(7), 0
    for run in range(12):
        before = count(path, "fills") if path.exists() else 0
        proc = spawn_writer(path, run)
        if run % 4:  # most kills land mid-write; every fourth may land while opening the store
            assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL, proc.stderr.read()

        with StateStore(path) as s:
            report = s.integrity_check()
            fills = s._db.execute("SELECT COUNT(*) FROM fills").fetchone()[0]
        assert report.ok, report.problems
        grew += fills > before

    assert grew >= 6  # the kills really did interrupt a writer at work


def test_a_restart_finds_the_intents_to_look_up(tmp_path):
    code = """
import sys, time
from datetime import UTC, datetime
from live_bridge.ports import OrderAck, OrderIntent
from live_bridge.state import StateStore
s = StateStore(sys.argv[1])
t = datetime(2024, 1, 2, 15, 30, tzinfo=UTC)
for c in ("a", "b", "c"):
    s.record_intent(OrderIntent(c, "AAPL", "buy", 1, strategy="x"))
s.record_order(OrderAck("1", "a", "AAPL", "buy", 1, 1, 100.0, "filled", "market", None, None, t))
s.record_order(OrderAck("2", "b", "AAPL", "buy", 1, 0, None, "accepted", "market", None, None, t))
print("sent", flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s.db")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "sent\n"
    os.kill(proc.pid, signal.SIGKILL)  # the crash: no close, no checkpoint
    proc.wait(10)

    with StateStore(tmp_path / "s.db") as s:
        assert [i.client_order_id for i in s.open_intents()] == ["b", "c"]
        assert s.integrity_check().ok


def test_a_take_profit_rides_only_on_a_protective_stop_and_on_the_far_side_of_it():
    ok = OrderIntent("c", "AAPL", "sell", 10, type="stop", stop_price=95.0, take_profit=110.0)
    assert ok.take_profit == 110.0
    with pytest.raises(ValueError, match="above it for a sell"):
        OrderIntent("c", "AAPL", "sell", 10, type="stop", stop_price=95.0, take_profit=90.0)
    with pytest.raises(ValueError, match="below it for a buy"):
        OrderIntent("c", "AAPL", "buy", 10, type="stop", stop_price=105.0, take_profit=106.0)
    with pytest.raises(ValueError, match="not a market"):
        OrderIntent("c", "AAPL", "sell", 10, take_profit=110.0)
    with pytest.raises(ValueError, match="must be positive"):
        OrderIntent("c", "AAPL", "sell", 10, type="stop", stop_price=95.0, take_profit=-1.0)
