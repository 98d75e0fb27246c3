"""The nightly optimization as plain functions; the notebooks call them and show what they return.

One night = refresh the regime labels, then per strategy a per-regime walk-forward sweep on the
lookback window (``pipeline.sweep``), the choice and its guards per (symbol, regime)
(``research.sweep.select``), then per (symbol, regime) the one strategy whose choice goes forward
(``research.sweep.across``: the best out-of-sample objective; deflated Sharpe over every strategy's
trials), its candidate entry, and the promotion gate against the params in force, cell by cell
(``research.promotion``). The strategies not chosen get no entry; the verdict names them. Swept
pairs (``pairs``, "Y/X") and rotation baskets (``rotation``, "A,B,C/BENCH") are candidates too, one
cell (pair or basket, "all") each (``pipeline.nightly_pairs``, ``pipeline.nightly_rotation``).
The result is a typed ``ParamsFile`` candidate with provenance;
installing it as ``params/current.json`` is the job runner's last step (``tradelab nightly``), so a
run that fails anywhere, or that the gate rejects, leaves the params in force untouched.

Sweeps are resumed, not redone: a sweep's id hashes its spec and the exact bars, so a rerun on
the same data reuses the chunks already in the lake's ``sweeps`` table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from data_lake import Lake
from research import baskets
from research.exits import ExitRules
from research.params import DataWindow, Entry, ExitRulesModel, GateThresholds, Metrics, ParamsFile, RunInfo
from research.params import RegimeDefinition, SelectionInfo
from research.params import load as load_params
from research.promotion import decide
from research.regimes import RegimeParams, default_scheme, load_regimes, params_hash, regimes_from_daily
from research.regimes import save_regimes
from research.signals import get
from research.sweep.across import pick_strategies
from research.sweep.chunks import load_symbol
from research.sweep.plan import SweepSpec, bars_hash
from research.sweep.select import Choice, choose
from research.walkforward import parse_span

from .nightly_pairs import PairsRun, check_pairs, pair_entry, parse_pair, sweep_pairs_night
from .nightly_rotation import RotationRun, check_rotation, parse_basket, sweep_rotation_night
from .params_store import code_version
from .sweep import run_sweep

Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class NightlyConfig:
    """What one night optimizes. ``grids`` overrides a strategy's default grid (``STRATEGY.grid``)."""

    symbols: tuple[str, ...]
    strategies: tuple[str, ...] = ("sma_cross",)
    grids: Mapping[str, Mapping[str, tuple]] = field(default_factory=dict)
    timeframe: str = "1Day"
    lookback: str | None = "10y"
    end: str | None = None
    walk_forward: str = "2y:6m"
    objective: str = "sharpe"
    min_trades: int = 5
    by_regime: bool = True
    benchmark: str | None = None  # None: each symbol's own regimes
    fees: float = 0.001
    slippage: float = 0.0005
    stop_loss: tuple[float, ...] = (0.01, 0.02)  # a stop on every position (traders' default 1-2%)
    take_profit: tuple[float, ...] = (0.0,)
    gate: GateThresholds = GateThresholds()
    regimes: RegimeParams | None = None  # None: default thresholds, the timeframe's default_scheme
    pairs: tuple[str, ...] = ()  # swept pairs "Y/X" (pipeline.nightly_pairs); legs never among `symbols`
    max_pvalue: float = 0.05  # a pair's Engle-Granger screen
    pairs_screen: str = "anchored"  # the screen's bars: "anchored" (from the first bar) or "rolling" (the window)
    rotation: tuple[str, ...] = ()  # swept rotation baskets "A,B,C/BENCH" (pipeline.nightly_rotation)

    def __post_init__(self) -> None:
        if not self.symbols or not self.strategies:
            raise ValueError("nightly needs at least one symbol and one strategy")
        if not 0.0 < self.max_pvalue <= 1.0:
            raise ValueError(f"max_pvalue must be in (0, 1], got {self.max_pvalue}")
        object.__setattr__(self, "pairs", tuple("/".join(parse_pair(p)) for p in self.pairs))
        check_pairs(self.pairs, self.symbols, self.strategies)
        object.__setattr__(self, "rotation", tuple(parse_basket(b) for b in self.rotation))
        check_rotation(self.rotation, self.symbols, self.strategies, self.pairs)
        if self.regimes is not None and not isinstance(self.regimes, RegimeParams):
            raise ValueError(f"regimes must be a research.regimes.RegimeParams or None, got {self.regimes!r}")
        for s in self.strategies:
            strat = get(s)
            if strat.kind != "single":
                raise ValueError(f"{s} is a {strat.kind} strategy: the sweeps run single-symbol strategies")
        for s, grid in self.grids.items():
            if s not in self.strategies and not ({"pairs": self.pairs, "rotation": self.rotation}.get(s)):
                raise ValueError(f"grids has an entry for {s!r}, which is not among the strategies")
            known = {f.name for f in fields(get(s).params)}
            for name in grid:
                if name not in known:
                    raise ValueError(f"grids.{s}.{name}: {s} has no parameter {name!r} (has: {', '.join(sorted(known))})")

    @property
    def regime_params(self) -> RegimeParams:
        """The regime definition of the night: ``regimes``, or the timeframe's default scheme."""
        return self.regimes if self.regimes is not None else RegimeParams(scheme=default_scheme(self.timeframe))

    def spec(self, strategy: str, start: str | None, end: str | None) -> SweepSpec:
        """The sweep of one strategy: its grid x the exit rules, long-only, per regime, walk-forward."""
        grid = self.grids.get(strategy) or get(strategy).grid
        rules = tuple(ExitRules(stop_loss=sl, take_profit=tp, allow_short=False)
                      for sl in self.stop_loss for tp in self.take_profit)
        fixed = (("short", False),) if "short" in {f.name for f in fields(get(strategy).params)} else ()
        return SweepSpec(strategy=strategy, symbols=self.symbols, timeframe=self.timeframe,
                         grid=tuple((k, tuple(v)) for k, v in grid.items()), rules=rules, fees=self.fees,
                         slippage=self.slippage, by_regime=self.by_regime, benchmark=self.benchmark,
                         walk_forward=self.walk_forward, start=start, end=end, params_fixed=fixed,
                         regime_hash=params_hash(self.regime_params) if self.by_regime else None)


