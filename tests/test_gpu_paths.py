"""The CUDA data path and ivf-gemm on CUDA (issue 15, items 8 and 9), checked on the CPU by simulation.

* Sets uploaded to the device once when they fit (forced here on the CPU): every value equals the
  streamed path and a float64 brute force; host rows cross in their stored dtype; the decision
  follows (mocked) free memory; column blocks read one ahead in a thread give identical passes.
* ivf-gemm picked by ``auto`` on CUDA; its bf16 scans (the CUDA default, run here on the CPU) find the
  same neighbours and measure them in fp32; its list loop reads nothing back from the device.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr, compute_pr, knn_graph
from eprmetrics.engine import FeatureSet, TileEngine, transfer
from eprmetrics.engine import sets as sets_mod
from eprmetrics.engine import tiles as tiles_mod
from eprmetrics.neighbours.ann import faiss_backend, resolve_backend
from eprmetrics.neighbours.ann.ivf_gemm import IVFGemm, scan_dtype
from eprmetrics.synthetic import make_pair
from tests.reference import brute_pr, lattice

CPU = torch.device("cpu")
CUDA = torch.device("cuda", 0)


# ------------------------------------------------------------ 8. resident sets
@pytest.fixture
def resident_on_cpu(monkeypatch):
    """Every set is 'uploaded' (to the CPU, as a tensor copy) as it would be to a GPU it fits on."""
    uploads = []
    on_device = FeatureSet.on_device

    def spy(self, device, chunk_bytes=1 << 26):
        uploads.append((self.name, device))
        return on_device(self, device, chunk_bytes=997)  # odd block size: the upload is done in several blocks

    monkeypatch.setattr(tiles_mod, "fits_on_device", lambda nbytes, device, reserve=0: True)
    monkeypatch.setattr(FeatureSet, "on_device", spy)
    return uploads


def _memmap(tmp_path, name, x):
    path = tmp_path / f"{name}.npy"
    np.save(path, x)
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("kind", ["float16-memmap", "int-lattice", "float64", "scaled"])
def test_resident_sets_give_the_streamed_values(tmp_path, resident_on_cpu, kind):
    rng = np.random.default_rng(3)
    if kind == "float16-memmap":
        real = _memmap(tmp_path, "r", lattice(rng, 500, 6).astype(np.float16) / 4)
        fake = _memmap(tmp_path, "f", lattice(rng, 400, 6).astype(np.float16) / 4)
    elif kind == "int-lattice":
        real, fake = lattice(rng, 500, 5).astype(np.int64), lattice(rng, 400, 5).astype(np.int64)
    elif kind == "float64":
        real, fake = rng.normal(size=(500, 7)), rng.normal(size=(400, 7)) + 0.3
    else:  # squares would overflow fp32: the inputs are scaled by a power of two on the way out
        real, fake = lattice(rng, 500, 4).astype(np.float64) * 1e30, lattice(rng, 400, 4).astype(np.float64) * 1e30
    got = compute_pr(real, fake, k=3, density_coverage=True, realism=True, memory_budget=1 << 16)
    assert [name for name, _ in resident_on_cpu] == ["real", "fake"]
    resident_on_cpu.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiles_mod, "fits_on_device", lambda nbytes, device, reserve=0: False)
        want = compute_pr(real, fake, k=3, density_coverage=True, realism=True, memory_budget=1 << 16)
    assert resident_on_cpu == []
    ref = brute_pr(np.asarray(real, np.float64), np.asarray(fake, np.float64), 3)
    assert (got.precision, got.recall) == (want.precision, want.recall) == (ref["precision"], ref["recall"])
    assert (got.density, got.coverage) == (want.density, want.coverage)
    np.testing.assert_array_equal(got.realism, want.realism)


def test_resident_sets_in_the_sampled_path(resident_on_cpu):
    real, fake = (x.half().numpy() for x in make_pair(2500, 2500, dim=16, seed=2, defect="truncation", strength=0.3))
    got = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=300, seed=1)
    assert len(resident_on_cpu) == 2
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tiles_mod, "fits_on_device", lambda nbytes, device, reserve=0: False)
        want = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=300, seed=1)
    assert (got.precision, got.recall, got.precision_ci, got.recall_ci) == (
        want.precision,
        want.recall,
        want.precision_ci,
        want.recall_ci,
    )


def test_on_device_keeps_the_stored_dtype_and_values(tmp_path):
    x16 = _memmap(tmp_path, "x", np.random.default_rng(0).normal(size=(300, 5)).astype(np.float16))
    up = FeatureSet(x16, "real").on_device(CPU, chunk_bytes=64)
    assert isinstance(up.data, torch.Tensor) and up.data.dtype == torch.float16
    np.testing.assert_array_equal(up.data.numpy(), np.asarray(x16))
    ints = FeatureSet(np.arange(12).reshape(4, 3), "fake", scale=0.5).on_device(CPU)
    assert ints.data.dtype == torch.float64 and ints.scale == 0.5 and ints.is_float64
    assert ints.on_device(CPU) is ints  # already there: no second copy


def test_residency_follows_free_memory(monkeypatch):
    free = {"bytes": 10 << 30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 << 30))
    assert transfer.fits_on_device(4 << 30, CUDA)  # 4 GiB ≤ 0.4 × 10 GiB
    assert not transfer.fits_on_device(5 << 30, CUDA)
    assert not transfer.fits_on_device(3 << 30, CUDA, reserve=4 << 30)  # a fixed tile budget is set aside
    assert not transfer.fits_on_device(1, CPU)  # a CPU reads the caller's arrays where they are
    eng = TileEngine(8, CPU, memory_budget=1 << 20, auto_budget=True)
    eng.device = CUDA  # the decision only; a small set "fits", nothing is uploaded by this check
    sets = {"real": FeatureSet(np.zeros((10, 8), np.float16), "real")}
    free["bytes"] = 100  # too little: the sets stay where they are
    assert eng.resident(sets) is sets


def test_host_rows_cross_in_their_stored_dtype(monkeypatch, tmp_path):
    """A float16 memmap's blocks and float64 re-check rows travel as float16 and are converted on the device."""
    moved = []
    to_device = transfer.to_device
    monkeypatch.setattr(sets_mod, "to_device", lambda rows, device: moved.append(rows.dtype) or to_device(rows, device))
    fs = FeatureSet(_memmap(tmp_path, "x", np.ones((64, 4), np.float16)), "real")
    meta = torch.device("meta")  # a device other than the CPU, without a GPU
    assert fs.block(0, 32, meta, torch.float32).dtype == torch.float32
    assert fs.take(torch.arange(5), meta, torch.float64).dtype == torch.float64
    assert moved == [torch.float16, torch.float16]


