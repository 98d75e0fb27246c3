"""What a person needs from one night, first: the verdict, what trades, the near misses, the target.

``summarize`` turns a ``NightlyResult`` into a ``NightlySummary``, a small typed, frozen, versioned
artefact the notebook writes next to the report (``summary.json``). The HTML report opens with it
(``pipeline.nightly_report``) and ``tradelab nightly`` prints ``summary_lines`` of the file after
the run, so the page and the cron log are the same numbers from the same function and cannot
disagree. It holds only figures from the params file and the walk-forward: never a notebook
parameter, so no credential can reach it.

Counts are over the params file's entries (one per strategy x symbol x regime). The near misses are
per cell (symbol, regime): a cell with an active entry has no near miss, whatever its other
strategies did; a cell without one shows its best candidate (fewest failed rules, then the highest
out-of-sample Sharpe) with the rules it failed. The return target is out of sample only: the
walk-forward of each (strategy, symbol) over all sessions, never tuned toward the goal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from data_lake.atomic import atomic_write_bytes
from research.params import Entry, ParamsFile

if TYPE_CHECKING:
    from .nightly import NightlyResult

TARGET_DAILY = (0.005, 0.01)  # the users' stated goal: 0.5-1% a day (STRATEGY_DEFAULTS.md)
TOP = 5  # near misses listed (the page's per-entry table has them all)
NO_TRADES = "status flat"  # the gate's reason prefix for an entry with no eligible combination
SUMMARY_FILE = "summary.json"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Line(_Model):
    """One entry as the summary names it: ``MSFT up_low sma_cross(fast=10 slow=50)``."""

    symbol: str
    regime: str
    strategy: str
    params: str
    oos_sharpe: float | None
    source: Literal["candidate", "kept"] = "candidate"
    failed: tuple[str, ...] = ()  # the gate's failed rules, exactly as the gate wrote them

    def text(self) -> str:
        """The entry's name, then its evidence or the rules it failed."""
        name = f"{self.symbol} {self.regime} {self.strategy}({self.params})"
        if self.failed:
            return f"{name}: {'; '.join(self.failed)}"
        sharpe = "n/a" if self.oos_sharpe is None else f"{self.oos_sharpe:.2f}"
        return f"{name}: OOS Sharpe {sharpe}" + (" (kept from the params in force)" if self.source == "kept" else "")


class TargetRow(_Model):
    """One (strategy, symbol)'s walk-forward mean return per session, against the daily goal."""

    strategy: str
    symbol: str
    sessions: int
    mean_per_session: float  # a fraction: 0.001 = 0.1%

    @property
    def reached(self) -> bool:
        return self.mean_per_session >= TARGET_DAILY[0]


class NightlySummary(_Model):
    """The night at a glance; see the module docstring. ``params_sha256`` names the params file it summarizes."""

    schema_version: Literal[1] = 1
    created_at: AwareDatetime
    params_sha256: str
    promoted: bool
    previous_sha256: str | None  # the params in force the night was decided against (None: there were none)
    verdict: str  # the verdict's first reason: how many candidates passed
    gate: str  # the rules every candidate is held to
    entries: int
    active: int
    kept: int  # active entries kept from the params in force (their candidate failed)
    flat: int
    flat_no_trades: int  # flat because no combination had enough trades (the rest failed the gate)
    passed: tuple[Line, ...]
    near_misses: tuple[Line, ...]  # the best TOP cells without an active entry
    failed_cells: int  # every (symbol, regime) without an active entry but with a candidate to judge
    target: tuple[TargetRow, ...]


def gate_text(pf: ParamsFile) -> str:
    """The promotion rules in one line."""
    g = pf.gate
    return (f"OOS Sharpe > {g.min_oos_sharpe:g}, deflated Sharpe >= {g.min_deflated_sharpe:g}, PBO <= {g.max_pbo:g}, "
            f">= {g.min_oos_trades} OOS trades, stability >= {g.min_stability:g}")


def no_trades(e: Entry) -> bool:
    """Flat because nothing was eligible (not because the gate said no)."""
    return e.status == "flat" and any(r.startswith(NO_TRADES) for r in e.gate.reasons)


def summarize(result: NightlyResult) -> NightlySummary:
    """The summary of one night: its params file and its walk-forward record against the target."""
    return summarize_params(result.params, target_rows(result))


