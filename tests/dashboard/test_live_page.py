"""The live page in headless Chromium, served over a real replay's runner folder: it renders without a
console error, shows the state store's positions, stops, targets and open orders, and shows a broker
message, an alert or a HALT's author as text (nothing in them runs)."""

from __future__ import annotations

import json
import sqlite3
import urllib.request

from live_bridge.runner_halts import write_halt

XSS = '<img src=x onerror="window.__pwned=1">'
SCRIPT = "<script>window.__pwned=2</script>"
ROWS = """[...document.querySelectorAll('#%s tbody tr')].map(tr =>
  Object.fromEntries([...tr.querySelectorAll('td')].map(td => [td.dataset.col, td.textContent])))"""


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def test_the_live_page_shows_the_stores_values_without_a_console_error(replay_world, serve_dashboard, browser):
    db = sqlite3.connect(replay_world.state_dir / "state.db")
    held = db.execute("SELECT strategy, symbol, qty, avg_price FROM positions WHERE qty != 0").fetchall()
    orders = db.execute("SELECT client_order_id, type, stop_price, limit_price FROM orders WHERE status NOT IN "
                        "('filled', 'canceled', 'expired', 'rejected', 'replaced')").fetchall()

    with serve_dashboard(replay_world.config()) as url, browser.open(url + "/") as page:
        page.wait("!!document.querySelector('#equity .main-svg')", what="the equity plot")
        page.wait("document.getElementById('stream-state').textContent === 'live'", what="the event stream")
        positions, shown_orders = page.evaluate(ROWS % "positions"), page.evaluate(ROWS % "orders")
        title, errors = page.evaluate("document.title"), page.errors

    assert errors == []
    assert title == "Live · tradelab"
    assert [(r["strategy"], r["symbol"], _num(r["qty"]), round(_num(r["avg_price"]), 2)) for r in positions] == \
        [(s, y, q, round(p, 2)) for s, y, q, p in held]
    stop = next(o[2] for o in orders if o[1] == "stop")
    target = next(o[3] for o in orders if o[1] == "limit")
    assert (_num(positions[0]["stop"]), _num(positions[0]["target"])) == (stop, target)
    assert sorted(r["client_order_id"] for r in shown_orders) == sorted(o[0] for o in orders)


def test_messages_alerts_and_halts_are_shown_as_text_never_run(copy_world, serve_dashboard, browser):
    log = copy_world.state_dir / "decisions.jsonl"
    with open(log, "a") as f:
        f.write(json.dumps({"event": "order_rejected", "symbol": "MSFT", "message": f"broker said {XSS}"}) + "\n")
        f.write(json.dumps({"event": "decision", "strategy": "sma_cross", "symbol": "MSFT", "reason": SCRIPT,
                            "bar_time": "2012-11-09T05:00:00+00:00", "regime_next": "all",
                            "actions": [{"allowed": False, "rule": "max_position", "risk": XSS}]}) + "\n")
    write_halt(copy_world.state_dir, {"halted_at": "2012-11-09T15:00:00+00:00", "by": XSS, "flatten": "pending"})

    with serve_dashboard(copy_world.config()) as url, browser.open(url + "/") as page:
        raw = urllib.request.urlopen(url + "/", timeout=10).read().decode()
        alerts = page.wait(ROWS % "alerts" + ".filter(r => r.text && r.text.includes('broker said'))", what="the alert")
        decision = page.evaluate(ROWS % "decisions")[0]
        halt = page.evaluate("document.getElementById('halt-file').textContent")
        pwned = page.evaluate("window.__pwned === undefined ? null : window.__pwned")
        images = page.evaluate("document.querySelectorAll('img').length + [...document.scripts].filter(s => "
                               "s.id !== 'snapshot' && s.textContent.includes('__pwned')).length")
        errors = page.errors

    assert XSS not in raw and SCRIPT not in raw  # in the page source only as escaped JSON data
    assert alerts[0]["text"] == f"broker said {XSS}"
    assert decision["text"] == SCRIPT and decision["detail"] == f"refused by rule max_position: {XSS}"
    assert XSS in halt
    assert pwned is None and images == 0
    assert errors == []
