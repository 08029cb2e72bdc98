"""ivf-pca: its embedding bounds distances from below, its measured distances bound radii from above, and
the sampled estimator on its graph decides every query as a float64 brute force does."""

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr, compute_pr
from eprmetrics.engine import FeatureSet, TileEngine
from eprmetrics.estimators.sampled import sampled_hits
from eprmetrics.neighbours import GraphRequest, build_graph
from eprmetrics.neighbours.ann import get_backend
from eprmetrics.neighbours.upper import measured_upper2
from eprmetrics.profiling import Profiler
from eprmetrics.synthetic import SyntheticSpec, generate, make_pair
from tests.reference import brute_pr, lattice, radii2, sqdist

CPU = torch.device("cpu")


def _built(x, **options):
    impl = get_backend("ivf-pca")(**options)
    impl.used_params = impl.resolve_params(*x.shape)
    impl.build(x, seed=0, device=CPU)
    return impl


@pytest.mark.parametrize("spectrum", ["low", "long"])
def test_embedding_never_lengthens_a_distance(spectrum):
    x = generate(1500, SyntheticSpec(dim=256, spectrum=spectrum, seed=2)).numpy()
    impl = _built(x, dims=16)
    z = impl._embed(torch.from_numpy(x)).double().numpy()
    i, j = np.random.default_rng(0).integers(0, 1500, (2, 20000))
    true = np.sqrt(((x[i].astype(np.float64) - x[j]) ** 2).sum(1))
    low = np.sqrt(((z[i] - z[j]) ** 2).sum(1))
    assert np.all(low <= true * (1 + 1e-4) + 1e-4)  # fp32 embedding of an exact bound
    assert np.median(low / np.maximum(true, 1e-12)) > 0.5  # and a useful one


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_measured_distances_bound_true_ones_from_above(rng, dtype):
    """Direct fp32 differences of values exact in fp32: the bound holds for far-off, close and equal pairs."""
    base = rng.normal(size=(1, 512)) * 300  # far from the origin: norm expansions would cancel badly here
    x = (base + rng.normal(size=(800, 512)) * np.r_[np.full(400, 1e-2), np.ones(400)][:, None]).astype(dtype)
    x[10] = x[11]  # a duplicate: distance 0
    a, b = rng.integers(0, 800, (2, 5000))
    a[0], b[0] = 10, 11
    xa, xb = torch.from_numpy(x[a].astype(np.float32)), torch.from_numpy(x[b].astype(np.float32))
    dist = (xa - xb).pow(2).sum(1).sqrt()
    true2 = ((x[a].astype(np.float64) - x[b].astype(np.float64)) ** 2).sum(1)
    upper = measured_upper2(dist, 512).numpy()
    assert np.all(upper >= true2) and upper[0] == 0.0
    assert np.all(upper <= true2 * (1 + 1e-3) + 1e-30)  # tight: a relative (d + 4)·u margin


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_backend_measurements_bound_true_distances_from_above(rng, tmp_path, dtype):
    """The backend's own batched measurement (gathered in the stored dtype, one cdist without the norm
    expansion) keeps the bound: a memmap, rows far from the origin, duplicates, missing candidates, and
    blocks smaller than the queries (the reused buffers' last, partial block)."""
    from eprmetrics.neighbours.ann import ivf_pca

    base = rng.normal(size=(1, 512)) * 300
    x = (base + rng.normal(size=(900, 512)) * np.r_[np.full(450, 1e-2), np.ones(450)][:, None]).astype(dtype)
    x[10] = x[11]
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    cand = rng.integers(0, 900, (300, 7))
    cand[10, 0], cand[1, :3] = 11, -1  # row 10's copy; no candidate
    q = torch.from_numpy(x[:300].astype(np.float32))
    old = ivf_pca._MEASURE_ELEMENTS
    ivf_pca._MEASURE_ELEMENTS = 7 * 512 * 64  # 64 queries a block: five blocks, the last partial
    try:
        dist = ivf_pca._measured(q, mm, cand)
    finally:
        ivf_pca._MEASURE_ELEMENTS = old
    x64 = x.astype(np.float64)
    true2 = ((x64[:300, None, :] - x64[np.maximum(cand, 0)]) ** 2).sum(2)
    upper = measured_upper2(dist, 512).numpy()
    found = cand >= 0
    assert np.all(np.isinf(dist.numpy()[~found])) and dist[10, 0] == 0.0
    assert np.all(upper[found] >= true2[found])
    assert np.all(upper[found] <= true2[found] * (1 + 1e-3) + 1e-30)


