"""The projection screen: exact decisions and radii from the pairs a projected lower bound lets through."""

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr
from eprmetrics.engine import FeatureSet, TileEngine
from eprmetrics.estimators.memory import predicted_peak
from eprmetrics.estimators.sampled import sampled_hits
from eprmetrics.neighbours import UpperRadii
from eprmetrics.neighbours.screen import PASS_SHARE, Screen, build_screen, fit_basis, screen_dims
from eprmetrics.synthetic import SyntheticSpec, generate
from tests.reference import brute_pr, lattice, radii2, sqdist
from tests.test_sampled import _prepared, some_graph

CPU = torch.device("cpu")


def _low_rank(rng, n, dim, rank, scale=1.0):
    """Rows near a ``rank``-dimensional subspace (a little noise off it): the screen's good case."""
    basis = rng.normal(size=(rank, dim))
    return ((rng.normal(size=(n, rank)) @ basis + 0.05 * rng.normal(size=(n, dim))) * scale).astype(np.float32)


def _cases(rng):
    real, fake = _low_rank(rng, 500, 24, 4), _low_rank(rng, 400, 24, 4)
    yield "low-rank", real, fake, 4
    yield "gauss", rng.normal(size=(400, 10)).astype(np.float32), rng.normal(size=(300, 10)).astype(np.float32), 3
    # the whole space (m = d): projected distances are the distances, ties sit exactly on the bounds
    yield "lattice", lattice(rng, 300, 5), lattice(rng, 250, 5), 5
    real, fake = rng.normal(size=(400, 10)).astype(np.float32), rng.normal(size=(300, 10)).astype(np.float32)
    real[::2], fake[1::2] = 0.25, 0.25  # half of each set one point: radius 0, copies among the queries
    yield "copies", real, fake, 4
    real, fake = _low_rank(rng, 500, 24, 4), _low_rank(rng, 400, 24, 4)
    real[:5] *= 40  # outliers: huge norms (wide slack) and huge radii
    fake[:5] *= 40
    yield "outliers", real, fake, 4
    real, fake = _low_rank(rng, 500, 24, 4, scale=1e4), _low_rank(rng, 400, 24, 4, scale=1e4)
    yield "far from the origin", real + 3e4, fake + 3e4, 4


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("graph", ["true", "random", "partial"])
def test_screened_hits_equal_brute_force(rng, strict, graph):
    """With the screen attached, every true radius and scan goes through it: decisions equal the float64
    brute force for random data, low-rank data, lattices (ties on the bound), copies, outliers, and rows far
    from the origin, from exact, random or incomplete graphs (loose or infinite upper bounds)."""
    k = 3
    for case, real, fake, m in _cases(rng):
        ref = brute_pr(real, fake, k=k, strict=strict)
        engine, rp, fp = _prepared(real, fake, budget=1 << 16)
        d = sqdist(real, real)
        np.fill_diagonal(d, np.inf)
        nb = some_graph(rng, d, k, graph)
        with torch.inference_mode():
            upper = UpperRadii(engine, rp, k, neighbours=torch.from_numpy(nb))
            upper.screen = Screen(engine, rp, fit_basis(engine, rp, m, seed=1))
            hits = sampled_hits(engine, fp, torch.arange(fp.n), upper, strict).numpy()
            assert upper.screen.pairs_screened > 0, case
            known = upper.known
            got = upper.true2(torch.nonzero(known).squeeze(1)).numpy()
            np.testing.assert_allclose(got, radii2(real, k)[known.numpy()], rtol=1e-12)  # float64, another order
        np.testing.assert_array_equal(hits, ref["precision_hits"], err_msg=case)


def test_screened_radii_equal_full_rows_and_passes_are_few(rng):
    """True radii from the screen equal the float64 k-th distances (copies count, self excluded), and on
    low-rank data the bound lets few pairs through."""
    x = _low_rank(rng, 3000, 64, 6)
    x[100:110] = x[99]  # copies
    engine = TileEngine(64, CPU, 1 << 20)
    fs = FeatureSet(x, "x")
    p = engine.prepare(fs, engine.center_of(fs))
    true2 = radii2(x, 3)
    screen = Screen(engine, p, fit_basis(engine, p, 8, seed=0))
    owners = torch.arange(0, 3000, 7)
    got = screen.kth2(owners, torch.from_numpy(true2[owners.numpy()] * 1.5), 3)
    np.testing.assert_allclose(got.numpy(), true2[owners.numpy()], rtol=1e-12)
    assert screen.share < 0.05
    # an "upper bound" below the true radius lets fewer than k points through: NaN, never a wrong radius
    low = screen.kth2(owners, torch.from_numpy(true2[owners.numpy()] * 0.25), 3)
    assert torch.isnan(low[torch.from_numpy(true2[owners.numpy()] > 0)]).all()


