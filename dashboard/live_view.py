"""The live page's sections, made from what ``live_data`` read: plain rows of text and numbers.

Kept apart from the readers so each rule is in one place: which stop and target a position has
(its open stop / take-profit orders at the broker, as the store records them, else the runner's last
decision), what "today" is (the session of the newest bar the runner saw, so a replay's folder reads
as of its last day), the regime today (the label the previous bar's decision chose for this session)
and next, which log lines are alerts, and how a refusal names its rule.

The equity curve is the store's equity marks (the account as the runner read it, one a minute). The
shadow line beside it is what the evening reports can say about it: the equity the account would
show had every paired fill been at the shadow backtest's price, i.e. live equity minus the
cumulative signed slippage dollars (``daily_report``: (live - backtest price) x side x live qty) of
the fills compared so far, each from the time its live fill landed (the store's fills). A missed or
extra fill has no such price: it is a marker on the live curve. No evening report: no shadow line,
and the page says so. Today's P&L from equity is the last mark minus the last mark before today's
session open.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from .live_data import ROUTINE

NY = "America/New_York"
MAX_POINTS = 3000  # marks sent to the page; beyond, older sessions keep only their last mark
FULL_POINTS = 2000  # the newest marks always sent in full
CAPTION = ("Shadow = live equity minus the cumulative slippage $ (signed, x qty) of the fills the evening reports "
           "paired: the equity at the backtest's fill prices.")


def build(store: dict | None, log: list[dict], status: dict | None, halt: dict | None, params: dict | None,
          shadow: list[dict], evening: dict[str, list[dict]] | None = None) -> dict:
    """The snapshot's sections (JSON data only); ``evening``: each day's compared fills (``live_data``)."""
    decisions = [x for x in log if x.get("event") == "decision"]
    last = _last_decisions(decisions)
    closes = _closes(decisions)
    store = store or {"positions": [], "orders": [], "daily_pnl": [], "halts": [], "fills": 0}
    store.setdefault("marks", [])
    store.setdefault("executions", [])
    last_bar = _last_bar(status, decisions)
    pnl = _pnl(store, closes, last_bar["time"])
    return {
        "positions": _positions(store, last, closes),
        "orders": [{k: o[k] for k in ("client_order_id", "strategy", "symbol", "side", "qty", "filled_qty", "type",
                                      "stop_price", "limit_price", "status", "submitted_at")} for o in store["orders"]],
        "pnl": pnl,
        "equity": _equity(store, shadow) | _curve(store, evening or {}, pnl["day"]),
        "shadow": shadow,
        "regimes": _regimes(decisions, status),
        "entries": _entries(params),
        "halts": _halts(store, log, status, halt),
        "decisions": [_line(x) for x in log[-60:]][::-1],
        "broker": _broker(status),
        "last_bar": last_bar,
        "fills": store["fills"],
    }


def _last_decisions(decisions: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(strategy, symbol) -> its decisions in the tail, oldest first."""
    out: dict[tuple[str, str], list[dict]] = {}
    for d in decisions:
        out.setdefault((str(d.get("strategy")), str(d.get("symbol"))), []).append(d)
    return out


def _closes(decisions: list[dict]) -> dict[str, float]:
    """The last close the runner saw per symbol (a basket's decision carries one per leg)."""
    out: dict[str, float] = {}
    for d in decisions:
        if isinstance(d.get("closes"), dict):
            out.update({str(k): float(v) for k, v in d["closes"].items() if isinstance(v, int | float)})
        elif isinstance(d.get("close"), int | float):
            out[str(d.get("symbol"))] = float(d["close"])
    return out


