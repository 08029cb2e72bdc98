"""The tiled engine's pieces: rounding bound, brackets, streaming ball tests, fallbacks."""

import numpy as np
import pytest
import torch

from eprmetrics import compute_pr
from eprmetrics.engine import TileEngine, budget_for_tile, down32, rounding_factor, up32
from eprmetrics.engine.reductions import BallTest
from tests.reference import brute_pr, lattice


def test_rounding_bound_holds_on_measured_errors(rng):
    dim = 512
    x = torch.from_numpy(rng.normal(size=(400, dim)) * rng.uniform(0.1, 10, size=(400, 1)))
    x32 = x.float()
    n32 = x32.double().pow(2).sum(1).float()
    d_fp32 = (n32[:, None] + n32[None, :] - 2 * x32 @ x32.T).clamp_min(0).double()
    d_64 = torch.cdist(x, x).pow(2)
    norms = x.norm(dim=1)
    rel = ((d_fp32 - d_64).abs() / (norms[:, None] + norms[None, :]) ** 2).max().item()
    assert rel < rounding_factor(dim, "probabilistic") < rounding_factor(dim, "worst-case")


def test_rounding_bound_rejects_bad_mode():
    with pytest.raises(ValueError, match="error_bound: expected one of"):
        rounding_factor(8, "optimistic")


def test_directed_float32_rounding():
    x = torch.tensor([0.1, 1.0, 1e-30, 3.0000001], dtype=torch.float64)
    assert torch.all(down32(x).double() <= x) and torch.all(up32(x).double() >= x)
    assert torch.all(up32(x).double() - down32(x).double() <= 2 * torch.finfo(torch.float32).eps * x.abs() + 1e-45)


@pytest.mark.parametrize("owner", ["row", "col"])
def test_balltest_counts_and_pairs(rng, owner):
    d = torch.from_numpy(rng.uniform(0, 4, size=(30, 40)).astype(np.float32))
    n_owner = 30 if owner == "row" else 40
    lo = torch.from_numpy(rng.uniform(0, 2, size=n_owner).astype(np.float32))
    hi = lo + 0.5
    t = BallTest(lo, hi, owner, 40 if owner == "row" else 30, count=True, owner_any=True, pair_cap=10_000)
    t.update(d[:, :25], slice(0, 30), slice(0, 25))
    t.update(d[:, 25:], slice(0, 30), slice(25, 40))
    dd = d.numpy() if owner == "row" else d.numpy().T  # owner × other
    lo_b, hi_b = lo.numpy()[:, None], hi.numpy()[:, None]
    np.testing.assert_array_equal(t.other_lo.numpy(), (dd < lo_b).sum(0))
    np.testing.assert_array_equal(t.other_hi.numpy(), (dd <= hi_b).sum(0))
    np.testing.assert_array_equal(t.owner_lo.numpy(), (dd < lo_b).any(1))
    amb = {tuple(p) for p in np.argwhere((dd >= lo_b) & (dd <= hi_b))}
    assert {tuple(p) for p in t.pairs.tolist()} == amb


def test_balltest_pair_cap_overflow():
    d = torch.zeros(8, 8)
    t = BallTest(torch.full((8,), -1.0), torch.ones(8), "row", 8, count=True, pair_cap=10)
    t.update(d, slice(0, 8), slice(0, 8))
    assert t.pairs is None


@pytest.mark.parametrize("strict", [False, True])
def test_all_identical_points_overflow_fallback(strict):
    """Every pair ties at distance 0: the pair store overflows and per-point re-checks take over."""
    x = np.ones((60, 3), dtype=np.float32)
    res = compute_pr(x, x[:50], strict=strict, memory_budget=budget_for_tile(32, 3))
    ref = brute_pr(x, x[:50], 3, strict)
    assert (res.precision, res.recall, res.coverage) == (ref["precision"], ref["recall"], ref["coverage"])
    assert res.density == pytest.approx(ref["density"], rel=1e-12)
    assert res.precision == (0.0 if strict else 1.0)


@pytest.mark.parametrize("strict", [False, True])
def test_worst_case_bound_matches_bruteforce(rng, strict):
    real, fake = lattice(rng, 150, 4, high=3), lattice(rng, 120, 4, high=3)
    res = compute_pr(real, fake, strict=strict, error_bound="worst-case")
    ref = brute_pr(real, fake, 3, strict)
    assert (res.precision, res.recall, res.coverage) == (ref["precision"], ref["recall"], ref["coverage"])
    g = rng.normal(size=(200, 64)).astype(np.float32)
    f = rng.normal(size=(150, 64)).astype(np.float32)
    a = compute_pr(g, f, strict=strict, error_bound="worst-case")
    b = compute_pr(g, f, strict=strict)
    assert a.per_k == b.per_k and a.n_redecided >= b.n_redecided


def test_default_budget_and_tiles():
    from eprmetrics.engine import default_memory_budget

    budget = default_memory_budget(torch.device("cpu"))
    assert 0 < budget <= 1 << 30
    eng = TileEngine(4096, torch.device("cpu"), budget)
    assert eng.tile >= 1024 and eng.self_tile(3000) == 3000 and eng.self_tile(9000) == 4500
    assert eng.tile_for(eng.tile + 2) == eng.tile // 2 + 1
    with pytest.raises(ValueError, match="memory_budget: expected a positive number of bytes"):
        TileEngine(8, torch.device("cpu"), 0)


def test_row_keys_equal_exactly_for_equal_values():
    """Equal values (−0.0 as 0.0, float16 or float32 storage) give equal keys; distinct rows distinct ones; values
    small enough for squared differences to underflow give no keys."""
    from eprmetrics.engine.sets import row_keys
    from eprmetrics.inputs import as_feature_set

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 7)).astype(np.float32)
    x[10] = x[3]
    x[20], x[21] = 0.0, -0.0
    keys = row_keys(as_feature_set(x, "real"), torch.device("cpu"), elements=64)  # several blocks
    assert keys[10] == keys[3] and keys[20] == keys[21]
    assert len(set(keys.tolist())) == 500 - 2
    half = row_keys(as_feature_set(x.astype(np.float16), "real"), torch.device("cpu"))
    assert (half[10] == half[3]) and len(set(half.tolist())) == len(np.unique(x.astype(np.float16), axis=0))
    tiny = x.astype(np.float64)
    tiny[0, 0] = 1e-300
    assert row_keys(as_feature_set(tiny, "real"), torch.device("cpu")) is None
