"""What the live bridge may import (live_bridge/__init__.py): alpaca-py only in live_bridge/alpaca/,
the simulator only in the replay, never the CLI; and the lake never imports the bridge."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(package: str) -> dict[str, set[str]]:
    """Top-level packages each module of ``package`` imports (lazy imports in functions included)."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
        out[path.relative_to(ROOT).as_posix()] = found
    return out


def test_alpaca_py_is_imported_only_by_the_alpaca_adapter():
    bridge = [m for m, names in imports("live_bridge").items() if "alpaca" in names]
    lake = [m for m, names in imports("data_lake").items() if "alpaca" in names]

    assert bridge and all(m.startswith("live_bridge/alpaca/") for m in bridge), bridge
    assert lake == ["data_lake/sources/alpaca.py"]


def test_the_bridge_imports_the_simulator_only_in_the_replay_and_never_the_cli():
    modules = imports("live_bridge")

    assert [m for m, names in modules.items() if "simulator" in names] == ["live_bridge/replay.py"]
    assert [m for m, names in modules.items() if names & {"tradelab", "notebooks"}] == []


def test_nothing_the_bridge_builds_on_imports_it():
    for package in ("data_lake", "research", "pipeline", "simulator"):
        if (ROOT / package).is_dir():
            assert [m for m, names in imports(package).items() if "live_bridge" in names] == [], package