def _positions(store: dict, last: dict, closes: dict[str, float]) -> list[dict]:
    rows = []
    for p in store["positions"]:
        if abs(p["qty"]) < 1e-9:
            continue
        mine = [o for o in store["orders"] if o["symbol"] == p["symbol"] and o["strategy"] == p["strategy"]] or \
               [o for o in store["orders"] if o["symbol"] == p["symbol"]]  # a netted symbol's one order
        stop = next((o["stop_price"] for o in mine if o["type"] in ("stop", "stop_limit") and o["stop_price"]), None)
        target = next((o["limit_price"] for o in mine if o["type"] == "limit" and o["limit_price"]), None)
        d = (last.get((p["strategy"], p["symbol"])) or [{}])[-1]
        source = "broker order" if stop is not None or target is not None else "last decision"
        stop = stop if stop is not None else d.get("stop")
        target = target if target is not None else d.get("take_profit")
        close = closes.get(p["symbol"])
        rows.append({"strategy": p["strategy"], "symbol": p["symbol"], "qty": p["qty"], "avg_price": p["avg_price"],
                     "last_close": close, "unrealized": None if close is None else (close - p["avg_price"]) * p["qty"],
                     "stop": stop, "target": target, "from": source})
    return rows


def _day(iso: str | None) -> str | None:
    if not iso:
        return None
    return str(pd.Timestamp(iso).tz_convert(NY).date())


def _pnl(store: dict, closes: dict[str, float], last_bar: str | None) -> dict:
    """Today's realized P&L per strategy (the store's daily_pnl) and the open positions' unrealized."""
    day = _day(last_bar) or (store["daily_pnl"][-1]["day"] if store["daily_pnl"] else None)
    realized = {r["strategy"]: r["realized"] for r in store["daily_pnl"] if r["day"] == day}
    unrealized = sum((closes[p["symbol"]] - p["avg_price"]) * p["qty"] for p in store["positions"]
                     if abs(p["qty"]) > 1e-9 and p["symbol"] in closes)
    return {"day": day, "realized": sum(realized.values()), "by_strategy": realized, "unrealized": unrealized,
            "total": sum(realized.values()) + unrealized,
            "all_time_realized": sum(p["realized"] for p in store["positions"])}


def _equity(store: dict, shadow: list[dict]) -> dict:
    """Cumulative realized P&L by session (the curve of a store from before equity marks, schema 4), and
    the days whose evening report found the live fills off the shadow backtest."""
    by_day: dict[str, float] = {}
    for r in store["daily_pnl"]:
        by_day[r["day"]] = by_day.get(r["day"], 0.0) + r["realized"]
    days = sorted(by_day)
    total, curve = 0.0, []
    for d in days:
        total += by_day[d]
        curve.append(total)
    return {"days": days, "realized": curve, "shadow_ok": {s["day"]: s["ok"] for s in shadow}}


def _regimes(decisions: list[dict], status: dict | None) -> list[dict]:
    """Per sleeve: the label of the session being traded (chosen by the decision before the last) and
    of the next one (the last decision's); per benchmark, the runner's own table (status.json)."""
    seen: dict[tuple[str, str], list[dict]] = {}
    for d in decisions:
        if "regime_next" not in d:
            continue
        per = seen.setdefault((str(d.get("strategy")), str(d.get("symbol"))), [])
        if per and per[-1].get("bar_time") == d.get("bar_time"):
            per[-1] = d  # decided again on the same bar (its benchmark's bar came later): the last word
        else:
            per.append(d)
    rows = [{"who": f"{s} {y}", "today": v[-2]["regime_next"] if len(v) > 1 else None, "next": v[-1]["regime_next"],
             "bar_time": v[-1].get("bar_time")} for (s, y), v in sorted(seen.items())]
    for bench, r in sorted(((status or {}).get("regimes") or {}).items()):
        if isinstance(r, dict):
            rows.append({"who": f"benchmark {bench}", "today": None, "next": r.get("next_label"),
                         "bar_time": r.get("last_daily_bar"), "next_session": r.get("next_session")})
    return rows


