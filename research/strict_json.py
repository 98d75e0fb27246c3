"""Strict JSON for hand-edited artefacts: what ``json`` lets through and the models would misread.

``strict_json`` parses like ``json.loads`` but refuses NaN/Infinity (JSON has none; write null),
floats that overflow to inf, integers past 64 bits (the numba kernels cannot take them), and
duplicate keys in an object (the last would silently win). Each refusal is a ValueError naming it.
"""

from __future__ import annotations

import json
import math
from typing import Any


def strict_json(text: str) -> Any:
    """``json.loads(text)`` with the refusals above (json.JSONDecodeError for malformed text).

    >>> strict_json('{"a": 1, "a": 2}')
    Traceback (most recent call last):
    ...
    ValueError: duplicate key 'a' in a JSON object
    """
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=_int64,
                      object_pairs_hook=_no_duplicates)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON; write null for a missing value")


def _finite(text: str) -> float:
    if not math.isfinite(v := float(text)):  # 1e400: Python reads inf, the models would store null
        raise ValueError(f"number {text} is out of range (a float overflows)")
    return v


def _int64(text: str) -> int:
    # past 64 bits the numba kernels cannot take it (time_stop 10**30 would crash the live bridge)
    if len(text.lstrip("-")) > 19 or not -(2**63) <= (v := int(text)) < 2**63:
        shown = text if len(text) <= 30 else text[:30] + "..."
        raise ValueError(f"number {shown} is out of range (64-bit integers)")
    return v


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # linear: a 60k-key object must not take minutes
        seen: set[str] = set()
        dupes = sorted({k for k, _ in pairs if k in seen or seen.add(k)})
        raise ValueError(f"duplicate key {dupes[0]!r} in a JSON object")
    return out