@dataclass(frozen=True)
class StrategyRun:
    """One strategy's sweep rows and the choices made from them."""

    strategy: str
    spec: SweepSpec
    results: pd.DataFrame
    choices: tuple[Choice, ...]


@dataclass(frozen=True)
class NightlyResult:
    """Everything one night computed: sweeps, the candidate params file, the file it replaces."""

    runs: tuple[StrategyRun, ...]
    params: ParamsFile
    previous: ParamsFile | None
    regimes: Mapping[str, pd.DataFrame]
    pairs: tuple[PairsRun, ...] = ()
    rotation: tuple[RotationRun, ...] = ()

    @property
    def all_runs(self) -> tuple[StrategyRun | PairsRun | RotationRun, ...]:
        """The single-symbol strategies' runs, then one per swept pair, then one per swept basket."""
        return (*self.runs, *self.pairs, *self.rotation)


def window(lake: Lake, cfg: NightlyConfig) -> tuple[str | None, str | None]:
    """[start, end) dates of the bars used: ``lookback`` back from ``end`` (default: the last bar)."""
    if cfg.end:
        end = pd.Timestamp(cfg.end)
    else:
        last = max(int(lake.load_arrays(s, cfg.timeframe)["ts"][-1]) for s in cfg.symbols)
        end = pd.Timestamp(last, unit="us", tz="UTC").tz_convert("America/New_York").tz_localize(None).normalize() \
            + pd.Timedelta(days=1)
    if not cfg.lookback:
        return None, end.strftime("%Y-%m-%d")
    span = parse_span(cfg.lookback)
    if span.is_bars:
        raise ValueError(f"lookback {cfg.lookback!r}: use a calendar length (y, m, w, d)")
    months, days = span.months_days()
    start = end - pd.DateOffset(months=months, days=days)
    return start.strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d")


