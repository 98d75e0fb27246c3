"""The chaos suite (`make chaos`): crashes, broker faults, data faults, bad input, secrets.

Tests count what they did in ``chaos`` (a session-wide Counter); the summary at the end prints the
counters `make chaos` promises: kills survived, faults injected, duplicate orders, position
mismatches, secrets leaked (the last three must be 0), plus the fuzzed inputs.
"""

from __future__ import annotations

from collections import Counter

import pytest

COUNTERS: Counter = Counter()
SHOWN = ("kills_survived", "faults_injected", "inputs_fuzzed", "duplicate_orders", "position_mismatches",
         "secrets_leaked")
MUST_BE_ZERO = ("duplicate_orders", "position_mismatches", "secrets_leaked")


@pytest.fixture()
def chaos() -> Counter:
    """Add to the suite's counters: ``chaos["faults_injected"] += n``."""
    return COUNTERS


def pytest_terminal_summary(terminalreporter) -> None:
    tr = terminalreporter
    tr.section("chaos summary")
    for name in SHOWN + tuple(sorted(set(COUNTERS) - set(SHOWN))):
        flag = "  (must be 0)" if name in MUST_BE_ZERO else ""
        bad = "  <-- FAILED" if name in MUST_BE_ZERO and COUNTERS[name] else ""
        tr.write_line(f"{name.replace('_', ' '):<22}{COUNTERS[name]:>8}{flag}{bad}")
