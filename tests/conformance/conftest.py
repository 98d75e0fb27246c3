"""Conformance tests: official Alpaca clients other than alpaca-py against the simulator.

Every test here carries the ``conformance`` marker (registered below, so ``-m conformance`` and
``-m "not conformance"`` select them). The first run installs the clients into a cache
(~/.cache/tradelab/conformance); later runs reuse it. See harness.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "conformance: official non-alpaca-py Alpaca clients (JS SDK, alpaca-trade-api) against "
                   "the simulator; installs them into ~/.cache/tradelab/conformance on first use")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.conformance)