def _entries(params: dict | None) -> dict:
    """The active entries with their gate metrics; none active (the demo's rejected candidates, which
    a ``parity --candidates`` replay trades): the entries with a chosen combination, marked so."""
    if params is None:
        return {"source": "no params file", "rows": []}
    pf = params["pf"]
    chosen = [e for e in pf.entries if e.status == "active"]
    note = params.get("note")
    if not chosen:
        chosen = [e for e in pf.entries if (e.in_sample.trades or 0) > 0]
        if chosen:
            note = ("no active entry: the gate rejected every candidate; shown are the candidates "
                    "(replays with --candidates trade them)")
    rows = []
    for e in chosen:
        oos = e.out_of_sample
        rows.append({"strategy": e.strategy, "symbol": e.symbol, "regime": e.regime, "status": e.status,
                     "params": json.dumps(e.params, sort_keys=True), "oos_sharpe": None if oos is None else oos.sharpe,
                     "deflated_sharpe": e.deflated_sharpe, "pbo": e.pbo, "stability": e.stability,
                     "oos_trades": e.oos_trades, "gate": "passed" if e.gate.passed else "; ".join(e.gate.reasons)})
    return {"source": params["source"], "note": note, "sha256": pf.sha256(),
            "created_at": pf.created_at.isoformat(), "rows": rows}


def _halts(store: dict, log: list[dict], status: dict | None, halt: dict | None) -> dict:
    alerts = [_line(x) for x in log if x.get("event") not in ROUTINE]
    return {"file": halt, "store": store["halts"], "halting": (status or {}).get("halting"),
            "alerts": alerts[-20:][::-1]}


def _line(x: dict) -> dict:
    """One decision-log line as text: when, what, who, why, and what was done or refused (with its rule)."""
    ev = str(x.get("event", "?"))
    who = " ".join(str(x[k]) for k in ("strategy", "symbol") if x.get(k)) or str(x.get("scope") or x.get("order") or "")
    text = x.get("reason") or x.get("message") or x.get("status") or x.get("error") or ""
    if ev == "fill":
        text = f"{x.get('side')} {x.get('qty')} @ {x.get('price')}"
    details = []
    for a in x.get("actions") or []:
        if not isinstance(a, dict):
            continue
        if a.get("allowed") is False:
            details.append(f"refused by rule {a.get('rule')}: {a.get('risk')}")
        elif a.get("skip"):
            details.append(f"skipped{' (rule ' + str(a['rule']) + ')' if a.get('rule') else ''}: {a['skip']}")
        elif a.get("order") or a.get("side"):
            details.append(f"{a.get('side', '')} {a.get('qty', '')} {a.get('type', '')} {a.get('order', '')}".strip())
    if x.get("rule"):
        details.insert(0, f"rule {x['rule']}")
    if x.get("broker_error"):
        details.append(str(x["broker_error"]))
    return {"at": x.get("bar_time") or x.get("at") or x.get("logged_at"), "event": ev, "who": who,
            "text": str(text), "detail": "; ".join(details), "refused": any("refused" in d for d in details)}


def _broker(status: dict | None) -> dict:
    if status is None:
        return {"state": "unknown", "text": "no status.json: no runner has run here (a replay's folder?)"}
    b = status.get("broker") or {}
    state = {True: "connected", False: "unreachable", None: "not yet reached"}.get(b.get("ok"), "unknown")
    text = f"since {b.get('since')}: {b.get('error')}" if b.get("ok") is False else ""
    if status.get("stopped"):
        state, text = "stopped", f"the runner stopped (status of {status.get('updated_at')})"
    return {"state": state, "text": text, "updated_at": status.get("updated_at"), "pid": status.get("pid"),
            "paper": status.get("paper")}


def _last_bar(status: dict | None, decisions: list[dict]) -> dict:
    """The newest bar the runner has (status.json's per-symbol last bars, else the log's last decision)."""
    per = {k: v for k, v in ((status or {}).get("last_bar") or {}).items() if v}
    if per:
        return {"time": max(per.values(), key=lambda t: pd.Timestamp(t)), "per_symbol": per, "from": "status.json"}
    times = [d["bar_time"] for d in decisions if d.get("bar_time")]
    return {"time": max(times, key=lambda t: pd.Timestamp(t)) if times else None, "per_symbol": {},
            "from": "decision log"}


