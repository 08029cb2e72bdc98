"""The CUDA code paths, tested on a CPU by simulating the CUDA calls they make (issue 15).

Each test patches the ``torch.cuda`` / ``torch.distributed`` / ``faiss`` calls a
CUDA run makes, so a decision that differs between CPU and CUDA is checked
without a GPU; ``tests/test_cuda.py`` runs the same paths on a real device.
"""

import argparse
import gc
import weakref

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr, compute_pr
from eprmetrics.engine import device as device_mod
from eprmetrics.engine import distributed as dist_mod
from eprmetrics.engine.device import matmul_precision, resolve_device
from eprmetrics.engine.tiles import TileEngine, budget_for_tile, sqdist_block
from eprmetrics.synthetic import make_pair

CPU = torch.device("cpu")
NEW_API = hasattr(torch.backends.cuda.matmul, "fp32_precision")  # torch >= 2.9: per-backend fp32 precision
needs_new_api = pytest.mark.skipif(not NEW_API, reason="torch without the per-backend fp32_precision API")


@pytest.fixture(autouse=True)
def _restore_matmul_state():
    """Every test leaves the global GEMM flags as it found them (the torch defaults)."""
    bf16 = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    yield
    torch.set_float32_matmul_precision("highest")
    if NEW_API:
        torch.backends.cuda.matmul.fp32_precision = "none"
        torch.backends.mkldnn.matmul.fp32_precision = "none"
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = bf16


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with 4 GPUs whose current device is 3 (as after ``torch.cuda.set_device(3)``)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)


# ------------------------------------------------- 1. TF32 through the new API
@needs_new_api
def test_matmul_precision_after_tf32_set_through_the_new_api():
    torch.backends.cuda.matmul.fp32_precision = "tf32"  # what a user of torch >= 2.9 writes
    with matmul_precision("fp32"):  # used to raise: legacy getter after the new setter
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    with matmul_precision("tf32"):
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"


@needs_new_api
@pytest.mark.parametrize("legacy", ["highest", "high", "medium"])
def test_matmul_precision_is_full_fp32_inside_and_restores_exactly(legacy):
    torch.set_float32_matmul_precision(legacy)
    before = (torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision)
    for precision, cuda in [("fp32", "ieee"), ("bf16", "ieee"), ("tf32", "tf32")]:
        with matmul_precision(precision):
            assert torch.backends.cuda.matmul.fp32_precision == cuda
            assert torch.backends.mkldnn.matmul.fp32_precision == "ieee"  # CPU GEMMs: never reduced
            assert torch.backends.cuda.matmul.allow_tf32 == (precision == "tf32")  # legacy readers agree
        assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision) == before
    assert torch.get_float32_matmul_precision() == legacy  # the legacy state is untouched


def test_matmul_precision_legacy_fallback(monkeypatch):
    monkeypatch.setattr(device_mod, "_fp32_precision_flags", lambda: None)  # torch < 2.9
    torch.set_float32_matmul_precision("high")
    with matmul_precision("fp32"):
        assert torch.get_float32_matmul_precision() == "highest"
    with matmul_precision("tf32"):
        assert torch.get_float32_matmul_precision() == "high"
    assert torch.get_float32_matmul_precision() == "high"


def test_matmul_precision_restores_after_an_error():
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = True
    with pytest.raises(KeyError), matmul_precision("bf16"):
        raise KeyError("x")
    assert torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction is True
    assert torch.get_float32_matmul_precision() == "highest"


# ------------------------------------- 3. no tile reaches 2^31 elements (nonzero)
def test_tiles_stay_below_2_31_elements_with_a_huge_budget():
    eng = TileEngine(16, CPU, memory_budget=1 << 50)  # 1 PiB: the budget alone allows ~3e8-row tiles
    assert eng.tile * eng.tile < 2**31
    for n in (10**6, 10**8):
        assert eng.tile_for(n) ** 2 < 2**31 and eng.self_tile(n) ** 2 < 2**31
    assert eng.tile * eng.tile >= 2**30  # the cap, not a small tile