def _graph(engine, fs, p, k):
    return build_graph(engine, fs, p, GraphRequest("ivf-pca", "sampled", k, 0, {"dims": 4}), Profiler(), None)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("case", ["gauss", "lattice", "outliers"])
def test_sampled_hits_on_its_graph_equal_brute_force(rng, strict, case):
    """Upper radii from ivf-pca's measured distances (no float64 pass) give the brute-force membership:
    random data, lattices (exact ties, duplicates, zero radii) and outliers with huge radii."""
    k = 3
    if case == "lattice":
        real, fake = lattice(rng, 500, 6), lattice(rng, 400, 6)
    else:
        real = rng.normal(size=(500, 12)).astype(np.float32)
        fake = (rng.normal(size=(400, 12)) * 1.1).astype(np.float32)
        if case == "outliers":
            real[:5] *= 40
            fake[:5] *= 40
    ref = brute_pr(real, fake, k=k, strict=strict)
    engine = TileEngine(12 if case != "lattice" else 6, CPU, 1 << 16)
    r, f = FeatureSet(real, "real"), FeatureSet(fake, "fake")
    c = engine.center_of(r)
    rp, fp = engine.prepare(r, c), engine.prepare(f, c)
    with torch.inference_mode():
        g = _graph(engine, r, rp, k)
        assert g.measured  # float32 input: the backend's distances give the bounds
        upper = g.upper(engine, rp, k)
        assert torch.all(upper.upper2 >= torch.from_numpy(radii2(real, k)))
        hits = sampled_hits(engine, fp, torch.arange(fp.n), upper, strict).numpy()
        assert upper.n_refined > 0  # candidates' bounds were tightened by the index before any true radius
        # and stayed upper bounds (true radii, filled in as computed, are float64 sums in another order)
        assert torch.all(upper.upper2 >= torch.from_numpy(radii2(real, k)) * (1 - 1e-12))
    np.testing.assert_array_equal(hits, ref["precision_hits"])


def test_float64_input_keeps_the_float64_bounds(rng):
    x = rng.normal(size=(300, 8))  # float64: fp32 differences would round the inputs
    engine = TileEngine(8, CPU, 1 << 16)
    fs = FeatureSet(x, "real")
    p = engine.prepare(fs, engine.center_of(fs))
    g = _graph(engine, fs, p, 3)
    assert not g.measured
    d = sqdist(x, x)
    np.fill_diagonal(d, np.inf)
    assert torch.all(g.upper(engine, p, 3).upper2 >= torch.from_numpy(np.sort(d, 1)[:, 2]) * (1 - 1e-12))


def test_sampled_estimator_with_ivf_pca_covers_exact_on_a_float16_memmap(tmp_path):
    real, fake = make_pair(3000, 2500, dim=96, seed=4, defect="truncation", strength=0.2, spectrum="long")
    np.save(tmp_path / "real.npy", real.numpy().astype(np.float16))
    np.save(tmp_path / "fake.npy", fake.numpy().astype(np.float16))
    paths = str(tmp_path / "real.npy"), str(tmp_path / "fake.npy")
    ex = compute_pr(*paths, density_coverage=False)
    res = compute_epr(*paths, backend="ivf-pca", sample_size=0.03, backend_options={"dims": 16})
    assert res.plan.backends == {"real": "ivf-pca", "fake": "ivf-pca"}
    assert res.precision_ci[0] <= ex.precision <= res.precision_ci[1]
    assert res.recall_ci[0] <= ex.recall <= res.recall_ci[1]
    everything = compute_epr(*paths, backend="ivf-pca", sample_size=3000, backend_options={"dims": 16})
    assert (everything.precision, everything.recall) == (ex.precision, ex.recall)


def test_options_are_checked():
    impl = get_backend("ivf-pca")(dims=200)
    with pytest.raises(ValueError, match=r"backend 'ivf-pca': dims: expected an int between 1 and d = 64"):
        impl.resolve_params(1000, 64)
    with pytest.raises(ValueError, match=r"backend 'ivf-pca': rescore: expected a positive int"):
        get_backend("ivf-pca")(rescore=0).resolve_params(1000, 64)