def _curve(store: dict, evening: dict[str, list[dict]], day: str | None) -> dict:
    """The equity marks, the shadow line (or why there is none), the missed and extra fills on the curve,
    and today's P&L from the marks (see the module doc)."""
    marks = _thin(store["marks"])
    ts = np.array([m[0] for m in marks], dtype=np.int64)
    eq = np.array([m[1] for m in marks], dtype=float)
    when = pd.to_datetime(ts, unit="us", utc=True)
    out = {"marks": {"t": list(when.strftime("%Y-%m-%dT%H:%M:%S+00:00")),
                     "x": list(when.tz_convert(NY).strftime("%Y-%m-%d %H:%M:%S")), "equity": eq.tolist(),
                     "cash": [m[2] for m in marks]},
           "shadow_line": None, "events": [], "caption": CAPTION, "today": _today(ts, eq, day)}
    if not len(ts):
        out["shadow_note"] = ("no equity mark in the state store yet (the runner keeps one each minute it reads "
                              "the account)")
        return out
    if not evening:
        out["shadow_note"] = ("no shadow line: no evening report in the runs folder yet (`tradelab evening` "
                              "compares each session's fills with the shadow backtest)")
        return out
    steps, out["events"] = _compared(evening, store["executions"], ts, eq)
    days = sorted(evening)
    lo, hi = _session_bounds(days[0])[0], _session_bounds(days[-1])[1]
    first = max(int(np.searchsorted(ts, lo, side="left")) - 1, 0)  # from the mark before the first report
    keep = np.arange(first, int(np.searchsorted(ts, hi, side="right")))
    step_t = np.array([t for t, _ in steps], dtype=np.int64)
    order = np.argsort(step_t, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(np.array([u for _, u in steps], dtype=float)[order])])
    slip = cum[np.searchsorted(step_t[order], ts[keep], side="right")]
    out["shadow_line"] = {"t": [out["marks"]["t"][i] for i in keep], "x": [out["marks"]["x"][i] for i in keep],
                          "equity": (eq[keep] - slip).tolist(), "slippage": slip.tolist(),
                          "from": days[0], "through": days[-1]}
    gaps = _gaps(days, store["executions"])
    out["shadow_note"] = (f"shadow from the evening reports of {days[0]} to {days[-1]}"
                          + (f"; no report for {', '.join(gaps)}: those fills are not in it" if gaps else ""))
    return out


