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
    a = compute_epr(real, fake, method="hubness", backend="exact", device="cpu")
    b = compute_epr(real, fake, method="hubness", backend="exact", device="cuda")
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


# Issue 15: the CUDA paths that tests/test_cuda_sim.py simulates on a CPU, on a real device.
def test_cuda_resolves_to_the_current_device():
    from eprmetrics.engine import resolve_device

    assert resolve_device("cuda") == torch.device("cuda", torch.cuda.current_device())
    assert resolve_device("auto") == resolve_device("cuda")


@pytest.mark.skipif(not hasattr(torch.backends.cuda.matmul, "fp32_precision"), reason="torch < 2.9")
def test_cuda_tf32_set_through_the_new_api(rng):
    from eprmetrics.engine import matmul_precision

    real, fake = rng.normal(size=(600, 64)).astype(np.float32), rng.normal(size=(500, 64)).astype(np.float32)
    cpu = compute_pr(real, fake, device="cpu")
    saved = torch.backends.cuda.matmul.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        a, b = torch.randn(512, 2048, device="cuda"), torch.randn(256, 2048, device="cuda")
        ref = a.double() @ b.double().T
        with matmul_precision("fp32"):  # full fp32 although the user asked for TF32 globally
            err = ((a @ b.T).double() - ref).abs().max() / ref.abs().max()
        assert err < 1e-5  # TF32 inputs (10 mantissa bits) err by ~1e-3
        for precision in ("fp32", "tf32"):
            assert compute_pr(real, fake, device="cuda", precision=precision).per_k == cpu.per_k
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    finally:
        torch.backends.cuda.matmul.fp32_precision = saved


def test_cuda_bf16_gemm_accumulates_and_returns_fp32():
    from eprmetrics.engine import matmul_precision, sqdist_block

    g = torch.Generator(device="cuda").manual_seed(0)
    a, b = torch.randn(256, 2048, device="cuda", generator=g), torch.randn(300, 2048, device="cuda", generator=g)
    a_sq, b_sq = a.pow(2).sum(1), b.pow(2).sum(1)
    with matmul_precision("bf16"):
        d = sqdist_block(a, a_sq, b, b_sq, "bf16")
    assert d.dtype == torch.float32
    ab = a.bfloat16().double() @ b.bfloat16().double().T  # the same bf16 inputs, exact products and sums
    ref = (a_sq.double()[:, None] - 2 * ab + b_sq.double()[None, :]).clamp_min(0)
    scale = (a.norm(dim=1)[:, None] + b.norm(dim=1)[None, :]).double() ** 2
    assert ((d.double() - ref).abs() / scale).max() < 1e-6  # a bf16 output or reduction errs by ~1e-5


def test_cuda_tiles_stay_below_2_31_elements():
    from eprmetrics.engine import TileEngine, default_memory_budget

    dev = torch.device("cuda")
    eng = TileEngine(64, dev, max(default_memory_budget(dev), 1 << 40))
    assert eng.tile * eng.tile < 2**31


def test_cuda_ivf_gemm_centres_are_reproducible(rng):
    from eprmetrics.neighbours.ann.ivf_gemm import IVFGemm

    x = rng.normal(size=(20000, 64)).astype(np.float32)
    runs = []
    for _ in range(2):
        backend = IVFGemm()
        backend.used_params = backend.resolve_params(*x.shape)
        backend.build(x, seed=3, device=torch.device("cuda"))
        runs.append((backend.centers.cpu(), backend.order.cpu()))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])  # bit for bit


def test_cuda_faiss_gpu_index_is_seeded(rng):
    from eprmetrics.neighbours.ann import get_backend
    from eprmetrics.neighbours.ann.faiss_backend import faiss_gpu_available

    if not faiss_gpu_available():
        pytest.skip("faiss without GPUs")
    x = rng.normal(size=(5000, 32)).astype(np.float32)
    backend = get_backend("faiss-ivf")()
    backend.used_params = backend.resolve_params(*x.shape)
    backend.build(x, seed=77, device=torch.device("cuda"))
    assert backend.on_gpu and backend.index.cp.seed == 77


# Issue 15, items 8-9: the data path and ivf-gemm on a real device.
@pytest.mark.parametrize("resident", [True, False])
def test_cuda_resident_and_streamed_memmaps_equal_cpu(rng, tmp_path, monkeypatch, resident):
    from eprmetrics.engine import tiles

    monkeypatch.setattr(tiles, "fits_on_device", lambda nbytes, device, reserve=0: resident)
    for name, n in (("real", 900), ("fake", 800)):
        np.save(tmp_path / f"{name}.npy", (lattice(rng, n, 6) / 4).astype(np.float16))
    real, fake = (np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in ("real", "fake"))
    budget = 1 << 18  # many tiles: streamed blocks are read ahead in a thread
    cpu = compute_pr(real, fake, k=(3, 5), memory_budget=budget, device="cpu", realism=True)
    gpu = compute_pr(real, fake, k=(3, 5), memory_budget=budget, device="cuda", realism=True)
    assert gpu.per_k == cpu.per_k
    np.testing.assert_array_equal(gpu.realism, cpu.realism)


def test_cuda_ivf_gemm_scans_in_bf16_and_keeps_the_sampled_estimate(rng):
    from eprmetrics.synthetic import make_pair

    real, fake = (x.numpy() for x in make_pair(6000, 6000, dim=64, seed=3, defect="truncation", strength=0.3))
    kw = dict(method="sampled", backend="ivf-gemm", sample_size=500, seed=1, device="cuda")
    auto = compute_epr(real, fake, **kw)
    fp32 = compute_epr(real, fake, backend_options={"scan_precision": "fp32"}, **kw)
    assert (auto.precision, auto.recall, auto.precision_ci) == (fp32.precision, fp32.recall, fp32.precision_ci)


def test_cuda_auto_backend_is_ivf_gemm(rng):
    from eprmetrics.neighbours.ann import resolve_backend

    assert resolve_backend("auto", 100_000, 512, torch.device("cuda"), "sampled")[0] == "ivf-gemm"


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_cuda_projection_screen_keeps_the_sampled_estimate(rng, precision):
    """The screen's bf16-stored projections and fp32 (or TF32) GEMM on the GPU: the same exact decisions
    as full rows (same device, same graphs and strata)."""
    basis = rng.normal(size=(6, 256))
    real = (rng.normal(size=(3000, 6)) @ basis + 0.05 * rng.normal(size=(3000, 256))).astype(np.float32)
    fake = (rng.normal(size=(2500, 6)) @ basis * 0.9 + 0.05 * rng.normal(size=(2500, 256))).astype(np.float32)
    common = dict(method="sampled", backend="ivf-pca", sample_size=800, seed=2)
    full = compute_epr(real, fake, device="cuda", screen=False, precision=precision, **common)
    gpu = compute_epr(real, fake, device="cuda", screen=True, precision=precision, **common)
    assert (gpu.precision, gpu.recall) == (full.precision, full.recall)
    assert gpu.sampling["precision"]["screen"]["used"]
