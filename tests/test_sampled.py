"""The sampled estimator: exact decisions for sampled queries, unbiasedness, interval coverage, audit."""

import functools
import json
import math

import numpy as np
import pytest
import torch

from eprmetrics import AuditWarning, compute_epr, compute_pr
from eprmetrics.engine import TileEngine
from eprmetrics.estimators.design import StratifiedSample, hubness_bins
from eprmetrics.estimators.sampled import sampled_hits
from eprmetrics.inputs import as_feature_set
from eprmetrics.neighbours import UpperRadii
from eprmetrics.report import render
from eprmetrics.synthetic import make_pair
from eprmetrics.validation import check_sample_size
from tests.reference import brute_pr, lattice

CPU = torch.device("cpu")


def _prepared(real, fake, budget=1 << 20, precision="fp32"):
    engine = TileEngine(real.shape[1], CPU, budget, precision=precision)
    r, f = as_feature_set(real, "real"), as_feature_set(fake, "fake")
    c = engine.center_of(r)
    return engine, engine.prepare(r, c), engine.prepare(f, c)


@pytest.mark.parametrize("backend", ["exact", "ivf-gemm", "ivf-pca"])
@pytest.mark.parametrize("strict", [False, True])
def test_everything_sampled_gives_exact_values_and_zero_width(backend, strict):
    real, fake = make_pair(1500, 1300, dim=24, seed=3, defect="truncation", strength=0.2)
    ex = compute_pr(real, fake, strict=strict, density_coverage=False)
    res = compute_epr(real, fake, method="sampled", backend=backend, sample_size=5000, strict=strict)
    assert (res.precision, res.recall) == (ex.precision, ex.recall)
    assert res.precision_ci == (ex.precision, ex.precision) and res.recall_ci == (ex.recall, ex.recall)
    assert res.sampling["precision"]["sample_size"] == 1300 and res.sampling["recall"]["half_width"] == 0.0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("near", [None, "nearest", "random"])