def refresh_regimes(lake: Lake, cfg: NightlyConfig,
                    params: RegimeParams | None = None) -> dict[str, pd.DataFrame]:
    """Recompute and store the regime labels of the benchmark (or of every symbol) from its 1Day bars,
    with ``cfg.regime_params`` (or ``params``)."""
    params, out = params or cfg.regime_params, {}
    for sym in ([cfg.benchmark] if cfg.benchmark else cfg.symbols):
        arr = lake.load_arrays(sym, "1Day")
        if len(arr["ts"]) < 2:
            raise ValueError(f"regimes need {sym} 1Day bars in the lake (ingest them first)")
        save_regimes(lake, sym, regimes_from_daily(arr["ts"], arr["open"], arr["high"], arr["low"], arr["close"],
                                                   params), params)
        out[sym] = load_regimes(lake, sym, params_hash(params))
    return out


def sweep_and_choose(lake: Lake, cfg: NightlyConfig, strategy: str, *, client: object | None = None,
                     progress: Progress | None = None) -> StrategyRun:
    """Sweep one strategy (resuming any stored chunks) and choose per (symbol, regime) with guards."""
    spec = cfg.spec(strategy, *window(lake, cfg))
    step = (lambda done, total: progress(f"sweep {strategy}", done, total)) if progress else None
    results = run_sweep(lake, spec, resume=True, client=client, progress=step)
    return StrategyRun(strategy, spec, results, tuple(choose(lake, spec, results, cfg.objective, cfg.min_trades)))


def candidate(run: StrategyRun, c: Choice) -> Entry:
    """The params-file entry proposed by one choice (flat when nothing was eligible)."""
    params = c.params or asdict(get(run.strategy).make_params(**dict(run.spec.params_fixed)))
    rules = ExitRules(**c.rules) if c.rules else run.spec.rules[0]
    return Entry(strategy=run.strategy, symbol=c.symbol, regime=c.regime,
                 status="active" if c.combo is not None else "flat", params=params,
                 exit_rules=ExitRulesModel.from_rules(rules), in_sample=Metrics.from_mapping(c.in_sample),
                 out_of_sample=Metrics.from_mapping(c.out_of_sample) if c.out_of_sample is not None else None,
                 oos_trades=c.oos_trades, n_trials=c.n_trials, deflated_sharpe=_num(c.deflated_sharpe),
                 pbo=_num(c.pbo), stability=_num(c.stability))


def with_regimes_in_force(cfg: NightlyConfig, previous: ParamsFile | None) -> NightlyConfig:
    """``cfg`` with its regime definition settled: the one asked for, else that of the params in force
    (same timeframe), else the timeframe's default scheme.

    Keeping the definition in force is the default because a running live runner labels sessions with
    it and refuses a reload whose labels mean something else: a scheme changes only when asked
    (``regime_scheme``), and then the runner is restarted on the new file.
    """
    if cfg.regimes is not None or previous is None or previous.data.timeframe != cfg.timeframe:
        return cfg
    return replace(cfg, regimes=previous.regime_params())


