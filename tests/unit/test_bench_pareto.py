"""`benchmarks/bench_pareto.py --quick` runs, and our layers agree with moocore's and pymoo's.

The benchmark exits with a message on any mismatch between the three implementations, so this
smoke run also checks the dispatch between our kernels on its three data shapes.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
from testpaths import REPO


def test_quick_run_agrees_with_the_libraries(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pymoo")
    spec = importlib.util.spec_from_file_location(
        "bench_pareto", REPO / "benchmarks" / "bench_pareto.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_pareto", bench)  # its dataclass looks itself up
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "identical layers on every array" in out
    assert "MISMATCH" not in out