# -------------------------------------------------------------- 4. OOM retries
class _Failing:
    """``fn`` for run_pass: allocates a big tensor, then raises CUDA OOM on its first ``fails`` calls."""

    def __init__(self, engine, fails):
        self.engine, self.fails, self.calls, self.tiles, self.refs = engine, fails, 0, [], []

    def __call__(self):
        self.calls += 1
        self.tiles.append(self.engine.tile)
        big = torch.empty(1 << 20)  # the failed attempt's workspace
        self.refs.append(weakref.ref(big))
        if self.calls <= self.fails:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return "done"


def test_oom_retry_empties_the_cache_after_the_failed_attempt_is_released(monkeypatch):
    eng = TileEngine(16, CPU, memory_budget=budget_for_tile(4096, 16))
    fn = _Failing(eng, fails=2)
    alive_at_empty_cache = []

    def empty_cache():
        gc.collect()  # only what is still referenced survives this
        alive_at_empty_cache.append([r() is not None for r in fn.refs])

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    with pytest.warns(RuntimeWarning, match="retrying this pass with"):
        assert eng.run_pass(fn) == "done"
    assert len(alive_at_empty_cache) == 2
    assert alive_at_empty_cache == [[False], [False, False]]  # no failed attempt's tensor was alive
    assert fn.tiles[0] > fn.tiles[1] > fn.tiles[2]


def test_oom_retries_are_bounded_and_name_memory_budget(monkeypatch):
    eng = TileEngine(16, CPU, memory_budget=1 << 40)
    fn = _Failing(eng, fails=10**9)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.warns(RuntimeWarning), pytest.raises(RuntimeError, match=r"memory_budget") as info:
        eng.run_pass(fn)
    assert isinstance(info.value, torch.cuda.OutOfMemoryError)  # callers catching OOM still do
    assert "retries" in str(info.value)
    assert fn.calls <= 9  # one attempt and at most 8 retries
    assert all(a > b for a, b in zip(fn.tiles, fn.tiles[1:]))  # every retry has smaller tiles


def test_oom_at_the_smallest_tile_is_not_retried(monkeypatch):
    eng = TileEngine(16, CPU, memory_budget=1)
    fn = _Failing(eng, fails=10**9)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="memory_budget"):
        eng.run_pass(fn)
    assert fn.calls == 1


class _OOMOnBigTiles:
    """``TileEngine.sqdist`` that raises CUDA OOM (once per pass kind) for tiles over ``rows`` rows."""

    def __init__(self, monkeypatch, rows):
        self.rows, self.failed = rows, 0
        real = TileEngine.sqdist

        def sqdist(engine, a, a_sq, b, b_sq):
            if a.shape[0] > self.rows:
                self.failed += 1
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return real(engine, a, a_sq, b, b_sq)

        monkeypatch.setattr(TileEngine, "sqdist", sqdist)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)


@pytest.mark.parametrize("density_coverage", [False, True])
def test_oom_in_a_pass_reruns_that_pass_alone_and_stays_exact(monkeypatch, density_coverage):
    """Self passes, the ball pass (its tests and realism maxima reset) and the float64 re-check passes each
    retry with smaller tiles; the values equal a float64 brute force, as without the errors."""
    from tests.reference import brute_pr, lattice

    rng = np.random.default_rng(0)
    real, fake = lattice(rng, 700, 4), lattice(rng, 600, 4)  # ties: float64 re-checks run too
    want = compute_pr(real, fake, density_coverage=density_coverage, realism=True, memory_budget=1 << 16)
    oom = _OOMOnBigTiles(monkeypatch, rows=100)
    with pytest.warns(RuntimeWarning, match="retrying this pass"):
        got = compute_pr(
            real, fake, density_coverage=density_coverage, realism=True, memory_budget=1 << 22, device="cpu"
        )
    assert oom.failed >= 3  # both self passes and the ball pass failed once at least
    ref = brute_pr(real, fake, 3)
    assert (got.precision, got.recall) == (ref["precision"], ref["recall"]) == (want.precision, want.recall)
    if density_coverage:
        assert (got.density, got.coverage) == (want.density, want.coverage)
    np.testing.assert_array_equal(got.realism, want.realism)


