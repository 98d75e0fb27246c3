"""``tradelab params``: look at, check and compare params files (research.params, pipeline.params_store), and
print their schema.

These are the commands a person runs before trusting a file: ``validate`` after a hand edit,
``show`` to see what the live bridge will trade, ``diff`` to see what tonight's run changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from data_lake import LakeError

from .ui import out, output_path, print_frame, user_errors

app = typer.Typer(help="The params file: show, validate, diff, schema.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)

DEFAULT_FILE = Path("params/current.json")
FileArg = Annotated[Path, typer.Argument(help="A params file.", show_default=True)]


def _load(path: Path):
    """The validated file, or a LakeError the user can act on (one line when it is missing)."""
    from research.params import load

    if not path.exists():
        raise LakeError(f"{path}: no such params file")
    try:
        return load(path)
    except (OSError, ValueError) as exc:
        raise LakeError(str(exc)) from None


def _fig(v: float | None) -> float | None:
    return None if v is None else float(v)


def entries_frame(pf) -> pd.DataFrame:
    """One row per entry: what is traded, the out-of-sample evidence and the gate's verdict."""
    from pipeline.params_store import params_text

    rows = [{"strategy": e.strategy, "symbol": e.symbol, "regime": e.regime, "status": e.status,
             "source": e.source, "params": params_text(e.params),
             "oos sharpe": _fig(e.out_of_sample.sharpe if e.out_of_sample else None),
             "dsr": _fig(e.deflated_sharpe), "pbo": _fig(e.pbo), "stability": _fig(e.stability),
             "gate": "pass" if e.gate.passed else "; ".join(e.gate.reasons)} for e in pf.entries]
    return pd.DataFrame(rows, columns=["strategy", "symbol", "regime", "status", "source", "params",
                                       "oos sharpe", "dsr", "pbo", "stability", "gate"])


def provenance_lines(pf) -> list[str]:
    """Where a file comes from and how it was judged, as short lines."""
    d, s, g, v = pf.data, pf.selection, pf.gate, pf.verdict
    lines = [
        f"sha256    {pf.sha256()[:12]}  (schema v{pf.schema_version})",
        f"created   {pf.created_at.isoformat()} by {pf.run.job} job, notebook {pf.run.notebook}, run {pf.run.run_dir}",
        f"code      {pf.code_version}",
        f"data      {d.timeframe} {d.start}..{d.end} {','.join(d.symbols)}"
        + (f" (benchmark {d.benchmark})" if d.benchmark else ""),
        f"selection {s.objective}, walk-forward {s.walk_forward or 'none'}, min_trades {s.min_trades}, "
        f"sweeps {','.join(s.sweep_ids) or '-'}",
        f"gate      oos_sharpe > {g.min_oos_sharpe:g}, deflated_sharpe >= {g.min_deflated_sharpe:g}, "
        f"pbo <= {g.max_pbo:g}, oos_trades >= {g.min_oos_trades}, stability >= {g.min_stability:g}",
        f"verdict   {'promoted' if v.promoted else 'rejected'}"
        + (f" (replaces {v.previous_sha256[:12]})" if v.previous_sha256 else ""),
    ]
    return lines + [f"          - {r}" for r in v.reasons]


@app.command("show")
@user_errors
def show(file: FileArg = DEFAULT_FILE) -> None:
    """Show a params file: provenance, verdict and one row per entry."""
    pf = _load(file)
    out.print(f"{file}", highlight=False)
    for line in provenance_lines(pf):
        out.print(line, markup=False, highlight=False)
    print_frame(entries_frame(pf), title=f"{len(pf.entries)} entries")


@app.command("validate")
@user_errors
def validate(file: Annotated[Path, typer.Argument(help="The params file to check.")]) -> None:
    """Check a params file against the schema and the strategies; name every bad field."""
    pf = _load(file)
    verdict = "promoted" if pf.verdict.promoted else "rejected"
    n = len(pf.entries)
    out.print(f"valid: {file} ({n} entr{'y' if n == 1 else 'ies'}, {verdict}, sha256 {pf.sha256()[:12]})",
              markup=False, highlight=False)


@app.command("diff")
@user_errors
def diff(a: Annotated[Path, typer.Argument(help="The older file.")],
         b: Annotated[Path, typer.Argument(help="The newer file.")]) -> None:
    """What changed from A to B: provenance, then entries added, removed or changed."""
    from pipeline.params_store import diff as diff_files

    rows = diff_files(_load(a), _load(b))
    if not rows:
        out.print("no differences", highlight=False)
        return
    frame = pd.DataFrame([{"change": r.change, "strategy": r.strategy, "symbol": r.symbol, "regime": r.regime,
                           "fields": ",".join(r.fields), "detail": r.detail} for r in rows])
    print_frame(frame, title=f"{a} -> {b}")


@app.command("schema")
@user_errors
def schema(out_file: Annotated[Path | None, typer.Option("--out", help="Write to FILE (default: stdout).")] = None,
           ) -> None:
    """Print (or write) the params file's JSON Schema, generated from the models."""
    import sys

    from pipeline.params_store import write_schema
    from research.params import schema_bytes

    if out_file is None:
        sys.stdout.write(schema_bytes().decode())
        return
    output_path(out_file, "--out")
    try:
        write_schema(out_file)
    except OSError as exc:
        raise LakeError(f"--out {out_file}: {exc.strerror}") from None
    out.print(f"schema -> {out_file}", highlight=False)