def test_a_bound_that_fails_falls_back_to_a_full_row(rng):
    x = _low_rank(rng, 600, 32, 4)
    engine = TileEngine(32, CPU, 1 << 18)
    fs = FeatureSet(x, "x")
    p = engine.prepare(fs, engine.center_of(fs))
    d = sqdist(x, x)
    np.fill_diagonal(d, np.inf)
    upper = UpperRadii(engine, p, 3, neighbours=torch.from_numpy(np.argsort(d, 1)[:, :3]))
    upper.screen = Screen(engine, p, fit_basis(engine, p, 4, seed=0))
    upper.upper2[:50] *= 0.1  # no longer bounds: the screen's rows miss neighbours
    got = upper.true2(torch.arange(100))
    np.testing.assert_allclose(got.numpy(), radii2(x, 3)[:100], rtol=1e-12)
    assert upper.n_true == 100


def test_float16_memmap_rows(rng, tmp_path):
    """float16 values from a memmap (the 1.5M runs' storage) through the screen: decisions still exact."""
    real, fake = _low_rank(rng, 700, 256, 8).astype(np.float16), _low_rank(rng, 500, 256, 8).astype(np.float16)
    np.save(tmp_path / "r.npy", real)
    np.save(tmp_path / "f.npy", fake)
    real_m, fake_m = np.load(tmp_path / "r.npy", mmap_mode="r"), np.load(tmp_path / "f.npy", mmap_mode="r")
    ref = brute_pr(real.astype(np.float32), fake.astype(np.float32), k=3)
    engine, rp, fp = _prepared(real_m, fake_m, budget=1 << 20)
    d = sqdist(real.astype(np.float32), real.astype(np.float32))
    np.fill_diagonal(d, np.inf)
    nb = np.argsort(d, 1)[:, :3]
    upper = UpperRadii(engine, rp, 3, neighbours=torch.from_numpy(nb))
    upper.screen, report = build_screen(engine, rp, upper.upper2, True, seed=0)
    assert report is not None and report.used and report.dims == screen_dims(256) == 32
    hits = sampled_hits(engine, fp, torch.arange(fp.n), upper, False).numpy()
    np.testing.assert_array_equal(hits, ref["precision_hits"])


def test_auto_keeps_the_screen_only_where_few_pairs_pass(rng):
    """The pilot measures the pass share: isotropic data (every direction matters) is left to full rows,
    data near a low-dimensional subspace is screened; False never tries, small d never screens."""

    def decide(x, mode="auto"):
        engine = TileEngine(x.shape[1], CPU, 1 << 22)
        fs = FeatureSet(x, "x")
        p = engine.prepare(fs, engine.center_of(fs))
        d = sqdist(x, x)
        np.fill_diagonal(d, np.inf)
        upper2 = torch.from_numpy(np.sort(d, 1)[:, 2] * 1.2)
        return build_screen(engine, p, upper2, mode, seed=0)

    screen, report = decide(rng.normal(size=(3000, 256)).astype(np.float32))
    assert screen is None and report is not None and not report.used and report.pilot_share > PASS_SHARE
    screen, report = decide(_low_rank(rng, 3000, 256, 6))
    assert screen is not None and report.used and report.pilot_share <= PASS_SHARE
    assert decide(_low_rank(rng, 300, 256, 6), False) == (None, None)
    assert decide(_low_rank(rng, 300, 64, 6), True) == (None, None)  # d < 128: no directions to leave out
    assert screen_dims(4096) == 512 and screen_dims(1024) == 128 and screen_dims(127) == 0


@pytest.mark.parametrize("spectrum", ["low", "long"])
def test_compute_epr_same_values_with_and_without_the_screen(spectrum):
    spec = SyntheticSpec(dim=256, spectrum=spectrum)
    real = generate(3000, spec, stream=0).numpy()
    fake = generate(3000, spec, defect="truncation", strength=0.3, stream=1).numpy()
    common = dict(backend="ivf-pca", sample_size=600, seed=3)
    off = compute_epr(real, fake, screen=False, **common)
    on = compute_epr(real, fake, screen=True, **common)
    assert (on.precision, on.recall, on.precision_ci, on.recall_ci) == (
        off.precision,
        off.recall,
        off.precision_ci,
        off.recall_ci,
    )
    screen = on.sampling["precision"]["screen"]
    assert screen["used"] and screen["dims"] == 32 and 0 < screen["share"] < 1 and 0 < screen["pilot_share"] < 1
    assert off.sampling["precision"]["screen"] is None
    # the memory model counts one side's projections (they are released after its decisions) and the tiles
    parts = predicted_peak(on, 1 << 26)
    assert parts["projection screen"] == 3000 * (2 * 32 + 4 + 8) and parts["workspace: screen reach"] > 0
    assert "projection screen" not in predicted_peak(off, 1 << 26)
    assert any("projection screen" in s.name for s in on.stages)
    assert not any("projection screen" in s.name for s in off.stages)


def test_bad_screen_option(rng):
    x = rng.normal(size=(50, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"screen: expected 'auto', True or False, got 'yes'"):
        compute_epr(x, x, screen="yes")
