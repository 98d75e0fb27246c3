"""The halt button in headless Chromium, on the live page of a real `tradelab live` process trading the
simulator through alpaca-py: without the token nothing is sent, a wrong token is refused (no HALT, no
decision line), the right one halts: the runner flattens the simulator account with its own order and
stops, and the decision log says the page asked (its address and user agent), never the token."""

from __future__ import annotations

import json
import secrets

from dashboard import DashboardConfig
from live_bridge.runner_halts import read_halt
from tests.dashboard.test_control_api import served
from tests.live_bridge.test_daemon import world  # noqa: F401 - fixture
from tests.live_bridge.test_daemon_halt import flatten_intents, with_a_position
from tests.soak.kit import hermetic_env

TOKEN = "btn-" + secrets.token_hex(12)
RESULT = "document.getElementById('control-result').textContent"


def type_token(page, token: str) -> None:
    page.evaluate(f"document.getElementById('control-token').value = {json.dumps(token)}")


def test_the_halt_button_flattens_the_simulator_account(world, browser):
    work, frames = world
    key, secret = "btn-" + secrets.token_hex(4), secrets.token_hex(16)
    served_sim, clock, sim_broker, live, qty = with_a_position(work, frames, key, secret, hermetic_env(key, secret))
    cfg = DashboardConfig(state_dir=live.state, params_dir=work / "params", lake=work / "lake", token=TOKEN)
    try:
        with served_sim, served(cfg) as url, browser.open(url + "/") as page:
            assert page.errors == []
            page.evaluate("window.confirm = () => true")  # the button asks first
            page.click("#btn-halt")
            assert page.wait(RESULT, what="the answer") == "type the control token first"
            type_token(page, "wrong-" + TOKEN)
            page.click("#btn-halt")
            assert page.wait(RESULT + ".startsWith('refused')", what="the refusal")
            assert page.evaluate(RESULT) == "refused: wrong control token"
            assert read_halt(live.state) is None and '"event": "control"' not in \
                (live.state / "decisions.jsonl").read_text()

            type_token(page, TOKEN)
            page.click("#btn-halt")
            page.wait(RESULT + ".startsWith('halt: halted')", timeout=40, what="the halt to be done")
            errors = page.errors
            html = page.evaluate("document.documentElement.outerHTML")
            assert live.proc.wait(30) == 0
            [intent] = flatten_intents(live.state)
            assert (intent.strategy, intent.symbol, intent.side, intent.qty) == ("sma_cross", "AAPL", "sell", qty)
            clock.step()  # the flatten order fills at the next open
            assert sim_broker.positions_json() == [] and sim_broker.list_orders() == []
    finally:
        if live.proc.poll() is None:
            live.proc.kill()
        live.log.close()
    assert all("status of 403" in e for e in errors) and len(errors) <= 1, errors  # the wrong token's answer
    halt = read_halt(live.state)
    assert halt.done and halt.by == "runner" and halt.body["requested_by"].startswith("tradelab dashboard API (dashboard")
    [line] = [json.loads(x) for x in (live.state / "decisions.jsonl").read_text().splitlines()
              if '"event": "control"' in x]
    assert (line["action"], line["outcome"], line["who"]["kind"]) == ("halt", "accepted", "browser")
    assert "HeadlessChrome" in line["who"]["agent"] and line["who"]["client"] == "127.0.0.1"
    assert TOKEN not in html and TOKEN not in (live.state / "decisions.jsonl").read_text()
