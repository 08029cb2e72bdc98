"""Scale features: reduced-precision GEMMs stay exact, CUDA OOM retries with smaller tiles,
float16 memory-mapped inputs."""

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr, compute_pr
from eprmetrics.engine import TileEngine, rounding_factor
from tests.reference import brute_pr, lattice


def _values(r):
    return r.precision, r.recall, r.density, r.coverage


@pytest.mark.parametrize("kind", ["random", "lattice"])
def test_bf16_gemms_keep_decisions_exact(rng, kind):
    if kind == "random":
        real, fake = rng.normal(size=(500, 64)).astype(np.float32), rng.normal(size=(450, 64)).astype(np.float32)
    else:
        real, fake = lattice(rng, 400, 6), lattice(rng, 380, 6)
    fp32 = compute_pr(real, fake, memory_budget=1 << 18)
    bf16 = compute_pr(real, fake, memory_budget=1 << 18, precision="bf16")
    ref = brute_pr(real, fake, k=3)
    assert _values(bf16) == _values(fp32)
    assert (bf16.precision, bf16.recall) == (ref["precision"], ref["recall"])
    # (bf16's wider rounding band is met by keeping knn_margin("bf16") candidates per point, so it need not
    # re-decide more rows than fp32 does)
    assert bf16.gemm_precision == "bf16"


def test_precision_bounds_and_tf32_on_cpu():
    assert rounding_factor(512) < rounding_factor(512, precision="tf32") < rounding_factor(512, precision="bf16")
    assert TileEngine(16, torch.device("cpu"), 1 << 20, precision="tf32").precision == "fp32"  # TF32 is CUDA-only
    with pytest.raises(ValueError, match="precision"):
        compute_pr(np.ones((10, 2), np.float32), np.ones((10, 2), np.float32), precision="fp8")


def test_cuda_out_of_memory_retries_with_smaller_tiles(rng, monkeypatch):
    real, fake = rng.normal(size=(600, 16)).astype(np.float32), rng.normal(size=(500, 16)).astype(np.float32)
    expected = compute_pr(real, fake, realism=True)
    original = TileEngine.sqdist

    def tight(self, a, a_sq, b, b_sq):  # a device that cannot hold tiles of more than 100 rows
        if a.shape[0] > 100 or b.shape[0] > 100:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(self, a, a_sq, b, b_sq)

    monkeypatch.setattr(TileEngine, "sqdist", tight)
    with pytest.warns(RuntimeWarning, match="retrying this pass with"):
        got = compute_pr(real, fake, realism=True, memory_budget=1 << 24)
    assert _values(got) == _values(expected) and got.tile <= 100
    np.testing.assert_array_equal(got.realism, expected.realism)
    with pytest.warns(RuntimeWarning, match="retrying this pass with"):
        e = compute_epr(real, fake, method="hubness", backend="exact", t=1, memory_budget=1 << 24)
    assert e.tile <= 100


def test_float16_memmaps_are_first_class(tmp_path, rng):
    real = rng.normal(size=(700, 32)).astype(np.float16)
    fake = (rng.normal(size=(650, 32)) + 0.1).astype(np.float16)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    from_files = compute_pr(str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"))
    in_memory = compute_pr(real.astype(np.float32), fake.astype(np.float32))
    assert _values(from_files) == _values(in_memory)  # float16 values are exact in float32
    ref = brute_pr(real.astype(np.float32), fake.astype(np.float32), k=3)
    assert (from_files.precision, from_files.recall) == (ref["precision"], ref["recall"])
    s = compute_epr(
        str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), method="sampled", backend="ivf-gemm", sample_size=1000
    )
    assert (s.precision, s.recall) == (in_memory.precision, in_memory.recall)


def test_ivf_gemm_stores_float16_and_builds_the_same_graph(tmp_path, rng):
    from eprmetrics.neighbours.ann import get_backend

    x16 = rng.normal(size=(3000, 24)).astype(np.float16)
    np.save(tmp_path / "x.npy", x16)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    graphs = []
    for x in (mm, x16.astype(np.float32)):
        impl = get_backend("ivf-gemm")()
        impl.used_params = impl.resolve_params(*x.shape)
        impl.build(x, seed=0, device=torch.device("cpu"))
        graphs.append(impl.search(x, 4))
        if x.dtype == np.float16:
            assert impl.Xp.dtype == torch.float16  # fp16 storage: half the memory
    np.testing.assert_array_equal(graphs[0][1], graphs[1][1])
    np.testing.assert_array_equal(graphs[0][0], graphs[1][0])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int16])
def test_read_rows_reads_memmaps_by_position_equal_to_slicing(tmp_path, rng, dtype):
    """Whole maps and row views of them (numpy keeps the parent's offset on a view) read the same rows."""
    from eprmetrics.engine import read_rows

    x = (rng.normal(size=(5000, 37)) * 100).astype(dtype)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    for view in (mm, mm[1234:], mm[17:4000][5:]):
        for start, stop in ((0, 1), (3, 1000), (900, 10_000), (len(view), len(view) + 5)):
            got = read_rows(view, start, stop)
            np.testing.assert_array_equal(got, np.asarray(view[start:stop]))
            assert got.flags.writeable
    plain = np.asarray(x)
    assert read_rows(plain, 2, 9) is not None and np.shares_memory(read_rows(plain, 2, 9), plain)
