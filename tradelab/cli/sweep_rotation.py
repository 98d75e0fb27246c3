"""``tradelab sweep --strategy rotation``: the baskets ``--symbols`` names, and the options it refuses.

``--symbols`` names baskets as a rotation entry of a params file names its legs: ``A,B,C/BENCH``
(the assets ranked and traded, then the benchmark, data only); several baskets are separated by
``;`` (quote it in a shell): ``--symbols "AAPL,MSFT,GOOG/IBM;AAPL,MSFT/FB"``. Each basket's legs
are aligned on the bars all of them have. Shorts are set with ``--short`` as for any strategy.

A rotation sweep is a lake job like a single-symbol one (``tradelab.cli.sweep``, ``pipeline.sweep``),
one unit per basket. Rotation rebalances on its schedule, so the exit-rule options are refused by
name; ``--benchmark`` names the regime benchmark (with ``--by-regime``; default: the basket's own).
"""

from __future__ import annotations

from data_lake import LakeError
from data_lake.schema import check_symbol

FORM = "a basket is A,B,.../BENCH, e.g. AAPL,MSFT,GOOG/IBM (baskets: separated by ';')"


def parse_baskets(text: str) -> list[tuple[tuple[str, ...], str]]:
    """``"A,B,C/BENCH;D,E/BENCH"`` as [(assets, bench), ...]; LakeError naming the first bad basket."""
    out: list[tuple[tuple[str, ...], str]] = []
    for item in text.split(";"):
        item = item.strip()
        if not item:
            continue
        head, sep, bench = item.partition("/")
        names = [s.strip() for s in head.split(",")]
        if not sep or "/" in bench or not bench.strip() or any(not s for s in names):
            raise LakeError(f"--symbols {item!r}: {FORM}")
        try:
            assets, bench = tuple(check_symbol(s) for s in names), check_symbol(bench)
        except LakeError as exc:
            raise LakeError(f"--symbols {item!r}: {exc}") from None
        if len(set(assets)) != len(assets) or bench in assets:
            raise LakeError(f"--symbols {item!r}: the assets must be distinct and the benchmark not among them")
        if (assets, bench) not in out:
            out.append((assets, bench))
    if not out:
        raise LakeError(f"--symbols: no baskets given ({FORM})")
    return out


def refuse_unsupported(given: dict[str, bool]) -> None:
    """One line naming the first option a rotation sweep does not take."""
    for flag, used in given.items():
        if used:
            why = {"--benchmark": " without --by-regime (the benchmark is in the basket: A,B,C/BENCH; "
                                  "--benchmark names the regime benchmark)",
                   "--max-pvalue": " (it screens pairs)"}.get(flag, "")
            if flag in ("--stop-loss", "--take-profit", "--trailing-stop", "--time-stop"):
                why = " (rotation rebalances on its schedule: --grid rebalance)"
            raise LakeError(f"{flag} is not supported for --strategy rotation{why}")
