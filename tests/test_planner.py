"""The planner: compute_epr defaults to the sampled method, and takes the exact path where it is cheaper."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr, compute_pr
from eprmetrics.engine import FeatureSet
from eprmetrics.estimators import planner
from eprmetrics.synthetic import make_pair

# Rates of a fast, GEMM-bound device: large problems favour sampling.
FAST = planner.Rates(gemm_flops=2e11, per_element=1e-10, per_f64_element=1e-9)


def _sets(n_real: int, n_fake: int, dim: int) -> dict[str, FeatureSet]:
    # Only sizes matter to the planner: zero-strided arrays of the right shape, no memory.
    return {
        "real": FeatureSet(np.broadcast_to(np.float32(0), (n_real, dim)), "real"),
        "fake": FeatureSet(np.broadcast_to(np.float32(0), (n_fake, dim)), "fake"),
    }


def test_default_method_is_sampled():
    assert inspect.signature(compute_epr).parameters["method"].default == "sampled"


def test_small_sets_take_the_exact_path_with_zero_width_intervals():
    real, fake = make_pair(600, 500, dim=16, seed=3, defect="truncation", strength=0.3)
    exact = compute_pr(real, fake, density_coverage=False)
    res = compute_epr(real, fake)
    assert res.method == "sampled" and res.plan is not None and res.plan.path == "exact"
    assert (res.precision, res.recall) == (exact.precision, exact.recall)
    assert res.precision_ci == (exact.precision, exact.precision) and res.recall_ci == (exact.recall, exact.recall)
    assert res.sampling is not None and res.sampling["precision"].sample_size == 500
    assert "exact answer instead of a sample" in str(res) and "plan: exact" in str(res)
    data = json.loads(res.to_json())
    assert data["plan"]["path"] == "exact" and data["plan"]["actual"]["cross pass"] > 0


def test_large_sets_are_sampled_and_small_ones_exact(monkeypatch):
    monkeypatch.setattr(planner, "calibrate", lambda device, dim: FAST)
    cpu = torch.device("cpu")
    small = planner.plan_sampled(_sets(2000, 2000, 512), 3, "auto", 0.01, 0.95, cpu)
    large = planner.plan_sampled(_sets(200_000, 200_000, 512), 3, "auto", 0.01, 0.95, cpu)
    assert small.path == "exact" and "both sets ≤ 5,000" in small.reason
    middle = planner.plan_sampled(_sets(8000, 8000, 512), 3, "auto", 0.01, 0.95, cpu)
    assert middle.path == "exact" and "exact predicted" in middle.reason
    assert large.path == "sampled" and large.backends == {"real": "ivf-pca", "fake": "ivf-pca"}  # sub-quadratic
    assert sum(large.predicted.values()) < planner.SAMPLED_MARGIN * large.alternative["exact"]


def test_sampled_cost_grows_slower_than_exact(monkeypatch):
    monkeypatch.setattr(planner, "calibrate", lambda device, dim: FAST)
    cpu = torch.device("cpu")
    ratios = []
    for n in (50_000, 400_000):
        choice = planner.plan_sampled(_sets(n, n, 512), 3, "auto", 0.01, 0.95, cpu)
        ratios.append(sum(choice.predicted.values()) / choice.alternative["exact"])
    assert ratios[1] < ratios[0]


def test_a_requested_backend_is_always_sampled(monkeypatch):
    monkeypatch.setattr(planner, "calibrate", lambda device, dim: FAST)
    choice = planner.plan_sampled(_sets(300, 300, 8), 3, "ivf-gemm", 100, 0.95, torch.device("cpu"))
    assert choice.path == "sampled" and choice.backends == {"real": "ivf-gemm", "fake": "ivf-gemm"}
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(400, 8)).astype(np.float32), rng.normal(size=(400, 8)).astype(np.float32)
    res = compute_epr(x, y, backend="ivf-gemm", sample_size=100)
    assert res.plan is not None and res.plan.path == "sampled" and res.backend == "ivf-gemm"
    assert res.plan.predicted and set(res.plan.actual) >= {"graphs", "sampled membership"}


def test_the_planner_decides_through_compute_epr(monkeypatch):
    """With rates that make GEMMs nearly free, the cost of sampling's fixed work tips the choice to exact;
    with rates that make them dear at large n, sampling wins: the decision follows the model."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(6000, 8)).astype(np.float32), rng.normal(size=(6000, 8)).astype(np.float32)
    slow_gemm = planner.Rates(gemm_flops=1e6, per_element=1e-6, per_f64_element=1e-12)
    monkeypatch.setattr(planner, "calibrate", lambda device, dim: slow_gemm)
    res = compute_epr(x, y, sample_size=300)
    assert res.plan is not None and res.plan.path == "sampled", res.plan
    assert res.precision_ci is not None and res.precision_ci[0] < res.precision_ci[1]


