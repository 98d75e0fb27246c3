"""``tradelab sweep --strategy pairs``: the pairs ``--symbols KO/PEP,XOM/CVX`` names, and the options it refuses.

A pairs sweep is a lake job like a single-symbol one (``tradelab.cli.sweep``, ``pipeline.sweep``),
one unit per pair: each is screened by Engle-Granger (``--max-pvalue``) and only the pairs that
pass are swept; the screened-out ones still count as trials. The screen and the sweep use the same
bars (--start/--end), so the screen is in-sample. Pairs carry their own exits (exit_z, stop_z,
max_hold), so the exit-rule options are refused by name.
"""

from __future__ import annotations

from data_lake import LakeError
from data_lake.schema import check_symbol


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``"KO/PEP,XOM/CVX"`` as [(y, x), ...]; LakeError naming the first bad item."""
    pairs: list[tuple[str, str]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        y, sep, x = item.partition("/")
        if not sep or "/" in x or not y.strip() or not x.strip():
            raise LakeError(f"--symbols {item.strip()!r}: a pair is Y/X, e.g. KO/PEP (pairs: KO/PEP,XOM/CVX)")
        try:
            y, x = check_symbol(y), check_symbol(x)
        except LakeError as exc:
            raise LakeError(f"--symbols {item.strip()!r}: {exc}") from None
        if y == x:
            raise LakeError(f"--symbols {item.strip()!r}: a pair needs two different symbols")
        if (y, x) not in pairs:
            pairs.append((y, x))
    if not pairs:
        raise LakeError("--symbols: no pairs given (e.g. KO/PEP,XOM/CVX)")
    return pairs


def refuse_unsupported(given: dict[str, bool]) -> None:
    """One line naming the first option a pairs sweep does not take."""
    for flag, used in given.items():
        if used:
            why = (" (pairs carry their own exits: --grid exit_z, stop_z, max_hold)"
                   if flag in ("--stop-loss", "--take-profit", "--trailing-stop", "--time-stop")
                   else " without --by-regime (it names the regime benchmark)")
            raise LakeError(f"{flag} is not supported for --strategy pairs{why}")
