"""The research pages' readers: pure functions from folders and the lake to DataFrames and records.

Kept apart from the router (``research``) so each page's numbers come from one function a test can
call against the same artefacts, and so the pages hold no file or lake logic. Every reader takes
what it reads as an argument (a folder, a ``Lake``), reads through the project's own readers
(``research.params``, ``pipeline.nightly_summary``, ``data_lake``), and never writes.

Errors a request can cause are ``BadRequest`` (a malformed name or value: 400) and ``NotFound``
(a well-formed name that is not there: 404), each with a one-line message naming the problem.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from data_lake import Lake, info
from data_lake.gaps import find_gaps
from data_lake.sweep_index import SWEEPS, sweep_index
from data_lake.sweep_index import sweep_rows as read_sweep_rows
from data_lake.tables import table_files
from pipeline.nightly_summary import load_summary
from pipeline.params_store import CURRENT, HISTORY, diff, params_text
from research.params import Entry, ParamsFile, load
from research.regimes import TABLE as REGIMES, load_regimes
from research.signals import get
from research.sweep.chunks import DEPLOY
from research.sweep.results import OBJECTIVES


class BadRequest(ValueError):
    """A query value that cannot be right (malformed, or not among the choices): HTTP 400."""


class NotFound(LookupError):
    """A well-formed name of something that is not there: HTTP 404."""


# -- runs ----------------------------------------------------------------------------------------

RUN_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RUN_NAME = re.compile(r"^(nightly|weekend)-\d{6}(-\d{1,3})?$")  # tradelab.jobs.new_run_dir's names
#: The files of a run folder the dashboard serves: its reports and results. Not status.json or the
#: notebook, whose recorded parameters are only redacted for secret-looking names.
SERVED = ("report.html", "nightly.html", "weekend.html", "params.json", "summary.json", "candidates.csv")


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One nightly or weekend run folder: when, how it ended, its verdict and the files it left."""

    day: str
    name: str
    job: str
    started: str | None
    ended: str | None
    ok: bool | None  # None: still running, or killed before it could record its end
    error: str | None
    verdict: str
    promoted: bool | None  # nightly only
    files: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"{self.day}/{self.name}"


def list_runs(runs_dir: Path, limit: int = 50) -> list[RunRecord]:
    """The latest ``limit`` nightly and weekend runs under ``runs_dir``, newest first."""
    root = Path(runs_dir).resolve()
    if not root.is_dir():
        return []
    folders = [f for d in root.iterdir() if RUN_DAY.match(d.name) and d.is_dir()
               for f in d.iterdir() if RUN_NAME.match(f.name) and f.is_dir()
               and f.resolve().is_relative_to(root)]  # a folder symlinked out is not a run of this folder
    folders.sort(key=lambda f: (f.parent.name, _run_time(f.name)), reverse=True)
    return [_run_record(f, root) for f in folders[:limit]]


def _run_time(name: str) -> tuple[str, int]:
    _, stamp, *n = name.split("-")
    return stamp, int(n[0]) if n else 1


def _run_record(folder: Path, root: Path) -> RunRecord:
    """A run's record, read only from its own files (one symlinked out of the runs folder is not read)."""
    own = {n: p for n in (*SERVED, "status.json") if (p := folder / n).is_file() and p.resolve().is_relative_to(root)}
    job = folder.name.split("-")[0]
    status = _json(own["status.json"]) if "status.json" in own else {}
    verdict, promoted = (_nightly_verdict(own.get("summary.json")) if job == "nightly"
                         else (_weekend_verdict(own.get("candidates.csv")), None))
    ok = status.get("ok")
    return RunRecord(day=folder.parent.name, name=folder.name, job=job, started=status.get("started"),
                     ended=status.get("ended"), ok=ok if isinstance(ok, bool) else None,
                     error=_one_line(status.get("error")), verdict=verdict, promoted=promoted,
                     files=tuple(n for n in SERVED if n in own))


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _one_line(value: object) -> str | None:
    """The first line of a message, at most 300 characters; None for none."""
    text = "" if value is None else str(value).strip()
    return text.splitlines()[0][:300] if text else None