@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("graph", ["true", "random", "partial"])
def test_sampled_hits_equal_brute_force(rng, strict, graph, near, precision):
    """Upper-bound radii from any graph of k distinct others (exact, random, or with -1 holes)
    must give the float64 brute-force membership; lattices give exact ties and zero radii, and
    sets that are half one point give radius 0 beyond the candidates and copies among the queries.
    Reference points said to be near each query (its nearest, or any, with -1 holes) only
    change how hits are found, never the decisions; nor does the GEMM precision of the scans and
    true-radius rows (bf16: the planner's choice where it is faster, a rounding band ~2^-8 wide)."""
    k = 3
    for real, fake in (
        (rng.normal(size=(400, 10)).astype(np.float32), rng.normal(size=(300, 10)).astype(np.float32)),
        (lattice(rng, 300, 5), lattice(rng, 250, 5)),
        _mostly_one_point(rng, 400, 10),  # radius 0 for most, copies among the queries
    ):
        ref = brute_pr(real, fake, k=k, strict=strict)
        engine, rp, fp = _prepared(real, fake, budget=1 << 16, precision=precision)  # many tiles
        d = ((real[:, None, :].astype(np.float64) - real[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        nb = some_graph(rng, d, k, graph)
        with torch.inference_mode():
            upper = UpperRadii(engine, rp, k, neighbours=torch.from_numpy(nb))
            true2 = torch.from_numpy(np.sort(d, 1)[:, k - 1])
            assert torch.all(upper.upper2 >= true2 * (1 - 1e-12))  # float64 sums in another order
            q = torch.arange(fp.n)
            nq = None
            if near == "nearest":
                nq = torch.from_numpy(np.argsort(((fake[:, None, :] - real[None]) ** 2).sum(-1), 1)[:, :3])
            elif near == "random":
                nq = torch.from_numpy(rng.integers(-1, len(real), (fp.n, 4)))
            hits = sampled_hits(engine, fp, q, upper, strict, nq).numpy()
        np.testing.assert_array_equal(hits, ref["precision_hits"])


def some_graph(rng, d, k, graph):
    """k distinct other points per row of the squared distances ``d`` (diagonal inf): the true nearest
    (``"true"``), random ones (``"random"``) or random with holes (``"partial"``: -1, an unbounded radius)."""
    if graph == "true":
        return np.argsort(d, axis=1, kind="stable")[:, :k]
    n = d.shape[0]
    nb = np.stack([rng.choice(np.r_[0:i, i + 1 : n], k, replace=False) for i in range(n)])
    if graph == "partial":
        nb[::7, -1] = -1
    return nb


def _mostly_one_point(rng, n, dim):
    """Half of each set copies of one point (its truncation ψ → 0), the other half around it."""
    real, fake = rng.normal(size=(n, dim)).astype(np.float32), rng.normal(size=(n - 100, dim)).astype(np.float32)
    real[::2], fake[1::2] = 0.25, 0.25
    return real, fake


@functools.lru_cache(maxsize=None)
def _population(n=4000, seed=11):
    real, fake = make_pair(n, n, dim=32, seed=seed, defect="mode_drop", strength=0.3)
    ref = brute_pr(real[:1500], fake, k=3)  # fixed 0/1 population: fakes inside 1500 real balls
    return ref["precision_hits"].astype(float)


def test_stratified_estimator_unbiased_and_covers():
    """Over 400 seeds: the mean estimate is within 4 standard errors of the truth and
    the 95% intervals hold it at a rate inside the binomial bounds of 0.95."""
    y = _population()
    strata = hubness_bins(np.random.default_rng(0).poisson(3, y.size), 3)
    truth, seeds = y.mean(), 400
    est, covered = [], 0
    for s in range(seeds):
        design = StratifiedSample(strata, seed=s)
        idx = design.draw(300)
        e = design.estimate(idx, y[idx])
        est.append(e.value)
        covered += e.contains(truth)
    est = np.array(est)
    assert abs(est.mean() - truth) <= 4 * est.std(ddof=1) / math.sqrt(seeds)
    lo, hi = 0.95 - 3 * math.sqrt(0.95 * 0.05 / seeds), 0.95 + 3 * math.sqrt(0.95 * 0.05 / seeds)
    assert lo <= covered / seeds <= hi


def test_two_phase_estimator_unbiased_and_covers():
    """Two phases over 400 seeds (a new phase one each time): the strata are a noisy stratifier of the values,
    known only on the phase one; mean within 4 standard errors of the truth, coverage inside the binomial band,
    and the phase one's variance is what keeps it there (dropping it under-covers)."""
    y = _population()
    noisy = np.where(np.random.default_rng(1).random(y.size) < 0.9, y, 1 - y).astype(int)  # 90% right
    truth, seeds = y.mean(), 400
    est, covered, covered_one_phase = [], 0, 0
    for s in range(seeds):
        phase = np.sort(np.random.default_rng([s, 9]).choice(y.size, 400, replace=False))
        design = StratifiedSample(noisy[phase], seed=s, population=y.size)
        idx = design.draw(200)
        e = design.estimate(idx, y[phase][idx])
        assert e.population == y.size and e.phase_one == 400
        est.append(e.value)
        covered += e.contains(truth)
        one = StratifiedSample(noisy[phase], seed=s).estimate(idx, y[phase][idx])  # phase one taken as everything
        covered_one_phase += one.contains(truth)
    est = np.array(est)
    assert abs(est.mean() - truth) <= 4 * est.std(ddof=1) / math.sqrt(seeds)
    lo, hi = 0.95 - 3 * math.sqrt(0.95 * 0.05 / seeds), 0.95 + 3 * math.sqrt(0.95 * 0.05 / seeds)
    assert lo <= covered / seeds <= hi
    assert covered_one_phase / seeds < lo  # the check can fail: without the phase-one term the intervals are short


def test_two_phase_sizing_meets_the_target_and_reduces_to_one_phase():
    y = _population()
    strata = (y > 0).astype(int)
    one, same = StratifiedSample(strata, seed=0), StratifiedSample(strata, seed=0, population=y.size)
    idx = one.draw(300)
    a, b = one.estimate(idx, y[idx]), same.estimate(idx, y[idx])
    assert (a.value, a.half_width, a.phase_one, b.phase_one) == (b.value, b.half_width, None, None)
    assert one.size_for(0.02, idx, y[idx], 0.95) == same.size_for(0.02, idx, y[idx], 0.95)
    phase = np.sort(np.random.default_rng(3).choice(y.size, 2000, replace=False))
    two = StratifiedSample(strata[phase], seed=0, population=y.size)
    pilot = two.draw(100)
    s = two.size_for(0.03, pilot, y[phase][pilot], 0.95)
    assert 0.028 <= two.estimate(two.draw(s), y[phase][two.draw(s)]).half_width <= 0.032
    assert two.size_for(0.005, pilot, y[phase][pilot], 0.95) == 2000  # the phase one alone is wider: all of it


def test_phase_one_size():
    from eprmetrics.estimators.design import PHASE_ONE_SHARE, phase_one_size, z_value

    n1 = phase_one_size(0.01, 0.95, 10**7)
    assert 0.25 * (1 / n1) <= PHASE_ONE_SHARE * (0.01 / z_value(0.95)) ** 2 < 0.25 / (n1 - 1)
    assert phase_one_size(0.01, 0.95, 2 * n1) == n1 and phase_one_size(0.01, 0.95, 2 * n1 - 1) == 2 * n1 - 1
    assert phase_one_size(100, 0.95, 10**6) == 4000 and phase_one_size(100, 0.95, 7999) == 7999


@pytest.mark.parametrize("size", [400, 30])  # 30: a two-phase design (a phase one of 1,200 of the 2,500)
def test_end_to_end_coverage_over_seeds(size, request):
    """compute_epr(method='sampled') over 30 seeds, 100 with --runslow (index training, phase one and sampling
    all reseeded): the coverage bound below scales with the seeds, so both runs test the same claim."""
    real, fake = make_pair(2500, 2500, dim=32, seed=5, defect="truncation", strength=0.3)
    ex = compute_pr(real, fake, density_coverage=False)
    seeds, hits, values = 100 if request.config.getoption("--runslow") else 30, {"precision": 0, "recall": 0}, []
    for s in range(seeds):
        r = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=size, seed=s)
        assert r.sampling["recall"].phase_one == (1200 if size == 30 else None)
        hits["precision"] += r.precision_ci[0] <= ex.precision <= r.precision_ci[1]
        hits["recall"] += r.recall_ci[0] <= ex.recall <= r.recall_ci[1]
        values.append(r.precision)
    lo = 0.95 - 3 * math.sqrt(0.95 * 0.05 / seeds)
    assert hits["precision"] / seeds >= lo and hits["recall"] / seeds >= lo, hits
    values = np.array(values)
    assert abs(values.mean() - ex.precision) <= 4 * values.std(ddof=1) / math.sqrt(seeds)


def test_two_phase_run_records_its_phase_one_and_holds_the_exact_values(rng):
    """A phase one on both sides (ivf-pca, 40 × 50 of 5,000 queries): recorded, and the intervals hold the exact
    values; the decisions of the sampled queries are those of a float64 brute force (population-indexed)."""
    real, fake = make_pair(5000, 4500, dim=48, seed=4, defect="truncation", strength=0.3)
    ex = compute_pr(real, fake, density_coverage=False)
    res = compute_epr(real, fake, method="sampled", backend="ivf-pca", sample_size=50, seed=1)
    for side, n, truth in (("precision", 4500, ex.precision), ("recall", 5000, ex.recall)):
        s = res.sampling[side]
        assert (s.phase_one, s.population) == (2000, n)
        assert s.interval[0] <= truth <= s.interval[1]
    assert "a phase one of 2,000 of 5,000" in " ".join(st.name for st in res.stages)
    assert json.loads(json.dumps(res.to_dict()))["sampling"]["precision"]["phase_one"] == 2000
    assert "strata from a phase one of 2,000 fakes / 2,000 reals" in render(res)
    from eprmetrics.report import _phase_note  # a side whose set was too small for a phase one: all of it

    assert _phase_note(2000, None) == "; strata from a phase one of 2,000 fakes / all reals"


def test_whole_phase_one_sampled_equals_its_brute_force_mean(monkeypatch):
    """One phase-one unit per sampled unit: every phase-one query is decided, and the estimate is the float64
    brute-force mean over exactly those queries (the positions drawn map back to the right rows)."""
    from eprmetrics.estimators import design
    from eprmetrics.estimators.sampled import SIDES, SampleRequest, phase_one

    monkeypatch.setattr(design, "PHASE_ONE_PER_UNIT", 1)
    real, fake = make_pair(3000, 2600, dim=24, seed=6, defect="truncation", strength=0.3)
    ref = brute_pr(real, fake, k=3)
    res = compute_epr(real, fake, method="sampled", backend="ivf-pca", sample_size=1200, seed=3)
    for side, q, hits in (("precision", "fake", "precision_hits"), ("recall", "real", "recall_hits")):
        n = {"real": 3000, "fake": 2600}[q]
        phase = phase_one(n, SampleRequest(1200, 0.95), [3, [s[0] for s in SIDES].index(side), 2])
        assert phase is not None and phase.size == 1200 and res.sampling[side].phase_one == 1200
        assert res.sampling[side].estimate == pytest.approx(ref[hits][phase].mean(), abs=1e-12)


def test_target_half_width_is_met():
    real, fake = make_pair(6000, 6000, dim=32, seed=2)
    res = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=0.02)  # sampled, not planned
    for side in ("precision", "recall"):
        assert res.sampling[side]["half_width"] <= 0.022
        assert res.sampling[side]["sample_size"] < 6000


def _biased_case(rng):
    """Fakes: half on the dense core of the reals (hubs, inside), half scattered on a far shell
    whose nearest neighbours are core points, so no fake has them as neighbours (anti-hubs,
    outside): hub-only precision is near 1, the true one near 0.5."""
    real = rng.normal(size=(1500, 32)).astype(np.float32)
    core = (rng.normal(size=(750, 32)) * 0.5).astype(np.float32)
    direction = rng.normal(size=(750, 32))  # nearly orthogonal: far points are closer to the core than to each other
    far = (direction / np.linalg.norm(direction, axis=1, keepdims=True) * 30).astype(np.float32)
    return real, np.concatenate([core, far])


def test_audit_warns_when_hub_method_is_biased(rng):
    real, fake = _biased_case(rng)
    exact = compute_pr(real, fake, density_coverage=False)
    with pytest.warns(AuditWarning, match="outside") as caught:
        res = compute_epr(real, fake, method="hubness", backend="exact", t=3)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert res.precision > exact.precision + 0.3
    audit = res.audit
    assert not audit["consistent"]
    lo, hi = audit["precision"]["interval"]
    assert lo <= exact.precision <= hi and not lo <= res.precision <= hi
    assert "audit (sampled" in str(res)


def test_audit_silent_when_consistent_and_skippable(rng, recwarn):
    real, fake = make_pair(1200, 1200, dim=16, seed=4)
    res = compute_epr(real, fake, method="hubness", backend="exact", t=0)  # t=0: every point a hub, eP&R is exact
    assert res.audit["consistent"] and not [w for w in recwarn if issubclass(w.category, AuditWarning)]
    assert compute_epr(real, fake, method="hubness", backend="exact", t=0, audit=False).audit is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "fast"}, "method"),
        ({"method": "sampled", "sample_size": 0}, "sample_size"),
        ({"method": "sampled", "sample_size": 1.5}, "sample_size"),
        ({"method": "sampled", "sample_size": "all"}, "sample_size"),
        ({"method": "sampled", "confidence": 1.0}, "confidence"),
        ({"audit": -1}, "audit"),
    ],
)
def test_bad_options(rng, kwargs, match):
    x = rng.normal(size=(50, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=match):
        compute_epr(x, x, **kwargs)


def test_check_sample_size_accepts_both_forms():
    assert check_sample_size(10) == 10 and check_sample_size(0.01) == 0.01


def test_result_json_has_intervals(rng):
    real, fake = make_pair(800, 800, dim=16, seed=9)
    res = compute_epr(real, fake, method="sampled", backend="exact", sample_size=200)
    data = json.loads(res.to_json())
    assert data["method"] == "sampled" and len(data["precision_ci"]) == 2
    assert data["precision_ci"][0] <= data["precision"] <= data["precision_ci"][1]
    assert "sampled estimate" in str(res)


def test_audit_reuses_the_hub_radii():
    """t=0 makes every point a hub: the hub-vs-all pass has every true radius, so the audit needs no row."""
    real, fake = make_pair(900, 800, dim=16, seed=8)
    res = compute_epr(real, fake, method="hubness", backend="ivf-gemm", t=0, audit=400)
    assert res.audit is not None
    assert res.audit.precision.true_radii_computed == 0 and res.audit.recall.true_radii_computed == 0
    exact = compute_pr(real, fake, density_coverage=False)
    assert (res.precision, res.recall) == (exact.precision, exact.recall)  # every point a hub: exact P&R


def _heavy_tailed(rng, n, dim):
    """Student-t rows (3 degrees of freedom) with a few points a hundred times farther out than the rest:
    the sets' largest norms dwarf the typical one (issue 31)."""

    def t(m):
        x = rng.normal(size=(m, dim)) / np.sqrt(rng.chisquare(3, size=(m, 1)) / 3)
        x[:: max(1, m // 5)] *= 100.0
        return x.astype(np.float32)

    return t(n), t(n - 60)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("strict", [False, True])
def test_heavy_tails_decide_as_brute_force_with_per_owner_rounding_bounds(rng, strict, precision):
    """The rounding bounds that settle true radii and pick candidate balls only count points that could lie
    within the radius (norm ≤ ‖owner‖ + r): on heavy tails the decisions stay those of a float64 brute force,
    and (almost) no true radius needs the extra pass over the whole set that the bound against the set's
    largest norm sent most of them to."""
    from eprmetrics.neighbours import Radii

    k = 3
    real, fake = _heavy_tailed(rng, 400, 16)
    ref = brute_pr(real, fake, k=k, strict=strict)
    engine, rp, fp = _prepared(real, fake, budget=1 << 16, precision=precision)
    d = ((real[:, None, :].astype(np.float64) - real[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    with torch.inference_mode():
        owners = torch.arange(0, 400, 3)
        r = Radii(engine, rp, k, owners=engine.subset(rp, owners), owner_ids=owners)
        got = r.exact2(k, torch.arange(owners.numel())).numpy()
        np.testing.assert_allclose(got, np.sort(d, 1)[owners.numpy(), k - 1], rtol=1e-12)
        assert r.n_redecided <= owners.numel() // 20
        upper = UpperRadii(engine, rp, k, neighbours=torch.from_numpy(some_graph(rng, d, k, "random")))
        hits = sampled_hits(engine, fp, torch.arange(fp.n), upper, strict).numpy()
    np.testing.assert_array_equal(hits, ref["precision_hits"])
