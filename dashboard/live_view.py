"""The live page's sections, made from what ``live_data`` read: plain rows of text and numbers.

Kept apart from the readers so each rule is in one place: which stop and target a position has
(its open stop / take-profit orders at the broker, as the store records them, else the runner's last
decision), what "today" is (the session of the newest bar the runner saw, so a replay's folder reads
as of its last day), the regime today (the label the previous bar's decision chose for this session)
and next, which log lines are alerts, and how a refusal names its rule.
"""

from __future__ import annotations

import json

import pandas as pd

from .live_data import ROUTINE

NY = "America/New_York"


def build(store: dict | None, log: list[dict], status: dict | None, halt: dict | None, params: dict | None,
          shadow: list[dict]) -> dict:
    """The snapshot's sections (JSON data only)."""
    decisions = [x for x in log if x.get("event") == "decision"]
    last = _last_decisions(decisions)
    closes = _closes(decisions)
    store = store or {"positions": [], "orders": [], "daily_pnl": [], "halts": [], "fills": 0}
    last_bar = _last_bar(status, decisions)
    return {
        "positions": _positions(store, last, closes),
        "orders": [{k: o[k] for k in ("client_order_id", "strategy", "symbol", "side", "qty", "filled_qty", "type",
                                      "stop_price", "limit_price", "status", "submitted_at")} for o in store["orders"]],
        "pnl": _pnl(store, closes, last_bar["time"]),
        "equity": _equity(store, shadow),
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
    """Cumulative realized P&L by session (the store keeps no equity snapshots), and the days whose
    evening report found the live fills off the shadow backtest."""
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