def test_second_refinement_searches_wider_and_stays_an_upper_bound(rng):
    """Level 2 scans each list's REFINE_PROBES × nprobe nearest lists (here every list) and measures
    REFINE_DEEP candidates: with the embedding in the full space (dims = d, ranking by true distance) it
    finds the true k-th distance of every owner; level 1 (nprobe = 3 of the 9 lists) misses some."""
    x = rng.normal(size=(600, 16)).astype(np.float32)
    impl = _built(x, dims=16, nprobe=3)
    assert impl.used_params["nlist"] == 9
    ids = np.arange(0, 600, 3)
    d = np.sqrt(sqdist(x[ids], x))
    d[np.arange(ids.size), ids] = np.inf
    true3 = np.sort(d, 1)[:, 2]
    one, two = impl.refine(ids, 3, 1)[:, -1], impl.refine(ids, 3, 2)[:, -1]
    np.testing.assert_allclose(two, true3, rtol=1e-5)
    assert np.all(one >= true3 * (1 - 1e-5)) and np.any(one > true3 * (1 + 1e-3))


def test_owners_are_refined_level_by_level_and_never_past_a_known_radius(rng):
    """UpperRadii.refine raises each owner one level per call, up to ``upto`` and REFINE_LEVELS, skips owners
    whose true radius is known, and keeps the smaller of the old and new bounds."""
    from eprmetrics.neighbours.upper import REFINE_LEVELS, UpperRadii

    x = rng.normal(size=(50, 4)).astype(np.float32)
    engine = TileEngine(4, CPU, 1 << 16)
    fs = FeatureSet(x, "real")
    p = engine.prepare(fs, engine.center_of(fs))
    nb = torch.from_numpy(np.argsort(sqdist(x, x), 1)[:, 1:4].copy())
    upper = UpperRadii(engine, p, 3, neighbours=nb)
    calls = []

    def refiner(ids, level):
        calls.append((sorted(ids.tolist()), level))
        return np.full((ids.size, 3), 0.5 if level == 1 else 100.0, dtype=np.float32)

    upper.refiner = refiner
    before = upper.upper2.clone()
    upper.set_true(torch.tensor([7]), torch.tensor([1.0], dtype=torch.float64))
    owners = torch.tensor([3, 5, 7, 3])
    assert upper.refine(owners, upto=1) and calls == [([3, 5], 1)]
    assert not upper.refine(owners, upto=1)  # already at level 1
    assert upper.refine(owners) and calls[-1] == ([3, 5], 2)
    assert REFINE_LEVELS == 2 and not upper.refine(owners)
    bound = measured_upper2(torch.full((1,), 0.5), 4).item()
    assert torch.all(upper.upper2[[3, 5]] == torch.minimum(before[[3, 5]], torch.tensor(bound, dtype=torch.float64)))


def test_a_ball_of_known_radius_decides_before_any_row():
    """A query inside a ball whose true radius is known is a hit at no cost, even where a ball of unknown
    radius is deeper (the deepest-first order alone would spend a true-radius row on that one)."""
    from eprmetrics.estimators.decisions import _decide
    from eprmetrics.neighbours.upper import UpperRadii

    real = np.array([[0.0, 0], [5, 0], [6, 0], [9, 0]], dtype=np.float32)
    engine = TileEngine(2, CPU, 1 << 16)
    fs = FeatureSet(real, "real")
    p = engine.prepare(fs, engine.center_of(fs))
    # found neighbours (upper bounds): 0 -> 5 (U² = 25, the true radius), 6 -> 9 (U² = 9; truly 1)
    upper = UpperRadii(engine, p, 1, neighbours=torch.tensor([[1], [2], [3], [2]]))
    upper.set_true(torch.tensor([0]), torch.tensor([25.0], dtype=torch.float64))
    # the query at 4: d² = 16 to point 0 (depth 0.64), d² = 4 to point 6 (depth 0.44, deeper)
    hits = torch.zeros(1, dtype=torch.bool)
    _decide(
        upper, torch.tensor([0, 0]), torch.tensor([0, 2]), torch.tensor([16.0, 4.0], dtype=torch.float64), hits, False
    )
    assert bool(hits[0]) and upper.n_true == 0
