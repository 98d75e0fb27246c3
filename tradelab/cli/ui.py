"""Console helpers for the CLI: one-line errors, DataFrame tables, progress bars with ETA."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from data_lake import Lake, LakeError

# Wide when piped (CI logs, files) so tables are not squeezed into 80 columns.
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

LakeOpt = Annotated[
    Path,
    typer.Option("--lake", envvar="TRADELAB_LAKE", help="Lake root folder (or TRADELAB_LAKE).", show_default=True),
]
DEFAULT_LAKE = Path("lake")


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the errors a user can fix (bad input, bad data) into one line on stderr and exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LakeError as exc:
            # markup=False: messages quote user data such as "[low, high]" that rich would eat
            err.print("error:", style="bold red", end=" ")
            err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
            detail = getattr(exc, "report", None)
            if detail is not None:
                err.print(detail.summary(limit=20), markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def secret_env(name: str) -> str | None:
    """A credential from the environment, or from ``./.env`` (never overriding the environment)."""
    import os

    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)
    return os.environ.get(name) or None


def open_lake(path: Path) -> Lake:
    """The lake at ``path`` (created on first write)."""
    return Lake(path)


def output_path(path: Path | None, option: str) -> None:
    """Make an output file's folder now, so a bad path fails before the work (and its lake writes)."""
    if path is None:
        return
    if path.is_dir():
        raise LakeError(f"{option} {path}: is a folder, expected a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LakeError(f"{option} {path}: cannot create its folder ({exc.strerror})") from None


def print_frame(frame: pd.DataFrame, title: str | None = None, fmt: str = "table") -> None:
    """Print a DataFrame as a rich table, CSV or JSON (records)."""
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt == "json":
        # bytes (BLOB, BIT) as their repr, as in the other formats: the JSON encoder takes them
        # for UTF-8 text; other objects it cannot encode (UUID, Decimal) through str()
        obj = frame.select_dtypes(include="object").columns
        frame = frame.assign(**{c: frame[c].map(lambda v: str(v) if isinstance(v, (bytes, bytearray)) else v)
                                for c in obj})
        sys.stdout.write(frame.to_json(orient="records", date_format="iso", default_handler=str) + "\n")
    elif fmt == "table":
        table = Table(title=title, show_lines=False)
        for col in frame.columns:
            table.add_column(str(col), justify="right" if pd.api.types.is_numeric_dtype(frame[col]) else "left")
        for row in frame.itertuples(index=False):
            # Text(), not str: cell values are data, never rich markup
            table.add_row(*(Text(_cell(v)) for v in row))
        out.print(table)
    else:
        raise LakeError(f"unknown --format {fmt!r}: use table, csv or json")


def _cell(v: object) -> str:
    """A table cell: blanks for missing values, 4 decimals for floats (whole floats as integers)."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() and abs(v) < 1e15 else f"{v:.4f}"
    return str(v)


def progress() -> Progress:
    """A progress bar with count, elapsed time and ETA (quiet when output is not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )
