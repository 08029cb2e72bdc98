"""The memory model (eprmetrics.estimators.memory) against what the passes' workspace actually held."""

from __future__ import annotations

import numpy as np
import pytest

from eprmetrics import compute_epr, compute_pr
from eprmetrics.engine import budget_for_tile
from eprmetrics.engine.scratch import Scratch
from eprmetrics.estimators.memory import predicted_peak
from eprmetrics.synthetic import make_pair
from tests.reference import lattice


@pytest.fixture
def held(monkeypatch):
    """The largest number of bytes the workspace held at once during a call."""
    peak = {"bytes": 0}
    get = Scratch.get

    def spy(self, name, shape, dtype, device):
        out = get(self, name, shape, dtype, device)
        peak["bytes"] = max(peak["bytes"], self.nbytes)
        return out

    monkeypatch.setattr(Scratch, "get", spy)
    return peak


def _workspace(parts):
    return sum(v for k, v in parts.items() if k.startswith("workspace: "))


@pytest.mark.parametrize("tile", [150, 400, 5000])
def test_exact_workspace_covers_what_the_passes_held(held, rng, tile):
    real, fake = lattice(rng, 1200, 6), lattice(rng, 900, 6)  # ties: the float64 re-checks run too
    budget = budget_for_tile(tile, 6)
    res = compute_pr(real, fake, memory_budget=budget)
    parts = predicted_peak(res, budget)
    assert held["bytes"] > 0
    assert held["bytes"] <= _workspace(parts) <= 1.6 * held["bytes"]
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k not in ("total", "pairs at most")))


def test_sampled_workspace_covers_what_the_passes_held(held):
    real, fake = (x.numpy() for x in make_pair(4000, 4000, dim=24, seed=3, defect="truncation", strength=0.3))
    budget = budget_for_tile(600, 24)
    res = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=300, memory_budget=budget)
    assert res.plan is not None and res.plan.path == "sampled"
    parts = predicted_peak(res, budget)
    assert held["bytes"] <= _workspace(parts)
    assert parts["ANN indexes and graphs"] >= 2 * 4000 * 24 * 4  # ivf-gemm keeps each set's rows, sorted by list
    assert parts["transient (index search or selections)"] > 0


def test_a_larger_budget_predicts_more(rng):
    real, fake = np.asarray(lattice(rng, 1500, 8)), np.asarray(lattice(rng, 1500, 8))
    small, large = budget_for_tile(200, 8), budget_for_tile(1500, 8)
    a = predicted_peak(compute_pr(real, fake, memory_budget=small), small)
    b = predicted_peak(compute_pr(real, fake, memory_budget=large), large)
    assert a["total"] < b["total"]
