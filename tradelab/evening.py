"""The evening job: after the NYSE close, bring the lake, the regimes and the params up to the day.

``tradelab evening`` works on the New York date of "now": a weekend or holiday is a no-op, a session
that has not closed yet is refused (a half day closes at 13:00 ET: the close comes from the
calendar) unless forced; then, in order: **ingest** the bars the lake lacks from Alpaca (the code
behind ``tradelab ingest alpaca``) for every symbol the params in force and the nightly need (legs
of multi-leg entries and benchmarks included), at their timeframes and at 1Day; **regimes** of the
benchmark(s) through the new close; the **nightly** (``tradelab.jobs.run_job`` with the install step
of ``tradelab nightly``, passed in by the CLI); the live **report** of the day, when the live bridge
has one and a live state store exists.

Why it looks the way it does: a failed step skips the steps that need it (regimes and the nightly
need the new bars, the nightly also the regimes; the report reads the live state only), and never
touches the params in force, which only the nightly's atomic, after-success install changes.
``runs/<date>/evening-<HHMMSS>/status.json`` (the New York session date; the time in UTC, as the
other jobs) is rewritten after every step, so a killed run shows how far it got (``ok: null``); an
flock on ``runs/.evening.lock`` keeps two evenings apart. A failure sends a critical ``job_failed``
alert (``live_bridge.alerts``, else a logged warning); messages pass through ``_scrub``, so the
keys never reach a file or an alert. Held symbols are fetched from their last bar, with the last
``REFILL_SESSIONS`` sessions asked again (a bar the feed was late with); new ones from ``since``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from data_lake import Lake, LakeError
from data_lake.atomic import atomic_write_bytes
from data_lake.calendar import CALENDAR_START, nyse
from research.params import ParamsFile

from .evening_plan import NightlyJob, Plan, SessionCheck, notebook_defaults, plan, session_check  # noqa: F401 - the job's API
from .jobs import JobError, JobFailed, job_lock, new_run_dir

log = logging.getLogger(__name__)

JOB = "evening"
#: Every step, in order, with the steps whose success it needs.
NEEDS = {"ingest": (), "regimes": ("ingest",), "nightly": ("ingest", "regimes"), "report": ()}
#: Sessions before today fetched again for symbols the lake holds: a bar the feed was late with.
REFILL_SESSIONS = 5
#: History fetched for a symbol the lake does not hold yet, unless ``since`` says otherwise.
NEW_SYMBOL_YEARS = 10


class EveningRefused(LakeError):
    """Today's session has not closed yet (the CLI exits 2)."""


class Skipped(Exception):
    """A step with nothing to do; the message says why."""


class StepFailed(Exception):
    """A step failed with a message already fit for status.json (one line, no keys)."""


# -------------------------------------------------------------------------------- settings, result
@dataclass(frozen=True)
class Settings:
    """One evening's inputs, read at the edge (the CLI); ``keys`` is only called when bars are due."""

    now: datetime  # timezone-aware: the clock, or a test's
    lake: Path
    params_path: Path  # the params in force (the nightly installs <its folder>/current.json)
    nightly: NightlyJob
    keys: Callable[[], tuple[str, str]] = field(repr=False)
    state_dir: Path = Path("runs/live")
    url: str | None = None  # Alpaca market-data URL override (the simulator)
    feed: str = "iex"
    adjustment: str = "raw"  # for symbols the lake does not hold yet; held ones keep theirs
    since: date | None = None  # first date of a symbol the lake does not hold yet
    force: bool = False  # run before the close
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)  # for the alert notifier
    requests_per_minute: int = 190
    retry_wait_seconds: float = 3.0


@dataclass
class Step:
    """One step's outcome: ``ok`` is None when it was skipped."""

    name: str
    ok: bool | None
    skipped: bool
    seconds: float
    message: str


@dataclass
class EveningResult:
    """What the evening did; ``exit_code`` 0 (ok or nothing to do) or 1 (a step failed)."""

    day: date
    kind: str
    ok: bool
    exit_code: int
    steps: list[Step]
    run_dir: Path
    message: str = ""
    alert: str | None = None