def _nightly_verdict(path: Path | None) -> tuple[str, bool | None]:
    if path is None:
        return "no summary.json (the run failed or has not finished)", None
    try:
        s = load_summary(path)
    except (OSError, ValueError) as exc:
        return f"unreadable summary.json: {_one_line(exc)}", None
    outcome = "promoted" if s.promoted else "rejected"
    verdict = s.verdict if s.verdict.lower().startswith(outcome) else f"{outcome}: {s.verdict}"
    return f"{verdict} ({s.active} active of {s.entries} entries)", s.promoted


def _weekend_verdict(path: Path | None) -> str:
    if path is None:
        return "no candidates.csv (the run failed or has not finished)"
    try:
        rows = pd.read_csv(path)
        passed = int(rows["passes_gate"].astype(str).str.lower().eq("true").sum())
    except (OSError, ValueError, KeyError) as exc:
        return f"unreadable candidates.csv: {_one_line(exc)}"
    return f"{passed} of {len(rows)} candidates pass the gate"


def run_file(runs_dir: Path, day: str, name: str, file: str) -> Path:
    """The path of one served file of one run; BadRequest / NotFound for anything else.

    Names are checked against the run layout (no separators, no '..'), then the resolved path
    must still be inside ``runs_dir`` resolved: a symlink out of the folder is refused.
    """
    if not RUN_DAY.match(day) or not RUN_NAME.match(name):
        raise BadRequest(f"not a run folder: {day}/{name} (expected <YYYY-MM-DD>/<nightly|weekend>-<HHMMSS>)")
    if file not in SERVED:
        raise BadRequest(f"{file!r} is not a file the dashboard serves (one of: {', '.join(SERVED)})")
    root = Path(runs_dir).resolve()
    path = (root / day / name / file).resolve()
    if not path.is_relative_to(root):
        raise NotFound(f"{day}/{name}/{file} points outside the runs folder")
    if not path.is_file():
        raise NotFound(f"no file {day}/{name}/{file} in the runs folder")
    return path


# -- params history and diffs --------------------------------------------------------------------

HISTORY_NAME = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}-(promoted|rejected)\.json$")  # params_store.history_name


@dataclass(frozen=True, slots=True)
class ParamsRecord:
    """One params file of the history (or current.json), summarized; ``error`` if it does not load."""

    name: str
    created_at: str | None
    sha256: str | None
    promoted: bool | None
    entries: int
    active: int
    verdict: str
    error: str | None = None


def params_names(params_dir: Path) -> list[str]:
    """``current`` (if there is one), then the history's files, newest first."""
    params_dir = Path(params_dir)
    names = ["current"] if (params_dir / CURRENT).is_file() else []
    hist = params_dir / HISTORY
    if hist.is_dir():
        files = (p.name for p in hist.iterdir() if HISTORY_NAME.match(p.name) and p.is_file())
        names += sorted(files, reverse=True)
    return names


def params_path(params_dir: Path, name: str) -> Path:
    """The file called ``name`` (``current`` or a history file name); BadRequest / NotFound otherwise."""
    params_dir = Path(params_dir)
    if name == "current":
        path = params_dir / CURRENT
    elif HISTORY_NAME.match(name):
        path = params_dir / HISTORY / name
    else:
        raise BadRequest(f"not a params file name: {name!r} (use 'current' or a history file name "
                         "like 20240502T220501Z-1a2b3c4d5e6f-promoted.json)")
    if not path.is_file():
        raise NotFound(f"no params file {name!r} in {params_dir}")
    return path


