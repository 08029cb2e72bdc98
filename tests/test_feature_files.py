"""Feature files and arrays that used to hang, exhaust memory, overflow or change values silently.

* a FIFO (or any non-regular file) named ``x.npy``: one line, no hang;
* a ``.npy``/``.npz`` header announcing more bytes than the file holds: one line before any allocation;
* big-endian ``>f4``/``>f8``: accepted, the same numbers as native byte order;
* float64 features that are all subnormal: scaled in two steps, the same numbers as the data scaled up;
* 64-bit integers that float64 cannot hold: a warning (and none for those it holds exactly).
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile

import numpy as np
import pytest
import torch

from eprmetrics import Manifold, compute_epr, compute_pr
from eprmetrics.cli import main
from eprmetrics.fileio import InputFileError
from tests.test_reliability import no_hang

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")


def _grid_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued float64 features: every scaling by a power of two below is exact."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(-1000, 1000, size=(300, 8)).astype(np.float64),
        rng.integers(-1000, 1000, size=(250, 8)).astype(np.float64),
    )


def _pr(res) -> tuple[float, float]:
    return res.precision, res.recall


@needs_fifo
def test_a_fifo_named_npy_is_one_line_not_a_hang(tmp_path, capsys):
    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    good = np.ones((10, 4), np.float32)
    with no_hang(60):
        with pytest.raises(InputFileError, match=r"^real: .*x\.npy is a FIFO .*give a regular file$"):
            compute_pr(str(fifo), good)
        with pytest.raises(InputFileError, match=r"^real: .*x\.npy is a FIFO"):
            Manifold.fit(str(fifo), k=3)
        code = main([str(fifo), str(fifo), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is a FIFO" in err[0], err


def _header_only(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue() + b"\0" * 64


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_a_header_claiming_more_than_the_file_holds_is_one_line(tmp_path, suffix, capsys):
    """10¹² rows of float32 = 16 TB announced by a 200-byte file: refused before numpy allocates them
    (an .npz member was read into a fresh array: MemoryError)."""
    path = tmp_path / f"huge{suffix}"
    if suffix == ".npy":
        path.write_bytes(_header_only((10**12, 4)))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("features.npy", _header_only((10**12, 4)))
    match = r"^real: cannot read .*huge.* as a feature file \(its header announces shape \(1000000000000, 4\)"
    with pytest.raises(ValueError, match=match):
        compute_pr(str(path), np.ones((10, 4), np.float32))
    assert main([str(path), str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "16,000,000,000,128 bytes" in err[0], err


def test_an_npz_member_that_is_complete_is_read(tmp_path):
    real, fake = _grid_pair()
    np.savez(tmp_path / "r.npz", features=real.astype(np.float32), other=np.zeros(3))
    np.savez_compressed(tmp_path / "f.npz", fake.astype(np.float32))
    assert _pr(compute_pr(str(tmp_path / "r.npz"), str(tmp_path / "f.npz"))) == _pr(
        compute_pr(real.astype(np.float32), fake.astype(np.float32))
    )


@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i8"])
def test_big_endian_features_are_accepted_with_identical_results(tmp_path, dtype):
    real, fake = _grid_pair(1)
    np.save(tmp_path / "r.npy", real.astype(dtype))
    np.save(tmp_path / "f.npy", fake.astype(dtype))
    native = np.dtype(dtype).newbyteorder("=")
    expected = _pr(compute_pr(real.astype(native), fake.astype(native), k=(3, 5)))
    assert _pr(compute_pr(str(tmp_path / "r.npy"), str(tmp_path / "f.npy"), k=(3, 5))) == expected
    assert _pr(compute_pr(real.astype(dtype), fake.astype(dtype), k=(3, 5))) == expected  # arrays too


@pytest.mark.parametrize("exponent", [-1064, -1070])
def test_subnormal_float64_features_give_the_results_of_the_same_data_scaled(exponent):
    """All values subnormal: the power of two that brings them to [1, 2) is beyond float64's range
    (``ldexp(1, 1029)`` overflowed); two steps give exactly the numbers of the unscaled data."""
    real, fake = _grid_pair(2)
    if exponent == -1070:  # 4 significant bits left: values in −15…15
        real, fake = np.round(real / 100), np.round(fake / 100)
    tiny_real, tiny_fake = np.ldexp(real, exponent), np.ldexp(fake, exponent)
    assert np.abs(tiny_real).max() < 2.0**-1022 and np.array_equal(np.ldexp(tiny_real, -exponent), real)  # exact
    assert _pr(compute_pr(tiny_real, tiny_fake, k=(3, 5))) == _pr(compute_pr(real, fake, k=(3, 5)))
    hub = dict(method="hubness", backend="exact", audit=False, t=0)
    assert _pr(compute_epr(tiny_real, tiny_fake, **hub)) == _pr(compute_epr(real, fake, **hub))
    tensors = [torch.from_numpy(x) for x in (tiny_real, tiny_fake)]
    assert _pr(compute_pr(*tensors)) == _pr(compute_pr(real, fake))
    with pytest.raises(ValueError, match=r"^real: every value is a float64 subnormal .*numpy\.ldexp\(x, 600\)"):
        Manifold.fit(tiny_real, k=3)  # its radii could not be kept at this scale: refused, not wrong
    manifold = Manifold.fit(real, k=3)  # a normal real set: a subnormal fake is compared at the pair's scale
    assert _pr(compute_pr(manifold, tiny_fake)) == _pr(compute_pr(real, tiny_fake))


def test_integers_float64_cannot_hold_warn_and_those_it_holds_do_not():
    real, fake = (x.astype(np.int64) for x in _grid_pair(3))
    inexact = real.copy()
    inexact[7, 2] = 2**60 + 1  # rounds to 2**60 in float64
    with pytest.warns(
        UserWarning, match=r"^real: integer values beyond ±2⁵³ .* rounded \(e\.g\. 1152921504606846977\)"
    ):
        compute_pr(inexact, fake)
    with pytest.warns(UserWarning, match=r"^fake: integer values beyond ±2⁵³"):
        compute_pr(real, torch.from_numpy(inexact))  # tensors are converted to float64 up front
    negative = real.copy()
    negative[0, 0] = -(2**63)  # exact in float64 (a power of two), though |x| overflows int64
    negative[1, 1] = 2**62 + 2**10  # the bits below the top 53 are zero: exact (2**62 + 2**9 is not)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute_pr(negative, fake)
        high = [(x + 1000).astype(np.uint64) * np.uint64(2**11) + np.uint64(2**63) for x in (real, fake)]
        compute_pr(*high)  # 2⁶³ + multiples of 2¹¹: exact in float64
    with pytest.warns(UserWarning, match="integer values beyond"):
        compute_pr((real + 1000).astype(np.uint64) + np.uint64(2**64 - 4000), fake)


def test_a_big_endian_array_too_large_to_convert_in_memory_is_one_line(tmp_path, monkeypatch):
    import psutil

    real, fake = _grid_pair(1)
    np.save(tmp_path / "r.npy", real.astype(">f8"))

    class Scarce:
        available = real.nbytes  # half of it is less than the copy would take

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Scarce())
    with pytest.raises(
        ValueError, match=r"^real: expected native byte order for an array this large .*>f8.*open_memmap"
    ):
        compute_pr(str(tmp_path / "r.npy"), fake)
