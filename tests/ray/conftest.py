"""One embedded 2-CPU Ray cluster per test module of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module", autouse=True)
def cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The module's cluster; the module's workers travel by value (Ray's workers cannot import
    test files)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(request.module)
    yield ray
    ray.shutdown()