def load_named(params_dir: Path, name: str) -> ParamsFile:
    """The params file called ``name``, validated (BadRequest naming the file if it is invalid)."""
    path = params_path(params_dir, name)
    try:
        return _load_cached(str(path), *_stamp(path))
    except (OSError, ValueError) as exc:
        raise BadRequest(f"params file {name!r} does not load: {_one_line(exc)}") from None


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=256)
def _load_cached(path: str, mtime_ns: int, size: int) -> ParamsFile:
    """A file's parse, reused while its mtime and size stay the same (the history only grows)."""
    return load(path)


def params_history(params_dir: Path) -> list[ParamsRecord]:
    """Every params file (``params_names`` order) with its counts and verdict."""
    out = []
    for name in params_names(params_dir):
        try:
            pf = load_named(params_dir, name)
        except BadRequest as exc:
            out.append(ParamsRecord(name, None, None, None, 0, 0, "", error=str(exc)))
            continue
        out.append(ParamsRecord(name, pf.created_at.isoformat(timespec="seconds"), pf.sha256(),
                                pf.verdict.promoted, len(pf.entries), sum(e.status == "active" for e in pf.entries),
                                "; ".join(pf.verdict.reasons)))
    return out


DIFF_COLUMNS = ["change", "strategy", "symbol", "regime", "fields", "detail", "a", "b"]


def entry_text(e: Entry | None) -> str:
    """An entry as one line: status, params, gate metrics, verdict."""
    if e is None:
        return ""
    sharpe = e.out_of_sample.sharpe if e.out_of_sample is not None else None
    verdict = "passed" if e.gate.passed else "failed: " + "; ".join(e.gate.reasons)
    return (f"{e.status} {params_text(e.params)} | OOS Sharpe {_num(sharpe)}, deflated {_num(e.deflated_sharpe)}, "
            f"PBO {_num(e.pbo)}, stability {_num(e.stability)}, {e.oos_trades} OOS trades | gate {verdict}"
            + (" (kept)" if e.source == "kept" else ""))


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _evidence(e: Entry) -> dict[str, object]:
    """What the gate judged an entry by, and its answer."""
    return {"oos_sharpe": e.out_of_sample.sharpe if e.out_of_sample is not None else None,
            "deflated_sharpe": e.deflated_sharpe, "pbo": e.pbo, "stability": e.stability,
            "oos_trades": e.oos_trades, "verdict": (e.gate.passed, tuple(e.gate.reasons), e.source)}


def params_diff(a: ParamsFile, b: ParamsFile) -> pd.DataFrame:
    """What changed from a to b (``pipeline.params_store.diff``: provenance, entries added, removed,
    changed in what they trade), plus entries whose gate metrics or verdict alone changed
    ("re-measured"), each with its a and b side as ``entry_text``."""
    ea, eb = {e.key: e for e in a.entries}, {e.key: e for e in b.entries}
    rows, seen = [], set()
    for r in diff(a, b):
        key = (r.strategy, r.symbol, r.regime)
        seen.add(key)
        rows.append({"change": r.change, "strategy": r.strategy, "symbol": r.symbol, "regime": r.regime,
                     "fields": ", ".join(r.fields), "detail": r.detail,
                     "a": entry_text(ea.get(key)), "b": entry_text(eb.get(key))})
    for key in [k for k in ea if k in eb and k not in seen]:
        old, new = _evidence(ea[key]), _evidence(eb[key])
        changed = [k for k in old if old[k] != new[k]]
        if changed:
            rows.append({"change": "re-measured", "strategy": key[0], "symbol": key[1], "regime": key[2],
                         "fields": ", ".join(changed), "detail": "same params, new evidence",
                         "a": entry_text(ea[key]), "b": entry_text(eb[key])})
    return pd.DataFrame(rows, columns=DIFF_COLUMNS)


# -- sweeps --------------------------------------------------------------------------------------

EXIT_COLUMNS = ("stop_loss", "take_profit", "trailing_stop", "time_stop")