def test_to_device_uses_pinned_memory_and_asynchronous_copies_to_cuda(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: calls.append("pin") or self)
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        if args and args[0] == CUDA:
            calls.append(("to", kwargs.get("non_blocking")))
            return self
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    transfer.to_device(torch.ones(3), CUDA)
    assert calls == ["pin", ("to", True)]
    rows = torch.ones(3)
    assert transfer.to_device(rows, CPU) is rows


def test_prefetched_reads_ahead_in_a_thread_and_keeps_the_order():
    threads = []

    def fetch(key):
        threads.append(threading.current_thread().name)
        return key * 10

    assert list(transfer.prefetched(fetch, [3, 1, 2], ahead=True)) == [(3, 30), (1, 10), (2, 20)]
    assert len(threads) == 3 and all(t.startswith("eprmetrics-prefetch") for t in threads)
    threads.clear()
    assert list(transfer.prefetched(fetch, [3, 1], ahead=False)) == [(3, 30), (1, 10)]
    assert threads == [threading.current_thread().name] * 2


@pytest.mark.parametrize("density_coverage", [False, True])
def test_prefetching_passes_give_identical_values(monkeypatch, density_coverage):
    """Self passes, the ball pass and the re-check passes with column blocks read ahead (as on CUDA)."""
    rng = np.random.default_rng(5)
    real, fake = lattice(rng, 700, 4), lattice(rng, 600, 4)
    want = compute_pr(real, fake, density_coverage=density_coverage, realism=True, memory_budget=1 << 16)
    init = TileEngine.__init__

    def prefetching(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.prefetch = True

    monkeypatch.setattr(TileEngine, "__init__", prefetching)
    got = compute_pr(real, fake, density_coverage=density_coverage, realism=True, memory_budget=1 << 16)
    assert (got.precision, got.recall, got.density, got.coverage) == (
        want.precision,
        want.recall,
        want.density,
        want.coverage,
    )
    np.testing.assert_array_equal(got.realism, want.realism)


# ------------------------------------------------------------- 9. ivf-gemm on CUDA
def test_auto_prefers_ivf_gemm_on_cuda_even_with_gpu_faiss(monkeypatch):
    monkeypatch.setattr(faiss_backend, "faiss_gpu_available", lambda: True)
    for radii in ("ann", "sampled"):
        assert resolve_backend("auto", 200_000, 4096, CUDA, radii)[0] == "ivf-gemm"
    assert resolve_backend("auto", 200_000, 4096, CUDA, "exact")[0] == "ivf-gemm"
    assert resolve_backend("auto", 3000, 64, CUDA, "sampled")[0] == "exact"


def test_scan_precision_resolves_per_device():
    assert scan_dtype("auto", CUDA) == torch.bfloat16 and scan_dtype("auto", CPU) is None
    stats: dict = {}
    knn_graph(np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32), 3, backend="ivf-gemm", stats=stats)
    assert stats["params"]["scan_precision"] == "fp32"  # what "auto" resolved to on this CPU
    assert scan_dtype("fp32", CUDA) is None and scan_dtype("bf16", CPU) == torch.bfloat16
    with pytest.raises(ValueError, match="scan_precision"):
        knn_graph(np.zeros((100, 4), np.float32), 3, backend="ivf-gemm", options={"scan_precision": "fp8"})


