"""The promotion gate: which of tonight's chosen params may replace the ones in force.

A sweep always finds a "best" combination; most of them are luck. A candidate entry (one
strategy x symbol x regime) is promoted only if its out-of-sample record and its overfitting
guards clear every threshold in ``GateThresholds``. A missing figure (no walk-forward, too few
bars for PBO) fails its rule: the gate never passes on absent evidence.

``decide`` turns the candidates, one per (symbol, regime) cell (the account holds one position
per symbol, so a night that sweeps several strategies sends one per cell: ``research.sweep.across``),
into the entries of the next params file: passing candidates become active; a failing one keeps the
previous file's active entry for its cell, whatever its strategy (if that entry still clears
today's thresholds on its own evidence and its strategy is among the run's), else it is written as
explicitly flat, so the live bridge never has to guess. Either way one entry per cell: never two
strategies active in one cell. The file is promoted when at least one candidate passed;
otherwise the job files it in history as rejected (``pipeline.params_store.install``) and leaves
``current.json`` untouched.

The threshold and verdict models are the params file's (``research.params``: the gate's vocabulary
is part of the file); this module applies them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence

from .params import Entry, EntryVerdict, GateThresholds, ParamsFile, Verdict, key_text


def _num(v: float) -> str:
    """A figure as people read it: 0.81, 12, -0.0312 (4 significant digits, no float noise)."""
    return f"{v:.4g}"


def _missing(v: float | None) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def evaluate(candidate: Entry, thresholds: GateThresholds = GateThresholds()) -> EntryVerdict:
    """Check one candidate against every rule; one specific reason per failed rule."""
    t = thresholds
    reasons: list[str] = []
    if candidate.status == "flat":  # nothing to judge: the other rules would only say "missing"
        return EntryVerdict(passed=False, reasons=("status flat: no combination had enough trades to choose",))
    oos = candidate.out_of_sample
    if oos is None:
        reasons.append("oos_sharpe missing: no out-of-sample metrics (no walk-forward?)")
    elif _missing(oos.sharpe):
        reasons.append("oos_sharpe missing: undefined out of sample (too few bars or no variance)")
    elif not oos.sharpe > t.min_oos_sharpe:
        reasons.append(f"oos_sharpe {_num(oos.sharpe)} <= {_num(t.min_oos_sharpe)}")
    dsr = candidate.deflated_sharpe
    if _missing(dsr):
        reasons.append("deflated_sharpe missing: not computed (no walk-forward or too few bars)")
    elif dsr < t.min_deflated_sharpe:
        reasons.append(f"deflated_sharpe {_num(dsr)} < {_num(t.min_deflated_sharpe)}")
    if _missing(candidate.pbo):
        reasons.append("pbo missing: not computed (too few bars or trials)")
    elif candidate.pbo > t.max_pbo:
        reasons.append(f"pbo {_num(candidate.pbo)} > {_num(t.max_pbo)}")
    if candidate.oos_trades < t.min_oos_trades:
        reasons.append(f"oos_trades {candidate.oos_trades} < {t.min_oos_trades}")
    if _missing(candidate.stability):
        reasons.append("stability missing: not computed (one-point grid or no neighbour values)")
    elif candidate.stability < t.min_stability:
        reasons.append(f"stability {_num(candidate.stability)} < {_num(t.min_stability)}")
    return EntryVerdict(passed=not reasons, reasons=tuple(reasons))


def decide(candidates: Sequence[Entry], previous: ParamsFile | None,
           thresholds: GateThresholds = GateThresholds(), *, strategies: Collection[str] | None = None,
           selection: Sequence[str] = ()) -> tuple[tuple[Entry, ...], Verdict]:
    """The entries of the next params file and its verdict (see the module docstring).

    One candidate per (symbol, regime) cell (ValueError otherwise: choose among strategies first,
    ``research.sweep.across``). A failing candidate keeps the previous file's active entry of its
    cell whatever that entry's strategy, if the strategy is among ``strategies`` (the run's; None:
    any) and the entry passes today's gate. Output order follows the candidates, one entry per
    cell. Keys of the previous file neither among the candidates nor named in a cell's reason are
    dropped (the run defines the universe; an absent key means "do not trade"), and a reason says
    so. ``selection``: lines on how the candidates were chosen, appended to the verdict's reasons.
    """
    if not candidates:
        raise ValueError("decide() needs at least one candidate entry")
    count = Counter((c.symbol, c.regime) for c in candidates)
    dupes = [f"{s} {r} ({', '.join(c.strategy for c in candidates if (c.symbol, c.regime) == (s, r))})"
             for (s, r), n in count.items() if n > 1]
    if dupes:
        raise ValueError(f"more than one candidate for {'; '.join(dupes)}: one strategy per (symbol, regime) "
                         "(choose among strategies first: research.sweep.across.pick_strategies)")
    old = {e.key: e for e in previous.entries} if previous is not None else {}
    active = {(e.symbol, e.regime): e for e in old.values() if e.status == "active"}
    entries: list[Entry] = []
    notes: list[str] = []
    named: set[tuple[str, str, str]] = set()  # previous keys of other strategies a reason names
    for cand in candidates:
        verdict = evaluate(cand, thresholds)
        failed = "; ".join(verdict.reasons)
        prev = active.get((cand.symbol, cand.regime)) or old.get(cand.key)
        other = prev is not None and prev.strategy != cand.strategy  # only an active one
        if other:
            named.add(prev.key)
        if verdict.passed:
            entries.append(cand.model_copy(update={"status": "active", "gate": verdict, "source": "candidate"}))
            if other:
                notes.append(f"{key_text(cand.key)}: replaces {key_text(prev.key)} (active in the previous file)")
            continue
        in_run = prev is not None and (strategies is None or prev.strategy in strategies)
        if in_run and prev.status == "active" and evaluate(prev, thresholds).passed:
            entries.append(prev.model_copy(update={"source": "kept"}))
            was = f" ({key_text(prev.key)})" if other else ""
            notes.append(f"{key_text(cand.key)}: kept the previous entry{was}; candidate failed: {failed}")
            continue
        entries.append(cand.model_copy(update={"status": "flat", "gate": verdict, "source": "candidate"}))
        if prev is None:
            why = ""
        elif not in_run:
            why = f" (the previous entry {key_text(prev.key)} is of a strategy this run does not trade)"
        else:
            why = f" (the previous entry {key_text(prev.key)} fails today's gate)" if other else \
                " (the previous entry is flat or fails today's gate)"
        notes.append(f"{key_text(cand.key)}: flat{why}; candidate failed: {failed}")
    for k in sorted(old.keys() - {c.key for c in candidates} - named):
        notes.append(f"{key_text(k)}: in the previous file but not among the candidates: dropped")
    passed = sum(e.source == "candidate" and e.status == "active" for e in entries)
    head = (f"promoted: {passed} of {len(candidates)} candidates passed the gate" if passed
            else f"rejected: none of {len(candidates)} candidates passed the gate")
    verdict = Verdict(promoted=passed > 0, reasons=(head, *notes, *selection),
                      previous_sha256=previous.sha256() if previous is not None else None)
    return tuple(entries), verdict
