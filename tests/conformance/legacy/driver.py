"""The legacy official Python SDK (alpaca-trade-api 3.x) pointed at the tradelab simulator.

Runs in its own virtualenv (its pins clash with ours), never imports tradelab. A JSON-lines RPC:
each stdin line is {"id", "op", "args"}; each answer, on stdout, is {"id", "ok": result} or
{"id", "error": {name, status, code, message}}. Results are what the SDK parsed, in the same
neutral shape the JS driver gives (tests/conformance/test_official_clients.py asserts on both).
The simulator is found through SIM_URL, SIM_KEY and SIM_SECRET.
"""

from __future__ import annotations

import json
import os
import sys
import threading

import pandas as pd
from alpaca_trade_api.common import URL
from alpaca_trade_api.rest import REST, APIError, TimeFrame
from alpaca_trade_api.stream import Stream

SIM_URL, KEY, SECRET = os.environ["SIM_URL"], os.environ["SIM_KEY"], os.environ["SIM_SECRET"]
api = REST(KEY, SECRET, base_url=URL(SIM_URL), api_version="v2")  # data URL: APCA_API_DATA_URL
events: dict[str, list] = {"trade_updates": [], "bars": []}
stream = Stream(KEY, SECRET, base_url=URL(SIM_URL), data_stream_url=URL(SIM_URL), data_feed="iex")
_stream_thread: threading.Thread | None = None


def _order(o) -> dict:
    return {"id": o.id, "client_order_id": o.client_order_id, "status": o.status, "symbol": o.symbol,
            "qty": o.qty, "filled_qty": o.filled_qty, "filled_avg_price": o.filled_avg_price, "type": o.type,
            "side": o.side, "limit_price": o.limit_price, "stop_price": o.stop_price, "replaces": o.replaces,
            "replaced_by": o.replaced_by, "time_in_force": o.time_in_force, "created_at": str(o.created_at)}


def _bar(raw: dict) -> dict:
    # Python's json keeps int and float apart: these flags say what the wire really carried.
    return {**{k: raw[k] for k in ("t", "o", "h", "l", "c", "v", "n", "vw")},
            "v_int": type(raw["v"]) is int, "n_int": type(raw["n"]) is int,
            "vw_number": type(raw["vw"]) in (int, float)}


def _start_stream() -> None:
    global _stream_thread
    if _stream_thread is None:  # one event loop runs every subscribed connection (Stream.run)
        _stream_thread = threading.Thread(target=stream.run, name="alpaca-stream", daemon=True)
        _stream_thread.start()


async def _on_trade_update(u) -> None:
    events["trade_updates"].append({"event": u.event, "client_order_id": u.order["client_order_id"],
                                    "status": u.order["status"], "price": getattr(u, "price", None),
                                    "qty": getattr(u, "qty", None)})


async def _on_bar(b) -> None:
    raw = b._raw
    t = pd.Timestamp(raw["timestamp"], unit="ns", tz="UTC").isoformat()  # the SDK made ns of the msgpack time
    events["bars"].append({"symbol": raw["symbol"], "t": t, "o": raw["open"], "c": raw["close"],
                           "v": raw["volume"], "n": raw["trade_count"], "vw": raw["vwap"],
                           "v_int": type(raw["volume"]) is int, "n_int": type(raw["trade_count"]) is int,
                           "vw_number": type(raw["vwap"]) in (int, float)})


def _submit(a: dict):
    keys = ("symbol", "qty", "side", "type", "time_in_force", "limit_price", "stop_price", "client_order_id",
            "extended_hours", "trail_percent", "notional")
    return _order(api.submit_order(**{k: a[k] for k in keys if a.get(k) is not None}))


def _bars(a: dict) -> dict:
    got = api.get_bars(a["symbols"], TimeFrame.Minute, a["start"], a["end"])  # pages by next_page_token
    out: dict[str, list] = {}
    for b in got:
        out.setdefault(b._raw["S"], []).append(_bar(b._raw))
    return {"bars": out, "pages": None}


def _bars_single(a: dict) -> dict:
    got = api.get_bars(a["symbol"], TimeFrame.Minute, a["start"], a["end"])  # GET /v2/stocks/{symbol}/bars
    return {"symbol": a["symbol"], "bars": [_bar(b._raw) for b in got], "pages": None}


def _clock() -> dict:
    c = api.get_clock()
    return {"timestamp": c.timestamp.isoformat(), "is_open": c.is_open, "next_open": c.next_open.isoformat(),
            "next_close": c.next_close.isoformat()}


def _trade_stream(a: dict) -> bool:
    stream.subscribe_trade_updates(_on_trade_update)
    _start_stream()
    return True


def _bar_stream(a: dict) -> bool:
    stream.subscribe_bars(_on_bar, *a["symbols"])
    _start_stream()
    return True


OPS = {
    "account": lambda a: (lambda x: {"id": x.id, "status": x.status, "cash": x.cash,
                                     "buying_power": x.buying_power, "equity": x.equity})(api.get_account()),
    "clock": lambda a: _clock(),
    "calendar": lambda a: [{"date": str(d.date.date()), "open": d.open.strftime("%H:%M"),
                            "close": d.close.strftime("%H:%M")}
                           for d in api.get_calendar(a["start"], a["end"])],
    "asset": lambda a: (lambda x: {"id": x.id, "symbol": x.symbol, "status": x.status, "tradable": x.tradable,
                                   "exchange": x.exchange})(api.get_asset(a["symbol"])),
    "submit": _submit,
    "get_by_cid": lambda a: _order(api.get_order_by_client_order_id(a["client_order_id"])),
    "get": lambda a: _order(api.get_order(a["id"])),
    "list": lambda a: [_order(o) for o in api.list_orders(status=a["status"], limit=500)],
    "replace": lambda a: _order(api.replace_order(a["id"], qty=a.get("qty"), limit_price=a.get("limit_price"),
                                                  client_order_id=a.get("client_order_id"))),
    "cancel": lambda a: api.cancel_order(a["id"]),
    "positions": lambda a: [{"symbol": p.symbol, "qty": p.qty, "avg_entry_price": p.avg_entry_price,
                             "side": p.side} for p in api.list_positions()],
    "close_position": lambda a: _order(api.close_position(a["symbol"])),
    "bars": _bars,
    "bars_single": _bars_single,
    "trade_stream": _trade_stream,
    "bar_stream": _bar_stream,
    "events": lambda a: list(events[a["kind"]]),
    "bad_keys_account": lambda a: REST("WRONG-KEY", "WRONG-SECRET", base_url=URL(SIM_URL),
                                       api_version="v2").get_account(),
}


def _failure(err: Exception) -> dict:
    if isinstance(err, APIError):
        code = err._error.get("code")  # APIError.code falls back to the status: read what the body had
        return {"name": "APIError", "status": err.status_code, "code": code, "message": str(err)}
    return {"name": type(err).__name__, "status": None, "code": None, "message": str(err)}


def main() -> None:
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["op"] not in OPS:  # e.g. clock_v3: this SDK only knows GET /v2/clock
                raise NotImplementedError(f"alpaca-trade-api has no {msg['op']}")
            answer = {"id": msg["id"], "ok": OPS[msg["op"]](msg.get("args") or {})}
        except Exception as err:  # noqa: BLE001 - every failure is an answer the test asserts on
            answer = {"id": msg["id"], "error": _failure(err)}
        print(json.dumps(answer, default=str), flush=True)


if __name__ == "__main__":
    main()