def test_oom_after_an_ann_build_does_not_build_again(monkeypatch):
    """The sampled path: a tiled pass that runs out of memory is retried; the k-NN graphs are built once."""
    from eprmetrics.neighbours.ann import ivf_gemm

    builds = []
    build = ivf_gemm.IVFGemm.build
    monkeypatch.setattr(ivf_gemm.IVFGemm, "build", lambda self, *a, **kw: builds.append(1) or build(self, *a, **kw))
    real, fake = make_pair(3000, 3000, dim=16, seed=1, defect="truncation", strength=0.2)
    want = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=400, seed=0)
    n_builds = len(builds)
    oom = _OOMOnBigTiles(monkeypatch, rows=150)
    with pytest.warns(RuntimeWarning, match="retrying this pass"):
        got = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=400, seed=0, device="cpu")
    assert oom.failed >= 1 and len(builds) == 2 * n_builds
    assert (got.precision, got.recall, got.precision_ci) == (want.precision, want.recall, want.precision_ci)


def test_an_automatic_budget_follows_the_free_memory_of_each_pass(monkeypatch):
    """Without memory_budget, each pass on CUDA sizes its tiles from what mem_get_info reports free then;
    a given memory_budget stays as given."""
    free = iter([8 << 30, 1 << 30, 4 << 30])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (next(free), 80 << 30))
    eng = TileEngine(64, CPU, memory_budget=1 << 20, auto_budget=True)
    eng.device = torch.device("cuda:0")  # the logic only; nothing is allocated
    tiles = []
    for _ in range(3):
        eng.run_pass(lambda: tiles.append(eng.tile))
    assert tiles[0] > tiles[2] > tiles[1]
    fixed = TileEngine(64, CPU, memory_budget=1 << 20)
    fixed.device = torch.device("cuda:0")
    fixed.run_pass(lambda: tiles.append(fixed.tile))
    assert tiles[-1] == TileEngine(64, CPU, memory_budget=1 << 20).tile


def test_no_oom_retry_across_ranks(monkeypatch):
    """With several ranks a pass is not retried (the others would wait in its collectives): one clear error."""
    from eprmetrics.engine import World

    class Ranks(World):  # rank 0 of 2, its partner asking for the same budget
        def min_int(self, value, device):
            return value

    eng = TileEngine(16, CPU, memory_budget=1 << 30, world=Ranks(0, 2))
    fn = _Failing(eng, fails=1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="memory_budget"):
        eng.run_pass(fn)
    assert fn.calls == 1


# ------------------------------------------------------------- 5. which device
def test_cuda_resolves_to_the_current_device(fake_cuda):
    assert resolve_device("cuda") == torch.device("cuda:3")
    assert resolve_device(torch.device("cuda")) == torch.device("cuda:3")
    assert resolve_device("auto") == torch.device("cuda:3")
    assert resolve_device(None) == torch.device("cuda:3")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device(resolve_device("cuda")) == torch.device("cuda:3")  # idempotent


def test_resolve_device_without_cuda_is_unchanged():
    assert resolve_device("auto") == CPU and resolve_device("cpu") == CPU


@pytest.mark.parametrize("name", ["mps", "meta", "xpu", torch.device("meta")])
def test_other_device_types_are_refused(name):
    msg = f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}; eprmetrics runs on CPUs and CUDA GPUs"
    with pytest.raises(ValueError) as info:
        resolve_device(name)
    assert str(info.value) == msg


def test_malformed_device_message_is_unchanged():
    with pytest.raises(ValueError) as info:
        resolve_device("gpu0")
    assert str(info.value) == "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu0'; pass one of these"


@pytest.fixture
def fake_torchrun(monkeypatch):
    """Rank 1 of 2 under torchrun, on a machine with CUDA; records the process-group calls."""
    import torch.distributed as dist

    calls = {"backend": [], "set_device": []}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, *a, **kw: calls["backend"].append(backend))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls["set_device"].append(d))
    return calls


@pytest.mark.parametrize(
    "device,backend,set_device",
    [
        ("cpu", "gloo", []),  # CPU run on a CUDA machine: gloo, the GPUs untouched
        ("auto", "nccl", [1]),
        ("cuda", "nccl", [1]),
        (None, "nccl", [1]),
        ("cuda:0", "nccl", [0]),  # an explicit index is the device the run uses
    ],
)
def test_init_picks_the_backend_from_the_device_used(fake_torchrun, device, backend, set_device):
    world = dist_mod.init() if device == "auto" else dist_mod.init(device)
    assert fake_torchrun == {"backend": [backend], "set_device": set_device}
    assert world.size == 1  # the patched group reports itself as uninitialised


