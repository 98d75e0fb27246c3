"""The numba kernels' docstring examples, run as tests: every public ``*_nb`` kernel of these modules
carries one, and it must pass.

doctest finds the examples of a jitted function through the dispatcher's ``__wrapped__`` (the
Python function numba keeps); were that to stop working, the examples would silently not run, so
the tests count the examples found per kernel. (A failure reports "line ?": doctest cannot place a
dispatcher in its file; the report names the kernel.)
"""

from __future__ import annotations

import doctest
import importlib

import pytest
from numba.core.dispatcher import Dispatcher

MODULES = ("research.kernels.batch", "research.kernels.indicators", "research.kernels.pairs", "research.kernels.regimes",
           "research.kernels.rotation", "research.kernels.simulate", "research.metrics", "research.sweep.engine",
           "research.sweep.pairs", "research.sweep.rotation")


def public_kernels(module) -> list[str]:
    """The module's own public jitted functions named ``*_nb``."""
    return sorted(name for name, obj in vars(module).items()
                  if isinstance(obj, Dispatcher) and name.endswith("_nb") and not name.startswith("_")
                  and obj.__module__ == module.__name__)


@pytest.mark.parametrize("name", MODULES)
def test_every_public_kernel_has_an_example(name):
    module = importlib.import_module(name)

    tests = {t.name.rsplit(".", 1)[-1]: t for t in doctest.DocTestFinder().find(module)}

    kernels = public_kernels(module)
    assert kernels
    assert [k for k in kernels if k not in tests or not tests[k].examples] == []


@pytest.mark.parametrize("name", MODULES)
def test_examples_pass(name):
    module = importlib.import_module(name)

    result = doctest.testmod(module, verbose=False, report=True)

    assert result.attempted >= len(public_kernels(module)) > 0
    assert result.failed == 0
