"""Paths of the repository and its bundled data, for tests (importable as ``testpaths``)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
FIXTURES = REPO / "tests" / "fixtures"