# -------------------------------------------------------------------------------- the run
@dataclass
class _Ctx:
    settings: Settings
    check: SessionCheck
    lake: Lake
    plan: Plan
    run_dir: Path
    keys: tuple[str, str] = field(repr=False)
    t0: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        """The evening's clock: its ``now`` plus the time the run has taken."""
        return self.settings.now + timedelta(seconds=time.monotonic() - self.t0)


def load_params(path: Path) -> ParamsFile | None:
    """The params in force, None when there is no file; LakeError for a file that does not validate."""
    from research.params import load

    if not path.exists():
        return None
    try:
        return load(path)
    except (ValueError, OSError) as exc:
        raise LakeError(f"{path}: {exc}") from None


def run_evening(settings: Settings, on_step: Callable[[Step], None] | None = None) -> EveningResult:
    """Run the evening job; raise EveningRefused before the close, LakeError for bad input, JobLocked."""
    if settings.now.tzinfo is None:
        raise LakeError("the evening's time must be timezone-aware")
    check, started = session_check(settings.now), settings.now.astimezone(UTC)
    runs = settings.nightly.config.runs_dir.resolve()  # beside the nightly's run folders and lock
    if check.kind != "session":
        with job_lock(runs, JOB, started):
            record = _Record(settings, check, started, new_run_dir(runs, JOB, started, check.day))
            message = f"{check.day} is not an NYSE session ({check.kind}): nothing to do"
            return record.finish(message)
    if not check.closed(settings.now) and not settings.force:
        half = " (half day)" if check.half_day else ""
        raise EveningRefused(f"the {check.day} session closes at {check.close_et}{half}; run after the close")
    the_plan = plan(load_params(settings.params_path), settings.nightly.parameters())
    keys = settings.keys()  # LakeError (exit 2) before anything is written
    with job_lock(runs, JOB, started):
        run_dir = new_run_dir(runs, JOB, started, check.day)
        ctx = _Ctx(settings, check, Lake(settings.lake), the_plan, run_dir, keys)
        record = _Record(settings, check, started, run_dir, the_plan)
        blocked: set[str] = set()  # failed, or skipped because a step they need did not succeed
        for name, fn in (("ingest", _ingest), ("regimes", _regimes), ("nightly", _nightly),
                         ("report", _daily_report)):
            waiting = [d for d in NEEDS[name] if d in blocked]
            step = (Step(name, None, True, 0.0, f"skipped: {', '.join(waiting)} did not succeed") if waiting
                    else _run_step(ctx, name, fn))
            if waiting or step.ok is False:
                blocked.add(name)
            record.add(step)
            if on_step is not None:
                on_step(step)
        result = record.finish()
        if not result.ok:
            result.alert = _alert(result, blocked, settings.environ)
            record.write(alert=result.alert)
        return result


def _alert(result: EveningResult, blocked: set[str], environ: Mapping[str, str]) -> str:
    """The critical alert of a failed evening: what failed, what it skipped, where to look."""
    failed = [s.name for s in result.steps if s.ok is False]
    text = "; ".join(f"{s.name} failed: {s.message}" for s in result.steps if s.ok is False)[:800]
    skipped = [name for name in NEEDS if name in blocked and name not in failed]
    text += f"; skipped {', '.join(skipped)}" if skipped else ""
    extra = {"job": JOB, "date": str(result.day), "failed": failed, "run_dir": str(result.run_dir)}
    return send_alert(f"evening {result.day}: {text}; run folder {result.run_dir}", extra, environ)


def _run_step(ctx: _Ctx, name: str, fn: Callable[[_Ctx], str]) -> Step:
    """Time one step and turn its outcome (a message, Skipped, an exception) into a Step."""
    t0 = time.monotonic()
    ok, skipped = True, False
    try:
        message = fn(ctx)
    except Skipped as exc:
        ok, skipped, message = None, True, f"skipped: {exc}"
    except (StepFailed, LakeError) as exc:
        ok, message = False, str(exc)
    except Exception as exc:  # noqa: BLE001 - a step's bug must not stop the steps that do not need it
        ok = False
        tb = ctx.run_dir / f"{name}.traceback.txt"
        atomic_write_bytes(_scrub(traceback.format_exc(), ctx.keys).encode(), tb)
        message = f"{type(exc).__name__}: {exc} (traceback in {tb.name})"
    message = " ".join(_scrub(message, ctx.keys).split())
    return Step(name, ok, skipped, round(time.monotonic() - t0, 3), message)


