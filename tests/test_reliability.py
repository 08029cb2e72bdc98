"""Regressions from a new user's trial (issue 14): no hang, no silently wrong number, one clear line."""

from __future__ import annotations

import contextlib
import signal

import numpy as np
import pytest

from eprmetrics import compute_epr
from tests.reference import brute_pr


@contextlib.contextmanager
def no_hang(seconds: int = 300):
    """Fail (instead of hanging the suite) when the body does not finish; a guard, not a speed check."""

    def _raise(signum, frame):
        raise TimeoutError(f"did not finish within {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("backend", ["ivf-gemm", "faiss-hnsw"])
@pytest.mark.parametrize("strict", [True, False])
def test_duplicate_reference_rows_equal_to_a_query_do_not_hang(backend, strict):
    if backend.startswith("faiss"):
        pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 8)).astype(np.float32)
    fake = rng.normal(size=(500, 8)).astype(np.float32)
    real[:9] = real[0]  # nine identical reference rows: zero radii
    fake[0] = real[0]  # a query on them
    with no_hang():
        res = compute_epr(real, fake, method="sampled", backend=backend, strict=strict, sample_size=500)
    exact = brute_pr(real, fake, 3, strict)
    assert (res.precision, res.recall) == (exact["precision"], exact["recall"])  # everything sampled: exact


def test_hub_audit_with_duplicates_does_not_hang():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(600, 8)).astype(np.float32)
    fake = rng.normal(size=(600, 8)).astype(np.float32)
    real[:12] = real[0]
    fake[:3] = real[0]
    with no_hang():
        res = compute_epr(real, fake, backend="ivf-gemm", strict=True, t=1, audit=600)
    exact = brute_pr(real, fake, 3, True)
    assert res.audit is not None
    assert (res.audit.precision.estimate, res.audit.recall.estimate) == (exact["precision"], exact["recall"])