def nightly(lake: Lake, cfg: NightlyConfig, *, params_dir: str | Path, run: RunInfo, client: object | None = None,
            progress: Progress | None = None, now: datetime | None = None) -> NightlyResult:
    """Regimes, sweeps, choices, gate: the candidate params file (not installed; see the module doc)."""
    lake = lake.snapshot()  # one lake state for the regimes, every sweep and the provenance
    current = Path(params_dir) / "current.json"
    previous = load_params(current) if current.exists() else None
    cfg = with_regimes_in_force(cfg, previous)
    regimes = refresh_regimes(lake, cfg) if cfg.by_regime else {}
    runs = tuple(sweep_and_choose(lake, cfg, s, client=client, progress=progress) for s in cfg.strategies)
    wanted = (lambda regime: regime != "all") if cfg.by_regime else (lambda regime: regime == "all")
    picks = [p for p in pick_strategies(runs, cfg.objective) if wanted(p.regime)]  # one strategy per cell
    by_name = {r.strategy: r for r in runs}
    candidates = [candidate(by_name[p.strategy], p.choice) for p in picks]
    notes = [p.note for p in picks] if len(runs) > 1 else []
    pairs, rotation = multi_leg_night(lake, cfg)
    candidates += [pair_entry(r) for r in pairs] + [candidate(r, r.choices[0]) for r in rotation]
    notes += [r.note for r in (*pairs, *rotation)]
    comparable = previous is not None and previous.regime_params() == cfg.regime_params
    if previous is not None and not comparable:  # its labels mean other sessions: nothing of it can be kept
        notes.append(f"regimes: the params in force use another regime definition "
                     f"({previous.regime_params().scheme}); none of its entries is kept")
    entries, verdict = decide(candidates, previous if comparable else None, cfg.gate,
                              strategies=(*cfg.strategies, *(("pairs",) if cfg.pairs else ()),
                                          *(("rotation",) if cfg.rotation else ())), selection=notes)
    params = ParamsFile(schema_version=1, created_at=now or datetime.now(timezone.utc), code_version=code_version(),
                        run=run, data=_provenance(lake, runs[0].spec, _legs(cfg)), gate=cfg.gate, verdict=verdict, entries=entries,
                        regimes=RegimeDefinition.from_params(cfg.regime_params),
                        selection=SelectionInfo(objective=cfg.objective, walk_forward=cfg.walk_forward,
                                                min_trades=cfg.min_trades,
                                                sweep_ids=tuple(sorted({str(r.results["sweep_id"].iloc[0]) for r in runs}))))
    return NightlyResult(runs, params, previous, regimes, pairs, rotation)


def multi_leg_night(lake: Lake, cfg: NightlyConfig) -> tuple[tuple[PairsRun, ...], tuple[RotationRun, ...]]:
    """The night's swept pairs and baskets (``pipeline.nightly_pairs``, ``pipeline.nightly_rotation``) on the
    night's window, grids ``grids["pairs"]`` and ``grids["rotation"]``."""
    if not (cfg.pairs or cfg.rotation):
        return (), ()
    start, end = window(lake, cfg)
    common = dict(timeframe=cfg.timeframe, start=start, end=end, walk_forward=cfg.walk_forward,
                  objective=cfg.objective, min_trades=cfg.min_trades, fees=cfg.fees, slippage=cfg.slippage)
    pairs = sweep_pairs_night(lake, cfg.pairs, grid=cfg.grids.get("pairs"), max_pvalue=cfg.max_pvalue,
                              screen=cfg.pairs_screen, **common) if cfg.pairs else ()
    rotation = sweep_rotation_night(lake, cfg.rotation, grid=cfg.grids.get("rotation"), **common) if cfg.rotation else ()
    return pairs, rotation


def _legs(cfg: NightlyConfig) -> tuple[str, ...]:
    """Every symbol the pairs and baskets read (their legs, the baskets' benchmarks), once each."""
    names = [*(("pairs", p) for p in cfg.pairs), *(("rotation", b) for b in cfg.rotation)]
    return tuple(dict.fromkeys(s for strategy, name in names for s in baskets.legs(strategy, name).data))


def _provenance(lake: Lake, spec: SweepSpec, legs: tuple[str, ...] = ()) -> DataWindow:
    """The data window actually used and a hash of each symbol's exact bars (the multi-leg legs too)."""
    first, last, hashes = [], [], {}
    for sym in spec.symbols:
        data = load_symbol(lake, spec, sym)
        hashes[sym] = data.data_hash
        stamps = pd.to_datetime(data.ts[[0, -1]], unit="us", utc=True).tz_convert("America/New_York")
        first.append(stamps[0].date())
        last.append(stamps[1].date())
    for sym in (s for s in legs if s not in hashes):
        arrays = lake.load_arrays(sym, spec.timeframe, spec.start, spec.end)
        hashes[sym] = bars_hash(arrays)
        stamps = pd.to_datetime(arrays["ts"][[0, -1]], unit="us", utc=True).tz_convert("America/New_York")
        first.append(stamps[0].date())
        last.append(stamps[1].date())
    return DataWindow(timeframe=spec.timeframe, start=min(first), end=max(last), symbols=tuple(hashes),
                      bars_hash=hashes, benchmark=spec.benchmark)


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