@dataclass(frozen=True, slots=True)
class SweepPick:
    """The sweep, symbol and heatmap axes a request asks for, every choice checked against the lake."""

    strategy: str
    sweep_id: str
    symbol: str
    x: str
    y: str
    objective: str
    split: str


def sweeps(lake: Lake) -> pd.DataFrame:
    """``data_lake.sweep_index`` with each sweep's last write (the table's generation), newest first."""
    index = sweep_index(lake)
    gens: dict[str, int] = {}
    for key, path in table_files(lake, SWEEPS).get(SWEEPS, {}).items():
        sid = key.split("-", 1)[0]
        gens[sid] = max(gens.get(sid, 0), _generation(path))
    index["written"] = [gens.get(s, 0) for s in index["sweep_id"]]
    return index.sort_values(["written", "sweep_id", "symbol"], ascending=[False, True, True], ignore_index=True)


def _generation(path: str) -> int:
    found = re.search(r"part-(\d+)-", Path(path).name)
    return int(found.group(1)) if found else 0


def pick_sweep(index: pd.DataFrame, strategy: str | None, sweep: str | None,
               symbol: str | None) -> tuple[str, str, str]:
    """(strategy, sweep_id, symbol): the asked ones, else the latest sweep (of the strategy) and its
    first symbol. NotFound naming what is available when a choice is not in the lake."""
    rows = index
    if strategy is not None:
        rows = rows[rows["strategy"] == strategy]
        if rows.empty:
            raise NotFound(f"no sweep of strategy {strategy!r} in the lake (have: {_listing(index['strategy'])})")
    if sweep is not None:
        if not re.fullmatch(r"[0-9a-f]{16}", sweep):
            raise BadRequest(f"not a sweep id: {sweep!r} (16 hex digits)")
        rows = rows[rows["sweep_id"] == sweep]
        if rows.empty:
            raise NotFound(f"no sweep {sweep}{f' of {strategy}' if strategy else ''} in the lake "
                           f"(have: {_listing(index['sweep_id'])})")
    sid = str(rows["sweep_id"].iloc[0])
    rows = rows[rows["sweep_id"] == sid]
    if symbol is not None:
        if symbol not in set(rows["symbol"]):
            raise NotFound(f"sweep {sid} has no symbol {symbol!r} (has: {_listing(rows['symbol'])})")
        rows = rows[rows["symbol"] == symbol]
    return str(rows["strategy"].iloc[0]), sid, str(rows["symbol"].iloc[0])


def _listing(values: pd.Series) -> str:
    return ", ".join(dict.fromkeys(map(str, values))) or "none"


def sweep_rows(lake: Lake, sweep_id: str, symbol: str) -> pd.DataFrame:
    """Every stored row of one sweep and unit (``data_lake.sweep_index.sweep_rows``), reused while
    the sweep's files stay the same (a running sweep adds files, which reads it again)."""
    files = tuple(p for k, p in table_files(lake, SWEEPS).get(SWEEPS, {}).items() if k.startswith(f"{sweep_id}-"))
    rows = _sweep_rows(str(lake.root), sweep_id, symbol, files)
    if rows.empty:
        raise NotFound(f"no rows of sweep {sweep_id} for {symbol} in the lake")
    return rows


@functools.lru_cache(maxsize=4)
def _sweep_rows(root: str, sweep_id: str, symbol: str, files: tuple[str, ...]) -> pd.DataFrame:
    return read_sweep_rows(Lake(root), sweep_id, symbol)


def swept_params(rows: pd.DataFrame, strategy: str) -> list[str]:
    """The strategy's params, then the exit rules, that take more than one value in ``rows``."""
    try:
        names = [f.name for f in fields(get(strategy).params)]
    except (ValueError, KeyError):
        names = []
    return [n for n in (*names, *EXIT_COLUMNS) if n in rows and rows[n].nunique(dropna=True) > 1]