def _recall(a, b):
    return np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)])


@pytest.mark.parametrize("spectrum", ["low", "long", "digits"])
def test_bf16_scans_find_the_fp32_neighbours_and_measure_them_in_fp32(spectrum):
    if spectrum == "digits":
        from sklearn.datasets import load_digits

        x = load_digits().data.astype(np.float32)
    else:
        x = make_pair(4000, 10, dim=64, spectrum=spectrum, seed=4)[0].numpy()
    _, exact = knn_graph(x, 5, backend="exact")
    _, i32 = knn_graph(x, 5, backend="ivf-gemm", options={"scan_precision": "fp32"})
    stats: dict = {}
    d16, i16 = knn_graph(x, 5, backend="ivf-gemm", options={"scan_precision": "bf16"}, stats=stats)
    assert stats["params"]["scan_precision"] == "bf16"
    assert _recall(exact, i16) >= _recall(exact, i32) - 0.005
    true = np.sqrt(((x[:, None, :].astype(np.float64) - x[i16].astype(np.float64)) ** 2).sum(-1))
    np.testing.assert_allclose(d16, true, rtol=1e-5, atol=1e-5)


def test_bf16_scans_leave_the_sampled_estimate_unchanged():
    """A graph only bounds radii (re-derived in float64): the sampled queries' decisions, hence the estimate
    and its intervals, are the same with bf16 scans."""
    real, fake = make_pair(3000, 3000, dim=32, seed=6, defect="mode_drop", strength=0.4, spectrum="long")
    kw = dict(method="sampled", backend="ivf-gemm", sample_size=400, seed=2)
    a = compute_epr(real, fake, backend_options={"scan_precision": "fp32"}, **kw)
    b = compute_epr(real, fake, backend_options={"scan_precision": "bf16"}, **kw)
    assert (a.precision, a.recall, a.precision_ci, a.recall_ci) == (b.precision, b.recall, b.precision_ci, b.recall_ci)


def _device_reads(monkeypatch):
    """Counts the calls that read a tensor's value back to the host (each a device synchronisation on CUDA)."""
    count = {"n": 0}
    for name in ("item", "tolist", "__int__", "__float__", "__bool__", "__index__", "cpu", "numpy"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, **kw):
            count["n"] += 1
            return _real(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return count


@pytest.mark.parametrize("method", ["search", "search_queries"])
def test_the_list_loop_reads_nothing_back_from_the_device(monkeypatch, method):
    """Reads back per search stay the same whatever the number of lists (they were ~2·nprobe per list)."""
    x = np.random.default_rng(7).normal(size=(3000, 16)).astype(np.float32)
    reads = []
    for nlist in (8, 40):
        impl = IVFGemm(nlist=nlist, nprobe=4, query_nprobe=2)
        impl.used_params = impl.resolve_params(*x.shape)
        impl.build(x, seed=0, device=CPU)
        with pytest.MonkeyPatch.context() as mp:
            count = _device_reads(mp)
            getattr(impl, method)(x, 4)
        reads.append(count["n"])
    assert reads[0] == reads[1] <= 8


def test_prefetching_after_a_pass_on_device_rows(rng):
    """A call whose sets are partly on the device (a CUDA tensor and a host array, as a user may pass them):
    the prefetch thread then writes into buffers the caller's thread made under inference mode, and must
    run in that mode too (torch refuses in-place updates of inference tensors outside it)."""
    from eprmetrics.engine import budget_for_tile

    eng = TileEngine(8, CPU, budget_for_tile(100, 8))
    eng.prefetch = True
    x = rng.normal(size=(500, 8)).astype(np.float32)
    with torch.inference_mode():
        c = eng.center_of(FeatureSet(x, "real"))
        on_device = eng.prepare(FeatureSet(torch.from_numpy(x.copy()), "real"), c)  # read in this thread
        on_host = eng.prepare(FeatureSet(x, "fake"), c)  # read ahead in the prefetch thread
        a, b = eng.self_topk(on_device, 3), eng.self_topk(on_host, 3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_the_prefetch_thread_uses_the_callers_gpu(monkeypatch):
    """The current CUDA device is per thread: the worker is put on the device the pass runs on."""
    entered = []

    class Device:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            entered.append((threading.current_thread().name, self.device))

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(torch.cuda, "device", Device)
    gpu3 = torch.device("cuda", 3)
    assert [v for _, v in transfer.prefetched(lambda k: k, [0, 1, 2], ahead=True, device=gpu3)] == [0, 1, 2]
    assert len(entered) == 3 and all(t.startswith("eprmetrics-prefetch") and d == gpu3 for t, d in entered)
