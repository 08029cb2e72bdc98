"""CUDA paths give the CPU's decisions (skipped without a GPU)."""

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr, compute_pr
from tests.reference import lattice

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("strict", [False, True])
def test_cuda_equals_cpu(rng, strict):
    real, fake = lattice(rng, 400, 4, high=4), rng.normal(size=(300, 4)).astype(np.float32)
    cpu = compute_pr(real, fake, k=(3, 5), strict=strict, device="cpu")
    gpu = compute_pr(real, fake, k=(3, 5), strict=strict, device="cuda")
    assert gpu.per_k == cpu.per_k
    assert gpu.peak_device_memory is not None


def test_cuda_epr_equals_cpu(rng):
    real = rng.normal(size=(500, 16)).astype(np.float32)
    fake = rng.normal(size=(400, 16)).astype(np.float32)
    a = compute_epr(real, fake, backend="exact", device="cpu")
    b = compute_epr(real, fake, backend="exact", device="cuda")
    assert (a.precision, a.recall) == (b.precision, b.recall)


def test_cuda_tensor_inputs(rng):
    real = torch.from_numpy(rng.normal(size=(200, 8)).astype(np.float32)).cuda()
    res = compute_pr(real, real[:150], device="cuda")
    assert res.precision == 1.0


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_cuda_reduced_precision_keeps_decisions(rng, precision):
    real, fake = rng.normal(size=(600, 64)).astype(np.float32), rng.normal(size=(500, 64)).astype(np.float32)
    cpu = compute_pr(real, fake, device="cpu")
    gpu = compute_pr(real, fake, device="cuda", precision=precision)
    assert gpu.per_k == cpu.per_k and gpu.gemm_precision == precision


def test_cuda_sampled_everything_is_exact(rng):
    real, fake = rng.normal(size=(700, 16)).astype(np.float32), rng.normal(size=(650, 16)).astype(np.float32)
    ex = compute_pr(real, fake, device="cpu", density_coverage=False)
    s = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=1000, device="cuda")
    assert (s.precision, s.recall) == (ex.precision, ex.recall)