def summarize_params(pf: ParamsFile, target: Iterable[TargetRow] = ()) -> NightlySummary:
    """The summary of a params file (``target``: the walk-forward rows, which the file does not hold)."""
    active = [e for e in pf.entries if e.status == "active"]
    flat = [e for e in pf.entries if e.status == "flat"]
    covered = {(e.symbol, e.regime) for e in active}
    cells: dict[tuple[str, str], list[Entry]] = {}
    for e in flat:
        if (e.symbol, e.regime) not in covered and not no_trades(e):
            cells.setdefault((e.symbol, e.regime), []).append(e)
    best = sorted((min(es, key=_closeness) for es in cells.values()), key=_closeness)
    return NightlySummary(
        created_at=pf.created_at, params_sha256=pf.sha256(), promoted=pf.verdict.promoted,
        previous_sha256=pf.verdict.previous_sha256, verdict=pf.verdict.reasons[0] if pf.verdict.reasons else "", gate=gate_text(pf), entries=len(pf.entries),
        active=len(active), kept=sum(e.source == "kept" for e in active), flat=len(flat),
        flat_no_trades=sum(no_trades(e) for e in flat), passed=tuple(_line(e) for e in active),
        near_misses=tuple(_line(e, failed=True) for e in best[:TOP]), failed_cells=len(cells), target=tuple(target))


def _closeness(e: Entry) -> tuple[int, float, str]:
    """Fewest failed rules first, then the best out-of-sample Sharpe (a missing one last); stable by name."""
    sharpe = e.out_of_sample.sharpe if e.out_of_sample is not None else None
    ok = sharpe is not None and math.isfinite(sharpe)
    return len(e.gate.reasons), -sharpe if ok else math.inf, f"{e.symbol} {e.regime} {e.strategy}"


def _line(e: Entry, failed: bool = False) -> Line:
    sharpe = e.out_of_sample.sharpe if e.out_of_sample is not None else None
    return Line(symbol=e.symbol, regime=e.regime, strategy=e.strategy, source=e.source,
                params=" ".join(f"{k}={v}" for k, v in e.params.items()),
                oos_sharpe=sharpe if sharpe is not None and math.isfinite(sharpe) else None,
                failed=tuple(e.gate.reasons) if failed else ())


def target_rows(result: NightlyResult) -> tuple[TargetRow, ...]:
    """Each (strategy, symbol)'s walk-forward (all sessions) mean return per New York session."""
    rows = []
    for run in result.all_runs:  # a swept pair's or basket's row is named by it, "MSFT/IBM", "AAPL,MSFT/IBM"
        for c in run.choices:
            if c.regime != "all" or c.oos_returns is None or not len(c.oos_returns):
                continue
            daily = (1 + c.oos_returns).groupby(c.oos_returns.index.tz_convert("America/New_York").date).prod() - 1
            rows.append(TargetRow(strategy=run.strategy, symbol=c.symbol, sessions=len(daily),
                                  mean_per_session=float(daily.mean())))
    return tuple(rows)


def summary_lines(s: NightlySummary) -> list[str]:
    """The summary as a few plain lines (the console's, and the report's opening paragraphs)."""
    head = s.verdict.split(": ", 1)[1] if s.verdict.startswith(("promoted: ", "rejected: ")) else s.verdict
    outcome = ("PROMOTED" if s.promoted else "REJECTED, the params in force stay" if s.previous_sha256
               else "REJECTED, nothing was in force: flat everywhere")
    lines = [f"verdict: {outcome} ({head})",
             f"gate: {s.gate}",
             f"entries: {s.entries}: {s.active} active ({s.kept} kept from the params in force), {s.flat} flat "
             f"({s.flat - s.flat_no_trades} failed the gate, {s.flat_no_trades} had no combination with enough trades)"]
    lines += [f"  active: {p.text()}" for p in s.passed]
    if s.near_misses:
        more = s.failed_cells - len(s.near_misses)
        rest = f"; {more} more in the report's entry table" if more > 0 else ""
        lines.append(f"best candidates that failed the gate ({len(s.near_misses)} of {s.failed_cells} cells{rest}):")
        lines += [f"  {m.text()}" for m in s.near_misses]
    lines.append(target_line(s))
    return lines


def target_line(s: NightlySummary) -> str:
    """The out-of-sample record against the 0.5-1%/day goal, in one line."""
    goal = f"{100 * TARGET_DAILY[0]:g}-{100 * TARGET_DAILY[1]:g}%/day goal"
    if not s.target:
        return f"out of sample vs the {goal}: no walk-forward record"
    reached = sum(t.reached for t in s.target)
    best = max(s.target, key=lambda t: t.mean_per_session)
    return (f"out of sample vs the {goal}: {reached} of {len(s.target)} (strategy, symbol) reached it; best "
            f"{best.symbol} {best.strategy} {100 * best.mean_per_session:+.3f}%/session over {best.sessions} sessions")


def write_summary(s: NightlySummary, path: str | Path) -> Path:
    """Write the summary as JSON, atomically; return the path."""
    path = Path(path)
    atomic_write_bytes((s.model_dump_json(indent=2) + "\n").encode(), path)
    return path


def load_summary(path: str | Path) -> NightlySummary:
    """Read and validate a ``summary.json``; ValueError names the file if it is not one."""
    try:
        return NightlySummary.model_validate_json(Path(path).read_bytes())
    except ValidationError as exc:
        raise ValueError(f"{path}: not a nightly summary ({exc.error_count()} problems, first: "
                         f"{exc.errors()[0]['msg']})") from None

