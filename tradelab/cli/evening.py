"""``tradelab evening``: the after-close job (ingest, regimes, nightly, live report) as one command.

Exit codes: 0 done (or not a session: nothing to do), 1 a step failed (the params in force are
untouched, an alert went out), 2 a bad option or config, or the session has not closed yet,
3 another evening holds the lock. The work itself is in ``tradelab/evening.py``; this module reads
the environment and the options, and prints. Scheduling recipes are in SCHEDULING.md.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from data_lake import LakeError

from .jobs import ConfigOpt, ParamOpt, _config, _error, _install, _overrides, _paths
from .live import STATE_DIR, _keys
from .ui import out, print_frame, user_errors

Opt = typer.Option
NowOpt = Annotated[str | None, Opt("--now", metavar="ISO", help="Act as if it were this time (UTC unless it "
                                   "has an offset); default: the clock.")]
ForceOpt = Annotated[bool, Opt("--force", help="Run even though today's session has not closed yet.")]
ParamsFileOpt = Annotated[Path | None, Opt("--params", help="The params in force (default: "
                                           "<params_dir>/current.json, where the nightly installs).")]
StateOpt = Annotated[Path, Opt(help="The live runner's folder (its state.db feeds the daily report).")]
UrlOpt = Annotated[str | None, Opt(help="Alpaca market-data URL override, e.g. the simulator's "
                                   "(or TRADELAB_ALPACA_DATA_URL).")]
FeedOpt = Annotated[str, Opt(help="iex (free) or sip.")]
AdjustmentOpt = Annotated[str, Opt(help="Adjustment of symbols new to the lake (held ones keep theirs).")]
SinceOpt = Annotated[str | None, Opt(help="First date fetched for a symbol new to the lake "
                                     "(default: 10 years back).")]
LakePathOpt = Annotated[Path | None, Opt("--lake", envvar="TRADELAB_LAKE", help="Lake root folder (or "
                                         "TRADELAB_LAKE; default: the nightly's lake parameter, "
                                         "else ./lake).")]


@user_errors
def evening(now: NowOpt = None, force: ForceOpt = False, config: ConfigOpt = None, param: ParamOpt = None,
            params: ParamsFileOpt = None, state_dir: StateOpt = STATE_DIR, url: UrlOpt = None,
            feed: FeedOpt = "iex", adjustment: AdjustmentOpt = "raw", since: SinceOpt = None,
            lake: LakePathOpt = None) -> None:
    """After the close: ingest the day's bars, recompute regimes, run the nightly, write the live report."""
    from tradelab import evening as ev
    from tradelab.jobs import JobLocked

    settings = _settings(now, force, config, param or [], params, state_dir, url, feed, adjustment, since,
                         lake)
    try:
        result = ev.run_evening(settings, on_step=_print_step if sys.stdout.isatty() else None)
    except JobLocked as exc:
        _error(str(exc))
        raise typer.Exit(3) from None
    except OSError as exc:  # the runs folder cannot be made or written
        raise LakeError(f"{exc.filename or 'runs'}: {exc.strerror or exc}") from None
    if result.kind != "session":
        out.print(result.message, highlight=False, soft_wrap=True)
    else:
        frame = pd.DataFrame([{"step": s.name, "ok": _mark(s.ok), "seconds": s.seconds, "message": s.message}
                              for s in result.steps])
        print_frame(frame, title=f"evening {result.day} ({'ok' if result.ok else 'FAILED'})")
    out.print(f"status -> {result.run_dir / 'status.json'}", highlight=False, soft_wrap=True)
    if not result.ok:
        _error(f"evening {result.day}: {', '.join(s.name for s in result.steps if s.ok is False)} failed; "
               f"alert {result.alert}; run folder {result.run_dir}")
        raise typer.Exit(result.exit_code)


def _settings(now: str | None, force: bool, config: Path | None, param: list[str], params: Path | None,
              state_dir: Path, url: str | None, feed: str, adjustment: str, since: str | None,
              lake: Path | None):
    """Check every option and the nightly's config, and read the environment: the evening's Settings."""
    from tradelab import evening as ev
    from tradelab.jobs import JobConfigError

    if feed not in ("iex", "sip"):
        raise LakeError(f"unknown feed {feed!r}: use iex or sip")
    if adjustment not in ("raw", "split", "dividend", "all"):
        raise LakeError(f"unknown adjustment {adjustment!r}: use raw, split, dividend or all")
    clock, first = _now(now), _date(since, "--since") if since else None
    try:
        cfg = _config(config, "nightly")
        overrides = _overrides(param)
    except JobConfigError as exc:
        raise LakeError(str(exc)) from None
    given = {**cfg.parameters, **overrides}
    lake_path = _same_path(lake, given.get("lake"), "--lake", "lake") or Path("lake")
    params_path = _params_path(params, given.get("params_dir"))
    for path, name in ((lake_path, "lake"), (params_path.parent, "params folder"), (cfg.runs_dir, "runs")):
        _writable_folder(path, name)
    overrides.update(lake=str(lake_path), params_dir=str(params_path.parent))
    overrides = _paths("nightly", cfg.parameters, overrides)  # absolute, as tradelab nightly passes them
    params_dir = Path(overrides["params_dir"])
    return ev.Settings(
        now=clock, lake=lake_path, params_path=params_path,
        nightly=ev.NightlyJob(cfg, overrides, lambda run_dir: _install(run_dir, params_dir)),
        keys=_keys, state_dir=state_dir, url=url or os.environ.get("TRADELAB_ALPACA_DATA_URL") or None,
        feed=feed, adjustment=adjustment, since=first, force=force, environ=dict(os.environ))


def _print_step(step: Any) -> None:
    out.print(f"{step.name}: {_mark(step.ok)} in {step.seconds:.1f}s: {step.message}", markup=False,
              highlight=False, soft_wrap=True)


def _mark(ok: bool | None) -> str:
    return "skipped" if ok is None else "ok" if ok else "FAILED"


def _now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise LakeError(f"--now {text!r} is not a time (ISO 8601, e.g. 2024-07-03T17:05:00Z)") from None
    if ts is pd.NaT:
        raise LakeError(f"--now {text!r} is not a time")
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts).to_pydatetime()


def _date(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise LakeError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None


def _same_path(option: Path | None, parameter: object, opt_name: str, param_name: str) -> Path | None:
    """The option if given, else the nightly's parameter; both given and different is an error."""
    if parameter is not None and not isinstance(parameter, str):
        raise LakeError(f"nightly parameter {param_name} must be a path, got {parameter!r}")
    if option is not None and parameter and Path(option).resolve() != Path(parameter).resolve():
        raise LakeError(f"{opt_name} {option} and the nightly's {param_name}={parameter} differ: "
                        "the evening and its nightly must use the same one")
    return option if option is not None else (Path(parameter) if parameter else None)


def _params_path(option: Path | None, params_dir: object) -> Path:
    """The params in force: the file the nightly installs, <params_dir>/current.json."""
    if option is not None and option.name != "current.json":
        raise LakeError(f"--params {option}: the nightly installs <folder>/current.json; name that file")
    given = None if option is None else option.parent
    folder = _same_path(given, params_dir, "--params folder", "params_dir")
    return (folder or Path("params")) / "current.json"


def _writable_folder(path: Path, name: str) -> None:
    """Refuse a folder that is a file, or lies under one, before anything runs."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise LakeError(f"{name} {path}: {p} is a file, not a folder")
            return