def heatmap_choice(rows: pd.DataFrame, strategy: str, x: str | None, y: str | None, objective: str | None,
                   split: str | None) -> tuple[str, str, str, str]:
    """(x, y, objective, split) checked against the rows; defaults: the first two swept params, sharpe,
    the deploy window (else full). BadRequest naming the valid values otherwise."""
    params = swept_params(rows, strategy)
    x = x or (params[0] if params else None)
    y = y or next((p for p in params if p != x), None)
    for axis, value in (("x", x), ("y", y)):
        if value not in params:
            raise BadRequest(f"{axis}={value!r} is not a swept param of this sweep "
                             f"(swept: {', '.join(params) or 'none'})")
    if x == y:
        raise BadRequest(f"x and y are both {x!r}: pick two different params")
    objective = objective or "sharpe"
    if objective not in OBJECTIVES:
        raise BadRequest(f"unknown objective {objective!r}: use one of {', '.join(OBJECTIVES)}")
    splits = sweep_splits(rows)
    split = split or (DEPLOY if DEPLOY in splits else "full")
    if split not in splits:
        raise BadRequest(f"split {split!r} is not in this sweep (has: {', '.join(splits)})")
    return x, y, objective, split


def sweep_splits(rows: pd.DataFrame) -> list[str]:
    """The sweep's windows: full and deploy first, then the walk-forward's train / test windows."""
    return sorted(set(rows["split"].astype(str)), key=lambda s: (s not in ("full", DEPLOY), s))


# -- regimes -------------------------------------------------------------------------------------


def regime_benchmarks(lake: Lake) -> list[str]:
    """The benchmarks with labels in the lake's ``regimes`` table."""
    return list(table_files(lake, REGIMES).get(REGIMES, {}))


def regime_timeline(lake: Lake, benchmark: str) -> tuple[pd.DataFrame, pd.Series | None]:
    """One benchmark's labels (``research.regimes.load_regimes``) and its daily close by session date."""
    if benchmark not in regime_benchmarks(lake):
        have = ", ".join(regime_benchmarks(lake)) or "none"
        raise NotFound(f"no regimes of {benchmark!r} in the lake (have: {have})")
    frame = load_regimes(lake, benchmark)
    arr = lake.load_arrays(benchmark, "1Day")
    if not len(arr["ts"]):
        return frame, None
    ts = pd.to_datetime(arr["ts"], unit="us", utc=True).tz_convert("America/New_York")
    ts = ts.tz_localize(None).normalize()  # a 1Day bar's New York session date
    return frame, pd.Series(arr["close"], index=ts, name=f"{benchmark} close")


def regime_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Sessions per label, most frequent first, with their share."""
    counts = frame["label"].astype(str).value_counts()
    share = counts.to_numpy() / max(len(frame), 1)
    return pd.DataFrame({"label": counts.index, "sessions": counts.to_numpy(), "share": [f"{x:.1%}" for x in share]})


# -- the lake ------------------------------------------------------------------------------------


def lake_contents(lake: Lake) -> pd.DataFrame:
    """One row per (symbol, timeframe): bars, first and last bar (UTC), sources, feeds, last ingest."""
    frame = info(lake)
    return frame[["symbol", "timeframe", "rows", "first_ts", "last_ts", "sources", "feeds", "adjustment",
                  "last_ingest"]]


def lake_gaps(lake: Lake) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per series: sessions short of bars, bars missing, first and last such session; every gap row)."""
    gaps = find_gaps(lake)
    if gaps.empty:
        return pd.DataFrame(columns=["symbol", "timeframe", "sessions", "missing", "first", "last"]), gaps
    per = gaps.groupby(["symbol", "timeframe"], sort=True).agg(
        sessions=("session", "size"), missing=("missing", "sum"), first=("session", "min"),
        last=("session", "max"))
    return per.reset_index(), gaps
