"""moocore and the numba kernels give the same layers; ``auto`` picks by pool size, and the
small-pool path loads no numba at all."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from paretohqd.stages.kit.pareto.engine import (
    AUTO_MOOCORE_MAX_ROWS,
    NonFiniteScoreError,
    choose_engine,
    pareto_layers,
)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("shape", ["uniform", "tied", "anti"])
def test_both_engines_give_the_same_layers(m: int, shape: str) -> None:
    rng = np.random.default_rng(m)
    x = rng.random((3000, m))
    if shape == "tied":
        x = np.round(x, 1)  # many equal rows and equal columns
    elif shape == "anti":
        x[:, -1] = 1.0 - x[:, :-1].sum(axis=1) / max(m - 1, 1) + 0.01 * rng.random(3000)
    x[0] = -0.0  # -0.0 equals 0.0 on both paths
    x[1] = 0.0
    numba, used = pareto_layers(x, engine="numba")
    moocore, used_m = pareto_layers(x, engine="moocore")
    assert (used, used_m) == ("numba", "moocore")
    assert np.array_equal(numba, moocore)
    assert numba[0] == numba[1]
    assert set(np.unique(numba)) == set(range(1, int(numba.max()) + 1))


def test_auto_takes_moocore_on_small_pools_and_the_kernels_on_large_ones() -> None:
    for m, limit in AUTO_MOOCORE_MAX_ROWS.items():
        assert choose_engine("auto", limit, m) == "moocore"
        assert choose_engine("auto", limit + 1, m) == "numba"
    assert choose_engine("auto", 10**8, 7) == "moocore"  # not measured
    assert choose_engine("numba", 10, 2) == "numba"
    assert choose_engine("moocore", 10**8, 2) == "moocore"


@pytest.mark.parametrize("engine", ["numba", "moocore"])
def test_non_finite_scores_name_their_place_on_either_path(engine: str) -> None:
    x = np.ones((5, 3))
    x[3, 2] = np.nan
    with pytest.raises(NonFiniteScoreError, match="row 3, column 2") as info:
        pareto_layers(x, engine=engine)  # type: ignore[arg-type]
    assert (info.value.row, info.value.column) == (3, 2)


def test_a_small_pool_loads_no_numba() -> None:
    """The demo's pareto stage must not pay for loading or compiling the kernels."""
    code = (
        "import sys, numpy as np\n"
        "from paretohqd.stages.kit.pareto.engine import pareto_layers\n"
        "layers, used = pareto_layers(np.random.default_rng(0).random((4000, 3)))\n"
        "assert used == 'moocore' and layers.min() == 1, used\n"
        "assert 'numba' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_engine_is_speed_only(tmp_path) -> None:
    from paretohqd.config import config_from_dict
    from paretohqd.runner import Runner

    def fingerprint(engine: str) -> str:
        cfg = config_from_dict(
            {
                "run": {"name": "r"},
                "ingest": {"sources": [{"kind": "table", "path": "x"}]},
                "objectives": [
                    {"name": "v", "scorer": "heuristic", "options": {"metric": "verbosity"}}
                ],
                "pareto": {"engine": engine},
            },
            base_dir=tmp_path,
            source="test",
        )
        return next(i.fingerprint for i in Runner(cfg).plan() if i.stage.name == "pareto")

    assert fingerprint("numba") == fingerprint("moocore") == fingerprint("auto")