def test_calibration_is_measured_once_and_plausible():
    planner._RATES.clear()
    a = planner.calibrate(torch.device("cpu"), 300)
    b = planner.calibrate(torch.device("cpu"), 500)  # same bucket (512)
    assert a is b and len(planner._RATES) == 1
    assert 1e8 < a.gemm_flops < 1e14 and 0 < a.per_element < 1e-6 and 0 < a.per_f64_element < 1e-6


def test_actual_costs_group_the_stages():
    from eprmetrics.profiling import Stage

    stages = [
        Stage("real: subspace construction (ivf-gemm build)", 1.0, 0, 0),
        Stage("real: approximate k-NN graph (ivf-gemm search, k-occurrence)", 2.0, 0, 0),
        Stage("precision: exact membership of sampled fake queries", 0.5, 0, 0),
        Stage("real↔fake distances + ratios", 0.25, 0, 0),
    ]
    assert planner.actual_costs(stages) == {"graphs": 3.0, "sampled membership": 0.5, "cross pass": 0.25}


@pytest.mark.parametrize("spectrum", ["low", "long"])
def test_default_result_holds_the_exact_value(monkeypatch, spectrum):
    """The default call at a size where it samples (rates that make GEMMs dear: below 5,000 points a set, or
    with this CPU's rates at this size, it would answer exactly and the check could not fail) brackets the
    exact value on both sides."""
    slow_gemm = planner.Rates(gemm_flops=1e6, per_element=1e-6, per_f64_element=1e-12)
    monkeypatch.setattr(planner, "calibrate", lambda device, dim: slow_gemm)
    real, fake = make_pair(6000, 6000, dim=24, seed=6, spectrum=spectrum, defect="truncation", strength=0.2)
    exact = compute_pr(real, fake, density_coverage=False)
    res = compute_epr(real, fake)
    assert res.plan is not None and res.plan.path == "sampled", res.plan
    assert res.precision_ci is not None and res.recall_ci is not None
    assert res.precision_ci[0] < res.precision_ci[1] and res.recall_ci[0] < res.recall_ci[1]
    assert res.precision_ci[0] <= exact.precision <= res.precision_ci[1]
    assert res.recall_ci[0] <= exact.recall <= res.recall_ci[1]


def test_decision_precision_is_bf16_only_where_measured_faster():
    """The sampled decisions' GEMMs go to bf16 only when this device's bf16 GEMM was measured at least
    BF16_SPEEDUP times its fp32 one, and only from the default fp32 (a precision the caller chose stays)."""
    fast_bf16 = planner.Rates(2e11, 1e-10, 1e-9, gemm_bf16_flops=2e11 * planner.BF16_SPEEDUP)
    slow_bf16 = planner.Rates(2e11, 1e-10, 1e-9, gemm_bf16_flops=2e11 * planner.BF16_SPEEDUP * 0.99)
    assert planner.decision_precision("fp32", fast_bf16) == "bf16"
    assert planner.decision_precision("fp32", slow_bf16) == "fp32"
    assert planner.decision_precision("fp32", FAST) == "fp32"  # not measured
    assert planner.decision_precision("tf32", fast_bf16) == "tf32"
    # The cost model prices the decisions at the precision they will run at.
    sets = _sets(200_000, 200_000, 512)
    _, at32 = planner.sampled_cost(sets, 3, 0.01, 0.95, fast_bf16, precision="fp32")
    _, at16 = planner.sampled_cost(sets, 3, 0.01, 0.95, fast_bf16, precision="bf16")
    assert at16["sampled membership"] < at32["sampled membership"]
    assert at16["graphs"] == at32["graphs"]