def _ingest(ctx: _Ctx) -> str:
    """Fetch what the lake lacks up to today, per timeframe, symbols grouped by where they start."""
    from data_lake.sources.alpaca import ingest_alpaca

    if not ctx.plan.bars:
        raise Skipped("no symbols in the params in force or the nightly's parameters")
    s, day = nyse(), ctx.check.day
    today = int(s.dates.searchsorted(pd.Timestamp(day)))
    since = ctx.settings.since or max(date.fromisoformat(CALENDAR_START),
                                      date(day.year - NEW_SYMBOL_YEARS, day.month, min(day.day, 28)))
    parts = []
    for timeframe, symbols in ctx.plan.bars.items():
        groups: dict[tuple[date, str], list[str]] = {}
        for sym in symbols:
            held = ctx.lake.covered_sessions(sym, timeframe)
            if len(held):
                start = s.dates[min(int(held[-1]), max(today - REFILL_SESSIONS, 0))].date()
                adjustment = ctx.lake.adjustment_of(sym, timeframe) or ctx.settings.adjustment
            else:
                start, adjustment = since, ctx.settings.adjustment
            groups.setdefault((start, adjustment), []).append(sym)
        written = requests = 0
        for (start, adjustment), group in sorted(groups.items()):
            result = ingest_alpaca(ctx.lake, group, timeframe, start, day, feed=ctx.settings.feed,
                                   adjustment=adjustment, api_key=ctx.keys[0], secret_key=ctx.keys[1],
                                   url=ctx.settings.url, requests_per_minute=ctx.settings.requests_per_minute,
                                   retry_wait_seconds=ctx.settings.retry_wait_seconds)
            written, requests = written + result.rows_written, requests + result.requests
        parts.append(f"{timeframe}: {len(symbols)} symbols, {written} bars written, {requests} requests")
    return "; ".join(parts)


def _regimes(ctx: _Ctx) -> str:
    """Recompute and store the regimes of every benchmark, through the new close."""
    from research.regimes import regimes_from_daily, save_regimes

    if not ctx.plan.regimes:
        raise Skipped("no benchmark in the params in force or the nightly's parameters")
    params, parts = ctx.plan.regime_params, []  # the params in force's definition (else the nightly's)
    for sym in ctx.plan.regimes:
        bars = ctx.lake.load_arrays(sym, "1Day")
        if len(bars["ts"]) < 2:
            raise LakeError(f"regimes need {sym} 1Day bars in the lake, and it holds {len(bars['ts'])}")
        try:
            frame = regimes_from_daily(*(bars[c] for c in ("ts", "open", "high", "low", "close")), params)
        except ValueError as exc:
            raise LakeError(f"{sym}: {exc}") from None
        save_regimes(ctx.lake, sym, frame, params)
        last = frame.iloc[-1]
        parts.append(f"{sym}: next session {last['session'].date()} {last['label']}")
    return "; ".join(parts)


def _nightly(ctx: _Ctx) -> str:
    """The nightly job under its own lock; its install step runs only after the notebook succeeded."""
    from .jobs import run_job

    job, installed = ctx.settings.nightly, []
    hook = None if job.install is None else (lambda run_dir: installed.append(job.install(run_dir)))
    try:
        result = run_job(job.config, "nightly", overrides=job.overrides, on_success=hook, now=ctx.now(),
                         progress_bar=False)
    except JobFailed as exc:
        raise StepFailed(f"{exc}; run folder {exc.result.run_dir}") from None
    except JobError as exc:  # another nightly holds its lock, or a config run_job refuses
        raise StepFailed(str(exc)) from None
    return "; ".join([f"run folder {result.run_dir}", *installed])