def test_init_without_cuda_uses_gloo(fake_torchrun, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dist_mod.init("auto")
    assert fake_torchrun == {"backend": ["gloo"], "set_device": []}


def test_init_single_process_does_nothing(fake_torchrun, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist_mod.init("cuda")
    assert fake_torchrun == {"backend": [], "set_device": []}


def test_cli_passes_its_device_to_init(monkeypatch):
    import eprmetrics.engine as engine
    from eprmetrics import cli

    seen = []

    def fake_init(device="auto"):
        seen.append(device)
        return dist_mod.World()

    monkeypatch.setattr(engine, "init", fake_init)
    monkeypatch.setattr(cli.commands, "_run_on", lambda args, rank, distributed=False: 0)
    assert cli.commands._run(argparse.Namespace(device="cpu")) == 0
    assert seen == ["cpu"]


# ------------------------------------------------------------ 6. reproducibility
def _lloyd_centers(x, nlist, iters, train_per_list, seed):
    """k-means as ivf-gemm specifies it, written independently in float64 numpy: the same seeded training
    sample and starting centres, then Lloyd steps (each row to its nearest centre by squared distance, each
    non-empty list's centre to the mean of its rows)."""
    gen = np.random.default_rng(seed)
    sample = x[np.sort(gen.choice(len(x), min(len(x), nlist * train_per_list), replace=False))].astype(np.float64)
    centers = sample[gen.choice(sample.shape[0], nlist, replace=False)].copy()
    for _ in range(iters):
        assign = ((sample[:, None, :] - centers[None]) ** 2).sum(2).argmin(1)
        for c in range(nlist):
            if (assign == c).any():
                centers[c] = sample[assign == c].mean(0)
    return torch.from_numpy(centers.astype(np.float32))


def _ivf_gemm_centers(x, seed):
    from eprmetrics.neighbours.ann.ivf_gemm import IVFGemm

    backend = IVFGemm(nlist=16)
    backend.used_params = backend.resolve_params(*x.shape)
    backend.build(x, seed=seed, device=CPU)
    return backend.centers


@pytest.fixture(scope="module")
def kmeans_data():
    from eprmetrics.synthetic import SyntheticSpec, generate

    x = generate(2000, SyntheticSpec(dim=24, seed=5)).numpy()
    return x, _lloyd_centers(x, 16, 12, 128, seed=3)


def test_ivf_gemm_kmeans_off_the_cpu_needs_no_atomic_float_sums(monkeypatch, kmeans_data):
    from eprmetrics.neighbours.ann import ivf_gemm

    def atomic(*args, **kwargs):
        raise AssertionError("float index_add_/scatter_add_ is atomic, hence non-deterministic, on CUDA")

    monkeypatch.setattr(ivf_gemm, "_index_add_is_deterministic", lambda device: False)  # as on CUDA
    for name in ("index_add_", "index_add", "scatter_add_", "scatter_add"):
        monkeypatch.setattr(torch.Tensor, name, atomic)
    monkeypatch.setattr(torch, "index_add", atomic)
    monkeypatch.setattr(torch, "scatter_add", atomic)
    x, ref = kmeans_data
    torch.testing.assert_close(_ivf_gemm_centers(x, 3), ref, rtol=1e-5, atol=1e-5)  # same centres up to rounding


def test_ivf_gemm_kmeans_on_the_cpu_is_lloyds_and_reproducible(kmeans_data):
    x, ref = kmeans_data
    centers = _ivf_gemm_centers(x, 3)
    torch.testing.assert_close(centers, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(_ivf_gemm_centers(x, 3), centers)  # the sequential index_add_: bit for bit, run to run


class _FakeGpuIndex:
    """What ``faiss.index_cpu_to_gpu`` returns: a separate index with its own clustering parameters."""

    def __init__(self, cpu_index):
        import faiss

        self._cpu, self.cp, self.trained_with_seed = cpu_index, faiss.ClusteringParameters(), None

    def train(self, x):
        self.trained_with_seed = self.cp.seed
        self._cpu.cp.seed = self.cp.seed  # the CPU index stands in for the GPU's k-means
        self._cpu.train(x)

    def __getattr__(self, name):
        return getattr(self._cpu, name)

    def __setattr__(self, name, value):
        if name in ("_cpu", "cp", "trained_with_seed"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._cpu, name, value)


@pytest.mark.parametrize("name", ["faiss-ivf", "faiss-ivfsq"])
def test_faiss_gpu_index_gets_the_clustering_seed(monkeypatch, name):
    faiss = pytest.importorskip("faiss")
    from eprmetrics.neighbours.ann import faiss_backend, get_backend

    moved = []

    def to_gpu(res, device, index):
        moved.append(device)
        return _FakeGpuIndex(index)

    monkeypatch.setattr(faiss_backend, "faiss_gpu_available", lambda: True)
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", to_gpu, raising=False)
    x = np.random.default_rng(0).normal(size=(2000, 16)).astype(np.float32)
    backend = get_backend(name)()
    backend.used_params = backend.resolve_params(*x.shape)
    backend.build(x, seed=77, device=torch.device("cuda:1"))
    assert moved == [1] and backend.on_gpu
    assert backend.index.trained_with_seed == 77  # not faiss's default 1234


# ------------------------------------------------- 7. bf16 reductions stay fp32
def test_bf16_reduced_precision_reduction_is_off_inside_and_restored():
    m = torch.backends.cuda.matmul
    assert m.allow_bf16_reduced_precision_reduction is True  # the torch default the bound does not cover
    for precision in ("bf16", "fp32", "tf32"):
        with matmul_precision(precision):
            assert m.allow_bf16_reduced_precision_reduction is False
        assert m.allow_bf16_reduced_precision_reduction is True
    m.allow_bf16_reduced_precision_reduction = False
    with matmul_precision("bf16"):
        assert m.allow_bf16_reduced_precision_reduction is False
    assert m.allow_bf16_reduced_precision_reduction is False


def test_bf16_split_k_setting_is_restored():
    m = torch.backends.cuda.matmul
    if not hasattr(m, "allow_bf16_reduced_precision_reduction_split_k"):
        pytest.skip("torch without the split-k reduction flag")
    m.allow_bf16_reduced_precision_reduction = (False, False)  # no split-k reductions either
    with matmul_precision("bf16"):
        assert m.allow_bf16_reduced_precision_reduction is False
    assert m.allow_bf16_reduced_precision_reduction is False
    assert m.allow_bf16_reduced_precision_reduction_split_k is False


def test_bf16_gemm_requests_fp32_output_off_the_cpu(monkeypatch):
    calls, mm = [], torch.mm

    def spy(a, b, *args, **kwargs):
        calls.append((a.dtype, b.dtype, kwargs.get("out_dtype")))
        return mm(a, b, *args, **kwargs)

    monkeypatch.setattr(torch, "mm", spy)
    a, b = (torch.empty(8, 4, device="meta"), torch.empty(5, 4, device="meta"))  # a non-CPU device, no GPU needed
    d = sqdist_block(a, torch.empty(8, device="meta"), b, torch.empty(5, device="meta"), "bf16")
    assert d.dtype == torch.float32 and d.shape == (8, 5)
    assert calls == [(torch.bfloat16, torch.bfloat16, torch.float32)]  # fp32 accumulation and output


def test_bf16_gemm_on_the_cpu_is_unchanged(rng):
    a, b = (
        torch.from_numpy(rng.normal(size=(30, 16)).astype(np.float32)),
        torch.from_numpy(rng.normal(size=(20, 16)).astype(np.float32)),
    )
    a_sq, b_sq = a.pow(2).sum(1), b.pow(2).sum(1)
    old = (a.bfloat16() @ b.bfloat16().T).float().mul_(-2.0).add_(b_sq[None, :]).add_(a_sq[:, None]).clamp_min_(0.0)
    torch.testing.assert_close(sqdist_block(a, a_sq, b, b_sq, "bf16"), old, rtol=0, atol=0)