@pytest.mark.parametrize("speedup", [0.0, float("inf")])
def test_decision_precision_changes_no_answer(monkeypatch, speedup):
    """bf16 or fp32 decisions (the same seed draws the same queries): identical estimates and intervals, and
    the plan says which precision decided."""
    real, fake = make_pair(3000, 2800, dim=48, seed=5, defect="truncation", strength=0.3)
    kw = dict(method="sampled", backend="ivf-gemm", sample_size=0.03, seed=1)
    monkeypatch.setattr(planner, "BF16_SPEEDUP", 1.0)
    monkeypatch.setattr(planner, "_RATES", {})
    monkeypatch.setattr(planner, "_measure", lambda device, dim: planner.Rates(1e10, 1e-9, 1e-9, 1e10 * speedup))
    res = compute_epr(real, fake, **kw)
    assert res.plan.params["decision_precision"] == ("bf16" if speedup > 1 else "fp32")
    monkeypatch.setattr(planner, "_RATES", {})
    monkeypatch.setattr(planner, "_measure", lambda device, dim: planner.Rates(1e10, 1e-9, 1e-9, 0.0))
    ref = compute_epr(real, fake, **kw)
    assert ref.plan.params["decision_precision"] == "fp32"
    assert (res.precision, res.recall, res.precision_ci, res.recall_ci) == (
        ref.precision,
        ref.recall,
        ref.precision_ci,
        ref.recall_ci,
    )


def test_true_radius_rows_stay_fp32_under_bf16_scans(monkeypatch):
    """Where the planner picks bf16 decisions, only the scans run in bf16: the true-radius rows stay on the
    bounds' fp32 engine (bf16 rows made the heavy family's decisions 4x slower, benchmarks/bench_decisions.py)."""
    from eprmetrics.neighbours import radii as radii_module

    seen = []
    original = radii_module.Radii.__init__

    def spy(self, engine, *args, **kwargs):
        if kwargs.get("owners") is not None:
            seen.append(engine.precision)
        original(self, engine, *args, **kwargs)

    monkeypatch.setattr(radii_module.Radii, "__init__", spy)
    monkeypatch.setattr(planner, "BF16_SPEEDUP", 1.0)
    monkeypatch.setattr(planner, "_RATES", {})
    monkeypatch.setattr(planner, "_measure", lambda device, dim: planner.Rates(1e10, 1e-9, 1e-9, 1e11))
    real, fake = make_pair(3000, 2800, dim=48, seed=5, defect="truncation", strength=0.3)
    res = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=0.03, seed=1)
    assert res.plan.params["decision_precision"] == "bf16"
    assert seen and set(seen) == {"fp32"}


def test_the_prediction_is_revised_from_each_sides_pilot():
    """After both pilots the plan's membership forecast is each pilot's seconds per query times the queries
    it asked for; the other stages keep the up-front model; a count-sized sample has no pilot, no revision."""
    real, fake = make_pair(6000, 6000, dim=32, seed=3, defect="truncation", strength=0.3)
    res = compute_epr(real, fake, sample_size=0.05, seed=0, backend="ivf-pca")  # a backend: always sampled
    assert res.plan.path == "sampled" and res.plan.predicted
    sides = res.sampling.values()
    assert all(s.pilot is not None and s.pilot["queries"] > 0 for s in sides)
    forecast = sum(s.pilot["seconds"] / s.pilot["queries"] * s.sample_size for s in sides)
    assert res.plan.revised["sampled membership"] == pytest.approx(forecast)
    assert {k: v for k, v in res.plan.revised.items() if k != "sampled membership"} == {
        k: v for k, v in res.plan.predicted.items() if k != "sampled membership"
    }
    assert "after the pilots" in str(res) and json.loads(res.to_json())["plan"]["revised"] == res.plan.revised
    counted = compute_epr(real, fake, sample_size=400, seed=0, backend="ivf-pca")
    assert counted.plan.revised == {} and all(s.pilot is None for s in counted.sampling.values())