def _compared(evening: dict[str, list[dict]], executions: list[dict], ts: np.ndarray, eq: np.ndarray):
    """((time of the live fill in UTC µs, slippage $) of every paired fill, the missed/extra markers)."""
    steps, events, fills = [], [], {}
    for f in executions:  # (strategy, symbol, side) -> times of its live fills not yet paired, oldest first
        key = (f["strategy"], f["symbol"], f["side"])
        fills.setdefault(key, []).append(int(pd.Timestamp(f["ts"]).value // 1000))
    for day in sorted(evening):
        for r in evening[day]:
            status = r.get("status")
            t = _fill_us(r, fills) if status != "missed" else _bar_us(r.get("bar"))
            if t is None:
                continue
            if status in ("match", "price"):
                usd = r.get("slippage_usd")
                steps.append((t, float(usd) if isinstance(usd, int | float) and math.isfinite(usd) else 0.0))
            elif status in ("missed", "extra"):
                i = max(int(np.searchsorted(ts, t, side="right")) - 1, 0)
                price = r.get("expected_price") if status == "missed" else r.get("live_price")
                what = "backtest" if status == "missed" else f"live {r.get('qty')}"
                events.append({"t": _iso(t), "x": _ny(t), "equity": float(eq[i]), "status": status,
                               "text": f"{status}: {r.get('strategy')} {r.get('symbol')} bar {_bar_text(r.get('bar'))} "
                                       f"{r.get('side')} ({what} @ {price})"})
    return steps, events


def _fill_us(row: dict, fills: dict[tuple, list[int]]) -> int | None:
    """When the live fill of a compared row landed: the store's first unpaired fill of its strategy,
    symbol and side at or after its bar, in the bar's session (taken from ``fills``); else the bar's time."""
    bar = _bar_us(row.get("bar"))
    if bar is None:
        return None
    times = fills.get((row.get("strategy"), row.get("symbol"), row.get("side")), [])
    i = int(np.searchsorted(times, bar, side="left"))
    if i < len(times) and times[i] <= _session_bounds(_ny_day(bar))[1] + 1:
        return times.pop(i)
    return bar


def _bar_us(bar) -> int | None:
    """A report's bar as UTC µs, moved to its session's open when before it (a daily bar is stamped 00:00)."""
    try:
        us = int(pd.Timestamp(bar).tz_convert("UTC").value // 1000)
    except (TypeError, ValueError):
        return None
    return max(us, _session_bounds(_ny_day(us))[0])


def _bar_text(bar) -> str:
    t = pd.Timestamp(bar).tz_convert(NY)
    return t.strftime("%Y-%m-%d" if t == t.normalize() else "%Y-%m-%d %H:%M")


def _session_bounds(day: str) -> tuple[int, int]:
    """(open, close) of a New York session in UTC µs (a day without a session: its whole day)."""
    from data_lake.calendar import nyse

    s, d = nyse(), pd.Timestamp(day)
    i = int(s.dates.searchsorted(d))
    if i < len(s.dates) and s.dates[i] == d:
        return int(s.open_us[i]), int(s.close_us[i])
    start = int(d.tz_localize(NY).value // 1000)
    return start, start + 86_400_000_000


def _gaps(days: list[str], executions: list[dict]) -> list[str]:
    """The sessions between the first and last report with live fills but no report of their own."""
    filled = {_ny_day(int(pd.Timestamp(f["ts"]).value // 1000)) for f in executions}
    return sorted(d for d in filled if days[0] < d < days[-1] and d not in set(days))


def _today(ts: np.ndarray, eq: np.ndarray, day: str | None) -> dict:
    """Today's P&L from equity: the last mark minus the last mark before the session's open."""
    if day is None or not len(ts):
        return {"day": day, "pnl": None, "note": "no equity mark yet"}
    i = int(np.searchsorted(ts, _session_bounds(day)[0], side="left")) - 1
    if i < 0:
        return {"day": day, "pnl": None, "now": float(eq[-1]), "now_at": _iso(ts[-1]),
                "note": "no equity mark before this session's open"}
    return {"day": day, "pnl": float(eq[-1] - eq[i]), "now": float(eq[-1]), "now_at": _iso(ts[-1]),
            "base": float(eq[i]), "base_at": _iso(ts[i]), "note": None}


def _thin(marks: list) -> list:
    """At most about MAX_POINTS marks: the newest FULL_POINTS in full, each older session by its last mark."""
    if len(marks) <= MAX_POINTS:
        return marks
    from data_lake.calendar import nyse

    old, new = marks[:-FULL_POINTS], marks[-FULL_POINTS:]
    session = np.searchsorted(nyse().open_us, np.fromiter((m[0] for m in old), np.int64, len(old)), side="right")
    last = np.flatnonzero(np.diff(session, append=session[-1] + 1))  # the last mark before the next session
    return [old[i] for i in last] + new


def _iso(us) -> str:
    return pd.Timestamp(int(us), unit="us", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _ny(us) -> str:
    """New York wall time, what the plot's axis shows (plotly reads no zone offset)."""
    return pd.Timestamp(int(us), unit="us", tz="UTC").tz_convert(NY).strftime("%Y-%m-%d %H:%M:%S")


def _ny_day(us) -> str:
    return str(pd.Timestamp(int(us), unit="us", tz="UTC").tz_convert(NY).date())
