"""The live page's readers against a real replay's runner folder: the values are the store's, a reader
never blocks the runner (writing or holding a transaction), the log is read from its end, and one
bad file blanks its own section only."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import date

from dashboard.live_data import open_store, read_store, snapshot, tail_jsonl
from live_bridge.state import StateStore


def test_the_snapshot_shows_the_stores_positions_orders_and_pnl(replay_world):
    snap = snapshot(replay_world.config())

    db = sqlite3.connect(replay_world.state_dir / "state.db")
    held = db.execute("SELECT strategy, symbol, qty, avg_price FROM positions WHERE qty != 0").fetchall()
    open_ = db.execute("SELECT client_order_id, type, stop_price, limit_price FROM orders WHERE status NOT IN "
                       "('filled', 'canceled', 'expired', 'rejected', 'replaced') ORDER BY client_order_id").fetchall()
    realized = db.execute("SELECT SUM(realized) FROM positions").fetchone()[0]
    assert held and open_, "the replay must end holding a position under open orders"
    assert [(p["strategy"], p["symbol"], p["qty"], p["avg_price"]) for p in snap["positions"]] == held
    assert sorted((o["client_order_id"], o["type"], o["stop_price"], o["limit_price"]) for o in snap["orders"]) == open_
    [pos] = snap["positions"]
    stop = next(o for o in open_ if o[1] == "stop")[2]
    target = next(o for o in open_ if o[1] == "limit")[3]
    assert (pos["stop"], pos["target"], pos["from"]) == (stop, target, "broker order")
    assert all(o["strategy"] == "sma_cross" for o in snap["orders"]), "an OCO leg belongs to its parent's strategy"
    assert abs(snap["pnl"]["all_time_realized"] - realized) < 1e-9
    assert snap["equity"]["realized"][-1] == snap["pnl"]["all_time_realized"]
    assert snap["pnl"]["day"] == "2012-11-08" and snap["last_bar"]["from"] == "decision log"
    assert {r["who"] for r in snap["regimes"]} == {"sma_cross AAPL", "sma_cross MSFT"}
    assert [(e["symbol"], e["gate"]) for e in snap["entries"]["rows"]] == [("AAPL", "passed"), ("MSFT", "passed")]
    assert snap["broker"]["state"] == "unknown" and snap["errors"] == []
    assert snap["decisions"][0]["event"] == "decision" and len(snap["decisions"]) == 60


def test_a_reader_never_blocks_the_writer_nor_waits_for_it(copy_world):
    path = copy_world.state_dir / "state.db"
    with StateStore(path) as store:  # the runner: the one writer, WAL
        # the writer mid-transaction: the reader sees the last commit at once
        store._db.execute("BEGIN IMMEDIATE")
        store._db.execute("INSERT INTO halts VALUES ('2012-11-09', 'uncommitted', 'x', '2012-11-09T15:00:00+00:00')")
        t = time.monotonic()
        seen = read_store(path)
        assert time.monotonic() - t < 0.5
        assert "uncommitted" not in {h["scope"] for h in seen["halts"]}
        store._db.execute("ROLLBACK")

        # a reader holding a read transaction open: the writer commits without waiting
        reader = open_store(path)
        reader.execute("BEGIN")
        before = reader.execute("SELECT COUNT(*) FROM halts").fetchone()[0]
        done = threading.Event()

        def write():
            store.record_halt(date(2012, 11, 9), "*", "day loss")
            done.set()

        t = time.monotonic()
        threading.Thread(target=write).start()
        assert done.wait(2.0), "the writer waited for a reader"
        assert time.monotonic() - t < 1.0
        assert reader.execute("SELECT COUNT(*) FROM halts").fetchone()[0] == before  # its snapshot holds
        reader.execute("ROLLBACK")
        reader.close()
        assert [h["scope"] for h in read_store(path)["halts"]] == ["*"]
        try:
            open_store(path).execute("DELETE FROM halts")
            raise AssertionError("the reader wrote")
        except sqlite3.OperationalError as exc:
            assert "readonly" in str(exc) or "read-only" in str(exc)


def test_the_log_tail_is_read_from_the_end_and_skips_torn_lines(tmp_path):
    log = tmp_path / "decisions.jsonl"
    lines = [json.dumps({"event": "decision", "n": i, "pad": "x" * 100}) for i in range(5000)]
    log.write_text("\n".join(lines) + "\n" + '{"event": "decision", "n": 50')  # the writer mid-append

    tail = tail_jsonl(log, 10, size=4096)

    assert [x["n"] for x in tail] == list(range(4990, 5000))
    assert len(tail_jsonl(log, 0, size=4096)) < 40  # only the window was read
    log.write_text('{"event": "a"}\nnot json\n[1, 2]\n{"event": "b"}\n')
    assert [x["event"] for x in tail_jsonl(log)] == ["a", "b"]


def test_a_damaged_store_blanks_its_own_section_with_one_line(copy_world):
    (copy_world.state_dir / "state.db").write_bytes(b"this is not a database" * 100)
    for extra in ("state.db-wal", "state.db-shm"):
        (copy_world.state_dir / extra).unlink(missing_ok=True)

    snap = snapshot(copy_world.config())

    assert len(snap["errors"]) == 1 and snap["errors"][0].startswith("state store: DatabaseError")
    assert snap["positions"] == [] and snap["orders"] == []
    assert snap["decisions"] and snap["entries"]["rows"], "the other sections still read"