def _daily_report(ctx: _Ctx) -> str:
    """The live report of the day (``live_bridge.shadow.run_for_day``): the day's live fills against
    the shadow backtest of what the runner traded; a divergence is alerted."""
    db = ctx.settings.state_dir / "state.db"
    if not db.exists():
        raise Skipped(f"no live state ({db} does not exist)")
    from live_bridge.shadow import NotTrading, run_for_day

    try:
        report, html, js = run_for_day(ctx.lake, ctx.settings.state_dir.resolve(), ctx.settings.params_path.resolve(),
                                       ctx.check.day, ctx.run_dir)
    except NotTrading as exc:  # no anchor or params stored yet: the runner never traded
        raise Skipped(str(exc)) from None
    except ValueError as exc:  # a damaged store: a failure a person must see
        raise StepFailed(str(exc)) from None
    if not report.ok:
        send_alert(report.summary[0], {"job": JOB, "date": str(ctx.check.day), "report": str(js)},
                   ctx.settings.environ, kind="divergence", severity="warning")
        return f"DIVERGED: {report.summary[0]} (alerted); report -> {html}"
    return f"{report.summary[0]}; report -> {html}"


def send_alert(message: str, extra: Mapping[str, Any], environ: Mapping[str, str], *, kind: str = "job_failed",
               severity: str = "critical") -> str:
    """An alert (default: a critical ``job_failed``) via ``live_bridge.alerts``, else a logged warning."""
    from live_bridge import alerts

    try:
        notifier = alerts.from_env(environ)
        try:
            notifier.notify(alerts.Alert(kind, message, severity=severity, extra=dict(extra)))
        finally:
            notifier.close(10.0)
    except Exception as exc:  # noqa: BLE001 - a broken notifier must not hide the failure itself
        log.warning("ALERT job_failed (critical; the notifier failed: %s): %s", type(exc).__name__, message)
        return f"notifier failed: {type(exc).__name__}"
    return "sent"


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if len(s) >= 8:  # Alpaca's are 20 and 40 characters; a toy key like "k" would eat the text
            text = text.replace(s, "***")
    return text


# -------------------------------------------------------------------------------- the record
def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Record:
    """``status.json`` of one evening, rewritten atomically after every step (``ok`` null until it ends)."""

    def __init__(self, settings: Settings, check: SessionCheck, started: datetime, run_dir: Path,
                 the_plan: Plan | None = None) -> None:
        self.check, self.started, self.run_dir, self.t0 = check, started, run_dir, time.monotonic()
        self.steps: list[Step] = []
        session = None if check.close is None else {
            "open": _iso(check.open), "close": _iso(check.close), "half_day": check.half_day}
        self.data: dict[str, Any] = {
            "job": JOB, "date": check.day.isoformat(), "kind": check.kind, "ok": None, "exit_code": None,
            "started": _iso(started), "ended": None, "duration_s": None, "pid": os.getpid(),
            "session": session,
            "forced": settings.force, "lake": str(settings.lake.resolve()),
            "params": str(settings.params_path.resolve()), "message": None,
            "symbols": None if the_plan is None else {tf: list(s) for tf, s in the_plan.bars.items()},
            "regimes": None if the_plan is None else list(the_plan.regimes),
            "steps": [], "failed_steps": [], "alert": None}
        self.write()

    def write(self, **update: Any) -> None:
        self.data.update(update)
        atomic_write_bytes((json.dumps(self.data, indent=2, default=str) + "\n").encode(),
                           self.run_dir / "status.json")

    def add(self, step: Step) -> None:
        self.steps.append(step)
        self.write(steps=[asdict(s) for s in self.steps],
                   failed_steps=[s.name for s in self.steps if s.ok is False])

    def finish(self, message: str = "") -> EveningResult:
        ok = not self.data["failed_steps"]
        duration = time.monotonic() - self.t0
        self.write(ok=ok, exit_code=0 if ok else 1, duration_s=round(duration, 3), message=message or None,
                   ended=_iso(self.started + timedelta(seconds=duration)))
        return EveningResult(self.check.day, self.check.kind, ok, 0 if ok else 1, self.steps, self.run_dir,
                             message)
