"""The ``tradelab`` command. Settings and the environment are read here, at the edge, and passed in."""

from __future__ import annotations

import typer

from . import dashboard, evening, ingest, jobs, lake, live, params, regimes, sweep

app = typer.Typer(
    name="tradelab",
    help="tradelab: research and backtesting workbench with a thin live bridge to Alpaca.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(ingest.app, name="ingest")
app.add_typer(lake.app, name="lake")
app.add_typer(params.app, name="params")
app.command("regimes")(regimes.regimes)
app.command("sweep")(sweep.sweep)
app.command("nightly")(jobs.nightly)
app.command("weekend")(jobs.weekend)
app.command("evening")(evening.evening)
app.add_typer(live.app, name="live")
app.command("parity")(live.parity)
app.command("sim")(live.sim)
app.command("dashboard")(dashboard.dashboard)


def main() -> None:
    """Console entry point."""
    app()
