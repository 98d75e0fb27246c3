"""``tradelab parity``, ``tradelab sim`` and ``tradelab live [run|status|halt]``.

Keys come from the environment or a ``.env`` (APCA_API_KEY_ID / APCA_API_SECRET_KEY), are read
here, at the edge, and are never printed or logged. Paper is the default; live trading needs
both ``--live`` and ``TRADELAB_LIVE=1``, and says what it is about to do first.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from data_lake import LakeError

from .ui import DEFAULT_LAKE, LakeOpt, err, open_lake, out, print_frame, progress, secret_env, user_errors

app = typer.Typer(help="The live bridge: `tradelab live [--paper|--live] [--params FILE]` trades; "
                       "`tradelab live status`, `tradelab live halt`, `tradelab live control ACTION` (through "
                       "the dashboard).", invoke_without_command=True)
ParamsOpt = Annotated[Path, typer.Option("--params", help="The params file to trade.")]
STATE_DIR = Path("runs/live")


def _params(path: Path):
    from research.params import load

    if not path.exists():
        raise LakeError(f"{path}: no such params file (run tradelab nightly first)")
    try:
        return load(path)
    except (OSError, ValueError) as exc:  # a directory, a pipe, a huge or invalid file: one line, never a hang
        raise LakeError(str(exc)) from None


def _money(value: float, option: str) -> float:
    """A money argument: finite and > 0 (NaN or inf would hang a replay in tracebacks), checked first."""
    if not (math.isfinite(value) and 0 < value <= 1e12):
        raise LakeError(f"{option} must be a finite amount > 0 and at most 1e12, got {value}")
    return value


def _keys() -> tuple[str, str]:
    key, secret = secret_env("APCA_API_KEY_ID"), secret_env("APCA_API_SECRET_KEY")
    if not key or not secret:
        raise LakeError("set APCA_API_KEY_ID and APCA_API_SECRET_KEY (in the environment or a .env file)")
    return key, secret


@user_errors
def parity(
    params: ParamsOpt = Path("params/current.json"),
    start: Annotated[str, typer.Option(help="First day of the replay (YYYY-MM-DD).")] = "",
    end: Annotated[str, typer.Option(help="End of the replay, exclusive (default: after the last bar).")] = "",
    candidates: Annotated[bool, typer.Option(help="Also replay the candidates the gate rejected (never traded live).")] = False,
    cash: Annotated[float, typer.Option(help="Starting cash of the simulated account.")] = 100_000.0,
    work_dir: Annotated[Path | None, typer.Option(help="Where the state store and decision log go.")] = None,
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Replay a period through the live runner against the simulator; compare with the backtest."""
    from live_bridge.parity import check
    from live_bridge.replay import replay

    _money(cash, "--cash")
    pf = _params(params)
    end = end or (pd.Timestamp(pf.data.end) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    start = start or (pd.Timestamp(end) - pd.DateOffset(years=1)).strftime("%Y-%m-%d")
    work = work_dir or STATE_DIR / f"parity-{pd.Timestamp.now(tz='UTC'):%Y%m%dT%H%M%S}"
    try:
        with progress() as bar:
            task = bar.add_task("replay", total=None)
            result = replay(open_lake(lake), pf, start, end, cash=cash, work_dir=work, candidates=candidates,
                            progress=lambda n, clock: bar.update(task, completed=n))
    except ValueError as exc:
        raise LakeError(str(exc)) from None
    what = "the promoted params and the rejected candidates" if candidates else "the promoted params"
    out.print(f"replay {start} .. {end} of {what}: {len(result.fills)} fills, "
              f"equity {result.cash:,.0f} -> {result.equity.iloc[-1]:,.2f}", highlight=False)
    verdict = check(result)
    if len(verdict.trades):
        print_frame(verdict.trades, title="fills: backtest vs live (broker)")
    for e in result.errors:
        err.print(f"runner error: {e}", markup=False, highlight=False)
    out.print(verdict.summary(), highlight=False)
    out.print(f"decision log -> {result.decision_log}", highlight=False)
    if not verdict.ok:
        raise typer.Exit(1)


@user_errors
def sim(
    symbols: Annotated[str, typer.Option(help="Symbols to replay, comma-separated.")] = "AAPL,MSFT",
    timeframe: Annotated[str, typer.Option(help="Bar timeframe of the replay.")] = "1Day",
    start: Annotated[str, typer.Option(help="First day of the replay.")] = "2012-03-01",
    end: Annotated[str | None, typer.Option(help="End day (exclusive).")] = None,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second (0: as fast as possible).")] = 3600.0,
    port: Annotated[int, typer.Option(help="Loopback port (0: any free one).")] = 0,
    cash: Annotated[float, typer.Option(help="Starting cash.")] = 100_000.0,
    lake: LakeOpt = DEFAULT_LAKE,
) -> None:
    """Serve the Alpaca-compatible simulator on loopback, replaying the lake's bars (keys from the environment)."""
    from data_lake.schema import parse_symbols
    from simulator import BrokerConfig, ReplayClock, SimulatorState, StreamControl, serve, streams_router
    from simulator.trading import broker_app

    _money(cash, "--cash")
    if not 0 <= port <= 65535:
        raise LakeError(f"--port must be between 0 and 65535 (0: any free port), got {port}")
    if not (math.isfinite(speed) and 0 <= speed <= 1e9):
        raise LakeError(f"--speed must be a finite number of simulated seconds per second >= 0, got {speed}")
    for option, value in (("--start", start), ("--end", end)):
        if value is not None:
            try:
                pd.Timestamp(value)
            except (ValueError, TypeError):
                raise LakeError(f"{option} must be a date (YYYY-MM-DD), got {value!r}") from None
    key, secret = _keys()
    store = open_lake(lake).snapshot()  # every symbol served from one lake state
    frames = {s: store.read_bars(s, timeframe, start, end)[["ts", "open", "high", "low", "close", "volume"]]
              for s in parse_symbols(symbols)}
    del store  # read once: its lease goes before the simulator runs for days
    empty = [s for s, f in frames.items() if f.empty]
    if empty:
        raise LakeError(f"no {timeframe} bars for {', '.join(empty)} from {start} in the lake")
    state = SimulatorState(api_key=key, secret_key=secret)
    clock = ReplayClock(frames, timeframe)
    clock.between_seconds = 0.05
    app = broker_app(clock, config=BrokerConfig(cash=cash), state=state, api_key=key, secret_key=secret,
                     routers=[streams_router(state, clock.hub, StreamControl())])
    with serve(app, port=port) as server:
        out.print(f"simulator at {server.url} (trading + /v2/stocks/bars; websockets "
                  f"{server.url.replace('http', 'ws')}/v2/iex and /stream); replaying {len(frames)} symbols "
                  f"from {start} at {speed:g}x; Ctrl-C stops", highlight=False)
        clock.run(speed)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.is_set() and not clock.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
        clock.stop()
        out.print(f"simulator stopped at {clock.now:%Y-%m-%d %H:%M} UTC", highlight=False)


@app.command("status")
@user_errors
def status(state_dir: Annotated[Path, typer.Option(help="The runner's folder.")] = STATE_DIR,
           params: ParamsOpt = Path("params/current.json")) -> None:
    """Positions, P&L, today's regime, the active params and the last decision (read-only)."""
    from live_bridge.state import StateError, StateStore

    db = state_dir / "state.db"
    if not db.exists():
        raise LakeError(f"{db}: no live runner state here (start one with tradelab live)")
    try:  # read-only: no lock (the runner may be writing), nothing created, migrated or written
        with StateStore(db, read_only=True) as store:
            pos = pd.DataFrame([(p.strategy, p.symbol, p.qty, p.avg_price) for p in store.positions().values()],
                               columns=["strategy", "symbol", "qty", "avg_price"])
            halts = pd.DataFrame([(h.day.isoformat(), h.scope, h.reason, h.at.isoformat())
                                  for h in store.recent_halts(5)], columns=["day", "scope", "reason", "at"])
    except sqlite3.DatabaseError as exc:
        raise LakeError(f"{db} is damaged and cannot be read ({exc}); it was not touched. Stop the runner, keep "
                        "the file for inspection, and reconcile against the broker (tradelab live halt "
                        "flattens without it)") from None
    except StateError as exc:
        raise LakeError(str(exc)) from None
    print_frame(pos if len(pos) else pd.DataFrame({"positions": ["flat"]}), title="positions (state store)")
    if len(halts):
        print_frame(halts, title="halts")
    _running(state_dir, params)
    log = state_dir / "decisions.jsonl"
    if log.exists():
        last = _tail_json(log)
        decisions = [x for x in last if x.get("event") == "decision"]
        if decisions:
            d = decisions[-1]
            out.print(f"last decision {d['bar_time']} {d['strategy']} {d['symbol']}: {d['reason']} "
                      f"(next regime {d['regime_next']}, target {d['target']})", highlight=False)


def _running(state_dir: Path, params: Path) -> None:
    """What the running process trades (its status.json), and whether the file on disk differs."""
    st = state_dir / "status.json"
    try:
        body = json.loads(st.read_text())
    except (OSError, ValueError):
        out.print(f"no status from a running runner in {state_dir} (status.json missing or unreadable)",
                  highlight=False)
        return
    alive = _alive(int(body.get("pid", 0))) and not body.get("stopped")
    p = body.get("params") or {}
    out.print(f"runner pid {body.get('pid')} {'running' if alive else 'not running'} (status of "
              f"{body.get('updated_at', '?')}): trades params {str(p.get('sha256', '?'))[:12]} "
              f"({p.get('active', '?')} active entries) since bar {((body.get('epochs') or [{}])[-1]).get('from_bar')}",
              highlight=False)
    for b, r in (body.get("regimes") or {}).items():
        out.print(f"regime {b}: next session {r.get('next_session')} is {r.get('next_label')}", highlight=False)
    broker = body.get("broker") or {}
    if broker.get("ok") is False:
        out.print(f"broker unreachable since {broker.get('since')}: {broker.get('error')}", highlight=False)
    if params.exists():
        pf = _params(params)
        if pf.sha256() != p.get("sha256"):
            out.print(f"{params} ({pf.sha256()[:12]}) is not what the runner trades yet (picked up at the next "
                      "poll, or refused: see the decision log)", highlight=False)


def _tail_json(path: Path, size: int = 1 << 18) -> list[dict]:
    """The decision log's last lines (its last 256 KiB: it grows for weeks), a torn one skipped."""
    with open(path, "rb") as f:
        start = max(0, f.seek(0, 2) - size)
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()[1 if start else 0:]  # a cut first line is dropped
    out = []
    for x in lines:
        try:
            out.append(json.loads(x))
        except ValueError:
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return pid > 0


@app.command("reload")
@user_errors
def reload(state_dir: Annotated[Path, typer.Option(help="The runner's folder.")] = STATE_DIR) -> None:
    """Ask the running runner to read its params file again now (it also watches the file)."""
    from live_bridge.control import cli_who, log_action

    if not state_dir.is_dir():
        raise LakeError(f"{state_dir}: no live runner state here")
    log_action(state_dir, "reload", cli_who("tradelab live reload"), outcome="accepted")
    (state_dir / "RELOAD").write_text(f"asked at {pd.Timestamp.now(tz='UTC').isoformat()}\n")
    out.print(f"reload asked: the runner reads its params file at its next poll ({state_dir / 'RELOAD'})",
              highlight=False)


from .live_halt import halt as _halt_command  # noqa: E402 - the command lives beside, registered here

app.command("halt")(user_errors(_halt_command))


CONTROL_ACTIONS = ("status", "halt", "resume", "reload", "flatten")


@app.command("control")
@user_errors
def control(action: Annotated[str, typer.Argument(help="status, halt, resume, reload or flatten.")],
            symbol: Annotated[str | None, typer.Argument(help="flatten: the symbol to close.")] = None,
            url: Annotated[str, typer.Option(help="The dashboard's address.")] = "http://127.0.0.1:8050",
            wait: Annotated[float, typer.Option(help="Seconds the dashboard waits for the runner (0-60).")] = 10.0
            ) -> None:
    """Steer the runner through the dashboard's control API (token: TRADELAB_DASHBOARD_TOKEN)."""
    import urllib.error
    import urllib.request

    if action not in CONTROL_ACTIONS:
        raise LakeError(f"unknown action {action!r} (one of {', '.join(CONTROL_ACTIONS)})")
    if (action == "flatten") != (symbol is not None):
        raise LakeError("flatten takes one SYMBOL" if action == "flatten" else f"{action} takes no symbol")
    if not url.startswith(("http://", "https://")):
        raise LakeError(f"--url must be an http(s) address, got {url!r}")
    token = secret_env("TRADELAB_DASHBOARD_TOKEN")
    if action != "status" and not token:
        raise LakeError("set TRADELAB_DASHBOARD_TOKEN (the dashboard's control token)")
    body = json.dumps({"wait": wait, **({"symbol": symbol.upper()} if symbol else {})}).encode()
    req = urllib.request.Request(url.rstrip("/") + "/api/" + action, data=None if action == "status" else body,
                                 method="GET" if action == "status" else "POST",
                                 headers={"User-Agent": "tradelab-cli/control", "Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=wait + 30) as r:  # noqa: S310 - http(s) checked above
            answer = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        try:
            why = json.loads(exc.read()).get("detail")
        except ValueError:
            why = exc.reason
        raise LakeError(f"{action} refused ({exc.code}): {why}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        err.print(f"error: the dashboard at {url} did not answer: {getattr(exc, 'reason', exc)}", markup=False,
                  highlight=False)
        raise typer.Exit(3) from None
    out.print(json.dumps(answer, indent=1, default=str), markup=False, highlight=False, soft_wrap=True)


@app.callback()
def live(ctx: typer.Context, params: ParamsOpt = Path("params/current.json"),
         paper: Annotated[bool, typer.Option("--paper/--live", help="Paper (default) or live trading.")] = True,
         url: Annotated[str | None, typer.Option(help="Broker URL override (e.g. the simulator's).")] = None,
         state_dir: Annotated[Path, typer.Option(help="State store and decision log folder.")] = STATE_DIR,
         poll: Annotated[float, typer.Option(help="Seconds between bar polls.")] = 5.0,
         entry_cutoff: Annotated[float, typer.Option(help="Intraday: no new entry in the last N minutes of a "
                                                          "session (the backtest's flat_at_close stops 2 bars before).")] = 15.0,
         strategy_budget: Annotated[list[str] | None, typer.Option(
             help="A strategy's capital budget, NAME=FRACTION of equity (repeat it; the others keep "
                  "STRATEGY_DEFAULTS', e.g. sma_cross 0.15).")] = None,
         lake: LakeOpt = DEFAULT_LAKE) -> None:
    """Trade the params file (paper by default); `status`, `reload` and `halt` are subcommands."""
    if ctx.invoked_subcommand is None:
        run(params, paper, url, state_dir, poll, lake, entry_cutoff, strategy_budget)


@user_errors
def run(params: ParamsOpt = Path("params/current.json"),
        paper: Annotated[bool, typer.Option("--paper/--live", help="Paper (default) or live trading.")] = True,
        url: Annotated[str | None, typer.Option(help="Broker URL override (e.g. the simulator's).")] = None,
        state_dir: Annotated[Path, typer.Option(help="State store and decision log folder.")] = STATE_DIR,
        poll: Annotated[float, typer.Option(help="Seconds between bar polls.")] = 5.0,
        lake: LakeOpt = DEFAULT_LAKE, entry_cutoff: float = 15.0, strategy_budget: list[str] | None = None) -> None:
    """Trade the params file: paper by default; live needs --live and TRADELAB_LIVE=1."""
    if not (0 <= entry_cutoff <= 390):  # NaN fails this too
        raise LakeError(f"--entry-cutoff must be between 0 and 390 minutes, got {entry_cutoff}")
    budgets = _budgets(strategy_budget or [])
    from live_bridge.alerts import from_env
    from live_bridge.daemon import run_forever
    from live_bridge.runner_halts import HaltedError, read_halt

    if not (poll > 0 and poll < 3600):
        raise LakeError(f"--poll must be between 0 and 3600 seconds, got {poll}")
    from live_bridge.control import resume_asked

    halt = read_halt(state_dir)
    if halt is not None and halt.done and not resume_asked(halt):  # exit 2: systemd's RestartPreventExitStatus=2
        raise LakeError(halt.refusal(state_dir))  # leaves it stopped
    pf = _params(params) if halt is None or halt.done else None  # a pending HALT only flattens: no params needed
    if halt is not None and halt.done:
        out.print(f"HALT in {state_dir} was asked to resume at the next session: the runner waits for the market "
                  "to be closed, removes HALT and trades from the next open", markup=False, highlight=False)
    if not paper and os.environ.get("TRADELAB_LIVE") != "1":
        raise LakeError("live trading needs both --live and TRADELAB_LIVE=1 (paper is the default)")
    key, secret = _keys()
    try:
        notifier = from_env(os.environ)
    except ValueError as exc:
        raise LakeError(str(exc)) from None
    where = url or ('Alpaca paper' if paper else 'Alpaca LIVE')
    if pf is None:
        out.print(f"HALT in {state_dir} (flatten pending, by {halt.by}): connecting to {where} to cancel every "
                  "order and flatten every position with the runner's own orders, then stopping; no trading",
                  markup=False, highlight=False)
    else:
        active = [e for e in pf.entries if e.status == "active"]
        out.print(f"{'LIVE' if not paper else 'paper'} trading {len(active)} active entries of {params} "
                  f"({pf.data.timeframe}) on {where}; state {state_dir}; a new {params} is picked up between "
                  "bars; SIGTERM/Ctrl-C stops after the current event", highlight=False)
        if not active:
            out.print("nothing is active in this file (every entry is flat): the runner waits for a promoted "
                      "params file", highlight=False)
        if not paper:
            time.sleep(5)  # a last chance to Ctrl-C a live start
    try:
        run_forever(open_lake(lake), params, key, secret, paper=paper, url=url, state_dir=state_dir, poll=poll,
                    notifier=notifier, entry_cutoff=entry_cutoff, budgets=budgets)
    except (ValueError, HaltedError) as exc:  # the runner's refusals (two strategies on a symbol, a target
        raise LakeError(str(exc)) from None  # without a stop); a HALT marked done while it was starting
    finally:
        notifier.close(5.0)


def _budgets(specs: list[str]) -> dict[str, float]:
    """``--strategy-budget NAME=FRACTION`` options, checked: each a known strategy, a fraction in (0, 1]."""
    from live_bridge.risk import RiskLimits
    from research.signals import NAMES

    out: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise LakeError(f"--strategy-budget must be NAME=FRACTION (e.g. sma_cross=0.15), got {spec!r}")
        if name not in NAMES:
            raise LakeError(f"--strategy-budget {spec!r}: unknown strategy {name!r} (known: {', '.join(NAMES)})")
        try:
            out[name] = float(value)
        except ValueError:
            raise LakeError(f"--strategy-budget {spec!r}: {value!r} is not a number") from None
    try:
        RiskLimits(strategy_budgets=out)  # the limits' own checks: each in (0, 1]
    except ValueError as exc:
        raise LakeError(f"--strategy-budget: {exc}") from None
    return out
