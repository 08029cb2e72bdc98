"""Exact P&R against a float64 brute force and prdc: decisions, ties, tiling, directions."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from eprmetrics import compute_pr
from eprmetrics.engine import budget_for_tile
from eprmetrics.synthetic import make_pair
from tests.reference import brute_pr, brute_realism, lattice, radii2

CONVENTIONS = [False, True]


def assert_matches(res, ref, k=None):
    kr = res.per_k[k] if k is not None else res
    assert kr.precision == pytest.approx(ref["precision"], abs=0)
    assert kr.recall == pytest.approx(ref["recall"], abs=0)
    assert kr.density == pytest.approx(ref["density"], rel=1e-12)
    assert kr.coverage == pytest.approx(ref["coverage"], abs=0)


@pytest.mark.parametrize("strict", CONVENTIONS)
@pytest.mark.parametrize("n_real,n_fake,dim", [(120, 90, 8), (200, 260, 32), (64, 64, 3)])
def test_random_matches_bruteforce(rng, strict, n_real, n_fake, dim):
    real = rng.normal(size=(n_real, dim)).astype(np.float32)
    fake = (rng.normal(size=(n_fake, dim)) * 1.1 + 0.2).astype(np.float32)
    assert_matches(compute_pr(real, fake, k=3, strict=strict), brute_pr(real, fake, 3, strict))


@pytest.mark.parametrize("strict", CONVENTIONS)
@pytest.mark.parametrize("dim,high", [(2, 4), (3, 3), (5, 2)])
def test_lattice_ties_match_bruteforce(rng, strict, dim, high):
    real, fake = lattice(rng, 150, dim, high), lattice(rng, 110, dim, high)
    res = compute_pr(real, fake, k=3, strict=strict)
    assert_matches(res, brute_pr(real, fake, 3, strict))


@pytest.mark.parametrize("strict", CONVENTIONS)
def test_repeated_points_zero_radius(rng, strict):
    k = 3
    base = rng.normal(size=(20, 6)).astype(np.float32)
    real = np.repeat(base, k + 1, axis=0)  # every radius is exactly 0
    fake = np.concatenate([base[:10], rng.normal(size=(30, 6)).astype(np.float32)])
    assert np.all(radii2(real, k) == 0)
    res = compute_pr(real, fake, k=k, strict=strict)
    ref = brute_pr(real, fake, k, strict)
    assert_matches(res, ref)
    # fakes sitting on real points are inside a zero ball only under ≤
    assert res.precision == pytest.approx(0.0 if strict else 10 / 40)


@pytest.mark.parametrize("strict", CONVENTIONS)
def test_fakes_on_ball_boundaries(rng, strict):
    k = 3
    real = lattice(rng, 120, 4, high=5)
    d = ((real[:, None].astype(np.float64) - real[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    kth = np.argsort(d, axis=1, kind="stable")[:, k - 1]
    on_real = real[:30]
    reflected = 2 * real - real[kth]  # exactly at distance r_k from its centre
    fake = np.concatenate([on_real, reflected[:80]]).astype(np.float32)
    res = compute_pr(real, fake, k=k, strict=strict)
    ref = brute_pr(real, fake, k, strict)
    assert_matches(res, ref)


@settings(max_examples=40, deadline=None)
@given(
    real=hnp.arrays(np.float32, st.tuples(st.integers(5, 40), st.just(3)), elements=st.integers(-2, 2)),
    fake=hnp.arrays(np.float32, st.tuples(st.integers(5, 40), st.just(3)), elements=st.integers(-2, 2)),
    strict=st.booleans(),
    k=st.integers(1, 4),
)
def test_property_integer_inputs(real, fake, strict, k):
    res = compute_pr(real, fake, k=k, strict=strict, memory_budget=budget_for_tile(32, 3))
    assert_matches(res, brute_pr(real, fake, k, strict))


@pytest.mark.parametrize("strict", CONVENTIONS)
def test_float64_input_uses_float64_values(rng, strict):
    real = rng.normal(size=(150, 10))
    fake = real[:100] + rng.normal(size=(100, 10)) * 1e-9  # far below float32 resolution
    res = compute_pr(real, fake, k=3, strict=strict)
    assert_matches(res, brute_pr(real, fake, 3, strict))


@pytest.mark.parametrize("strict", CONVENTIONS)
@pytest.mark.parametrize("tile", [None, "two", 32])
def test_tiled_equals_untiled(rng, strict, tile):
    n, dim = 300, 16
    real = lattice(rng, n, dim, high=2)
    fake = lattice(rng, 280, dim, high=2)
    t = {None: 4 * n, "two": n // 2 + 1, 32: 32}[tile]
    res = compute_pr(real, fake, k=(3, 5), strict=strict, memory_budget=budget_for_tile(t, dim), realism=True)
    assert res.tile == t
    whole = compute_pr(real, fake, k=(3, 5), strict=strict, memory_budget=budget_for_tile(4 * n, dim), realism=True)
    for k in (3, 5):
        assert res.per_k[k] == whole.per_k[k]
        assert_matches(res, brute_pr(real, fake, k, strict), k=k)
    np.testing.assert_allclose(res.realism, whole.realism, rtol=1e-5)


@pytest.mark.parametrize("strict", CONVENTIONS)
def test_prdc_equality_strict_random(rng, strict):
    prdc = pytest.importorskip("prdc")
    real = rng.normal(size=(300, 24)).astype(np.float32)
    fake = (rng.normal(size=(250, 24)) + 0.3).astype(np.float32)
    ref = prdc.compute_prdc(real, fake, nearest_k=5)
    res = compute_pr(real, fake, k=5, strict=True)
    for key in ("precision", "recall", "density", "coverage"):
        assert getattr(res, key) == ref[key], key  # equal to the last bit, not approximately


def test_prdc_equality_strict_lattice(rng):
    prdc = pytest.importorskip("prdc")
    real, fake = lattice(rng, 200, 3, high=4), lattice(rng, 170, 3, high=4)
    ref = prdc.compute_prdc(real, fake, nearest_k=3)
    res = compute_pr(real, fake, k=3, strict=True)
    for key in ("precision", "recall", "density", "coverage"):
        assert getattr(res, key) == ref[key], key  # equal to the last bit, not approximately


def test_direction_pinned_by_mode_collapse():
    real, fake = make_pair(1500, 1500, dim=64, defect="mode_drop", strength=0.9, seed=3)
    res = compute_pr(real, fake)
    assert res.precision > 0.8, res
    assert res.recall < 0.5, res
    assert res.precision - res.recall > 0.4


def test_several_k_one_pass_equals_separate_runs(rng):
    real = rng.normal(size=(220, 12)).astype(np.float32)
    fake = rng.normal(size=(180, 12)).astype(np.float32)
    joint = compute_pr(real, fake, k=(3, 5, 10))
    assert list(joint.per_k) == [3, 5, 10]
    assert joint.k == 3 and joint.precision == joint.per_k[3].precision
    for k in (3, 5, 10):
        assert joint.per_k[k] == compute_pr(real, fake, k=k).per_k[k]


def test_realism_matches_bruteforce(rng):
    real = rng.normal(size=(200, 8)).astype(np.float32)
    fake = np.concatenate([real[:5], rng.normal(size=(120, 8)).astype(np.float32)])
    res = compute_pr(real, fake, realism=True)
    ref = brute_realism(real, fake)
    finite = np.isfinite(ref)
    assert (~finite).sum() >= 1  # a fake equal to a real centre
    np.testing.assert_allclose(res.realism[finite], ref[finite], rtol=1e-4)
    assert np.all(res.realism[~finite] > 1e3)


def test_input_forms_agree(rng, tmp_path):
    real = rng.normal(size=(100, 6)).astype(np.float32)
    fake = rng.normal(size=(90, 6)).astype(np.float32)
    np.save(tmp_path / "real.npy", real)
    np.savez(tmp_path / "fake.npz", features=fake)
    base = compute_pr(real, fake)
    assert (base.n_real, base.n_fake) == (100, 90)
    for r, f in [(torch.from_numpy(real), torch.from_numpy(fake)), (str(tmp_path / "real.npy"), tmp_path / "fake.npz")]:
        res = compute_pr(r, f)
        assert (res.n_real, res.n_fake) == (100, 90) and res.per_k == base.per_k
    half = real.astype(np.float16)
    for r in (half, half.astype(np.float32)):  # float16 values, stored either way: one answer, the brute force's
        assert_matches(compute_pr(r, fake), brute_pr(half.astype(np.float32), fake, 3, False))


def test_result_reports_stages_and_json(rng, tmp_path):
    real = rng.normal(size=(80, 5)).astype(np.float32)
    res = compute_pr(real, real + 0.01)
    names = [s.name for s in res.stages]
    assert any("radii" in n for n in names) and any("real↔fake" in n for n in names)
    assert names[0].startswith("inputs")  # reading and checking the inputs is timed too
    assert all(s.seconds >= 0 and s.rss_peak > 0 for s in res.stages)
    text = str(res)
    assert "precision" in text and "stage" in text
    res.to_json(str(tmp_path / "r.json"))
    import json

    assert json.loads((tmp_path / "r.json").read_text())["precision"] == res.precision


def copies(rng, n=150, dim=5):
    """Two points with 40 and 30 copies (one written with −0.0 in places) among random points, shuffled."""
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:40] = 0.0
    x[:40:3, ::2] = -0.0
    x[40:70] = x[70]
    return x[rng.permutation(n)]


@pytest.mark.parametrize("data", ["random", "lattice", "copies"])
def test_exact_knn_matches_bruteforce(rng, data):
    from eprmetrics.engine import TileEngine
    from eprmetrics.inputs import as_feature_set
    from eprmetrics.neighbours import exact_knn
    from tests.reference import sqdist

    x = {
        "random": lambda: rng.normal(size=(150, 5)).astype(np.float32),
        "lattice": lambda: lattice(rng, 150, 3, high=3),
    }
    x = x.get(data, lambda: copies(rng))()
    engine = TileEngine(x.shape[1], torch.device("cpu"), budget_for_tile(40, x.shape[1]))
    fs = as_feature_set(x, "real")
    knn = exact_knn(engine, engine.prepare(fs, engine.center_of(fs)), 4)
    d = sqdist(x, x)
    np.fill_diagonal(d, np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(150), d.shape), d), axis=1)[:, :4]
    np.testing.assert_allclose(knn.sqdist.numpy(), np.take_along_axis(d, order, 1), rtol=1e-14)
    np.testing.assert_array_equal(knn.index.numpy(), order)


def test_most_of_a_set_one_point(rng):
    """3,000 copies of one point among 50 others (a truncation ψ → 0): the copies' radius 0 is settled by their
    values, not by a float64 pass over their 9 million pairs; neighbours (ties by index) and P&R as brute force."""
    from eprmetrics.engine import TileEngine
    from eprmetrics.inputs import as_feature_set
    from eprmetrics.neighbours import exact_knn
    from tests.reference import sqdist

    x = np.concatenate([np.full((3000, 8), 0.5, np.float32), rng.normal(size=(50, 8)).astype(np.float32)])
    x = x[rng.permutation(len(x))]
    engine = TileEngine(8, torch.device("cpu"), budget_for_tile(512, 8))
    fs = as_feature_set(x, "fake")
    knn = exact_knn(engine, engine.prepare(fs, engine.center_of(fs)), 3)
    assert knn.n_redecided <= 50
    d = sqdist(x, x)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")[:, :3]  # stable: ties by index
    np.testing.assert_array_equal(knn.index.numpy(), order)
    np.testing.assert_allclose(knn.sqdist.numpy(), np.take_along_axis(d, order, 1), rtol=1e-14)
    real = rng.normal(size=(400, 8)).astype(np.float32)
    for strict in (False, True):
        res = compute_pr(real, x, k=3, strict=strict, density_coverage=False)
        want = brute_pr(real, x, k=3, strict=strict)
        assert (res.precision, res.recall) == (want["precision"], want["recall"])
