"""flat_values: what every adapter reports, as separate floats, with torch-fidelity's F-score."""

import inspect

import numpy as np
import pytest

from eprmetrics import compute_epr, compute_pr
from eprmetrics.integrations.common import f_score, flat_values
from tests.reference import brute_pr


def sets(seed: int = 0, shift: float = 0.0):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(120, 6)).astype("float32")
    fake = (rng.normal(size=(90, 6)) + shift).astype("float32")
    return real, fake


def test_f_score_is_the_harmonic_mean_and_zero_when_both_are_zero():
    assert f_score(0.0, 0.0) == 0.0
    assert f_score(1.0, 0.0) == 0.0
    assert f_score(0.5, 0.25) == pytest.approx(2 * 0.5 * 0.25 / 0.75)


def test_f_score_equals_torch_fidelity_on_every_input():
    """torch-fidelity floors P + R at 1e-5: tiny values (one hit in 10^6 samples) must agree too."""
    prc = pytest.importorskip("torch_fidelity.metric_prc")
    source = inspect.getsource(prc)
    assert "max(1e-5, precision + recall)" in source  # the formula this test mirrors
    for p, r in [(0.0, 0.0), (1.0, 0.0), (0.5, 0.25), (2e-6, 3e-6), (1e-6, 0.0), (0.99, 0.98)]:
        assert f_score(p, r) == 2 * p * r / max(1e-5, p + r)
    assert f_score(2e-6, 3e-6) != 2 * 2e-6 * 3e-6 / 5e-6  # the floor changes this one
    real, fake = sets(shift=100.0)  # the sets do not overlap: P = R = 0
    out = flat_values(compute_pr(real, fake, k=3), (3,))
    assert out["precision"] == out["recall"] == out["f_score"] == 0.0


def test_exact_values_are_scalars_with_every_k():
    real, fake = sets(shift=0.4)
    out = flat_values(compute_pr(real, fake, k=(3, 5)), (3, 5))
    assert all(type(v) is float for v in out.values())
    for k, suffix in ((3, ""), (3, "_k3"), (5, "_k5")):
        ref = brute_pr(real, fake, k=k)
        for name in ("precision", "recall", "density", "coverage"):
            assert out[name + suffix] == pytest.approx(ref[name], abs=1e-12), name + suffix
        assert out["f_score" + suffix] == pytest.approx(f_score(ref["precision"], ref["recall"]), abs=1e-12)
    assert not any("_ci" in key for key in out)


def test_sampled_intervals_are_separate_low_and_high_floats():
    real, fake = sets(shift=0.4)
    res = compute_epr(real, fake, method="sampled", sample_size=30, seed=2)
    out = flat_values(res, (3,))
    assert set(out) == {
        "precision", "recall", "f_score",
        "precision_ci_low", "precision_ci_high", "recall_ci_low", "recall_ci_high",
    }  # fmt: skip
    assert all(type(v) is float for v in out.values())
    assert (out["precision_ci_low"], out["precision_ci_high"]) == tuple(res.precision_ci)
    assert (out["recall_ci_low"], out["recall_ci_high"]) == tuple(res.recall_ci)
    assert out["f_score"] == f_score(res.precision, res.recall)
