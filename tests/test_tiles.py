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


# ------------------------------------------------------------ reusable workspace
def test_scratch_reuses_grows_and_releases():
    from eprmetrics.engine.scratch import Scratch

    s, cpu = Scratch(), torch.device("cpu")
    a = s.get("tile", (10, 20), torch.float32, cpu)
    b = s.get("tile", (5, 30), torch.float32, cpu)  # smaller: the same memory
    assert b.data_ptr() == a.data_ptr() and b.shape == (5, 30)
    c = s.get("tile", (30, 30), torch.float32, cpu)  # larger: a new buffer
    assert c.shape == (30, 30) and s.nbytes == 30 * 30 * 4
    assert s.get("mask", (30, 30), torch.bool, cpu).dtype == torch.bool and s.nbytes == 30 * 30 * 5
    assert s.get("tile", (2, 2), torch.float64, cpu).dtype == torch.float64  # another dtype: replaced
    s.clear()
    assert s.nbytes == 0


@pytest.mark.parametrize("kind", ["float32", "float16-memmap", "int", "float64-scaled", "tensor", "subset"])
def test_take_into_scratch_equals_take(tmp_path, rng, kind):
    from eprmetrics.engine import FeatureSet, FeatureSubset
    from eprmetrics.engine.scratch import Scratch

    x = rng.normal(size=(200, 7))
    if kind == "float16-memmap":
        np.save(tmp_path / "x.npy", x.astype(np.float16))
        fs = FeatureSet(np.load(tmp_path / "x.npy", mmap_mode="r"), "real")
    elif kind == "int":
        fs = FeatureSet((x * 100).astype(np.int32), "real")
    elif kind == "float64-scaled":
        fs = FeatureSet(x * 1e30, "real", scale=2.0**-100)
    elif kind == "tensor":
        fs = FeatureSet(torch.from_numpy(x.astype(np.float32)), "real")
    else:
        fs = FeatureSubset(FeatureSet(x.astype(np.float32), "real"), torch.arange(0, 200, 3))
    index = torch.from_numpy(rng.integers(0, fs.n, size=50))
    scratch, cpu = Scratch(), torch.device("cpu")
    for dtype in (torch.float64, torch.float32):
        want = fs.take(index, cpu, dtype)
        got = fs.take(index, cpu, dtype, scratch=scratch, name="t")
        assert got.dtype == want.dtype and torch.equal(got, want)


def test_a_call_keeps_its_workspace_between_passes_and_gives_it_back(monkeypatch, rng):
    """The passes share one tile buffer (no fresh tile per tile or per pass); the call releases it at the end."""
    from eprmetrics.engine.scratch import Scratch

    engines, made = [], []
    get = Scratch.get

    def spy(self, name, shape, dtype, device):
        before = self._buffers.get(name)
        out = get(self, name, shape, dtype, device)
        if name == "tile" and (before is None or out.data_ptr() != before.data_ptr()):
            made.append(shape)
        return out

    init = TileEngine.__init__
    monkeypatch.setattr(TileEngine, "__init__", lambda self, *a, **k: engines.append(self) or init(self, *a, **k))
    monkeypatch.setattr(Scratch, "get", spy)
    real, fake = lattice(rng, 900, 4), lattice(rng, 800, 4)
    got = compute_pr(real, fake, memory_budget=budget_for_tile(300, 4))
    ref = brute_pr(real, fake, 3)
    assert (got.precision, got.recall) == (ref["precision"], ref["recall"])
    assert 1 <= len(made) <= 3  # at most a larger tile per pass kind, never one per tile
    assert engines and all(e.scratch.nbytes == 0 for e in engines)


def test_the_finite_check_reads_bounded_blocks():
    from eprmetrics.inputs import _CHECK_ELEMENTS, _check_rows

    assert _check_rows(4096) * 4096 <= _CHECK_ELEMENTS and _check_rows(8) * 8 <= _CHECK_ELEMENTS
    assert _check_rows(1 << 20) == 256  # very wide rows: still a few hundred per block


@pytest.mark.parametrize("shape", [(7, 5), (3000, 700), (700, 3000)])
def test_count_true_equals_sum(rng, shape):
    from eprmetrics.engine.reductions import count_true

    mask = torch.from_numpy(rng.random(shape) < 0.3)
    for dim in (0, 1):
        got = count_true(mask, dim)
        assert got.dtype == torch.int32 and torch.equal(got, mask.sum(dim, dtype=torch.int32))


def test_rectangular_passes_read_the_columns_once_within_the_budget(rng):
    """A pass of a few thousand rows (sampled queries, true-radius owners) against a set puts every row in one
    block when the budget leaves enough columns, so the set is streamed once; the tiles stay within the budget,
    and the result is the brute force's whatever the blocks."""
    from eprmetrics.engine.budget import tile_workspace
    from tests.reference import sqdist

    dim, budget = 32, 64 << 20  # tiles of ~2,300 rows: one block of 1.5 tiles still leaves > 1,024 columns
    engine = TileEngine(dim, torch.device("cpu"), budget)
    rows, cols = engine.tile + engine.tile // 2, 2 * engine.tile
    wide = engine.rect_blocks(rows, cols)
    assert wide[0] == rows and tile_workspace(*wide, dim) <= budget
    assert engine.rect_blocks(40 * engine.tile, cols)[0] == engine.tile_for(40 * engine.tile)  # too many rows
    assert engine.rect_blocks(engine.tile // 2, cols) == (engine.tile // 2, engine.tile_for(cols))
    x = rng.normal(size=(cols, dim)).astype(np.float32)
    q = rng.normal(size=(rows, dim)).astype(np.float32)
    from eprmetrics.inputs import as_feature_set

    c = engine.center_of(as_feature_set(x, "real"))
    px, pq = engine.prepare(as_feature_set(x, "real"), c), engine.prepare(as_feature_set(q, "fake"), c)
    with torch.inference_mode():
        vals, idx = engine.rect_topk(pq, px, 4)
    expected = np.sort(sqdist(q, x), 1)[:, :4]
    np.testing.assert_allclose(vals.sort(1).values.double().numpy(), expected, rtol=1e-4, atol=1e-4)
