"""Every bad input gets a ValueError/TypeError naming the argument and what was received."""

import numpy as np
import pytest
import torch

from eprmetrics import compute_pr

GOOD = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)


@pytest.mark.parametrize(
    "real,fake,match",
    [
        (GOOD[0], GOOD, r"real: expected a 2-D array .* got shape \(4,\)"),
        (GOOD, GOOD[None], r"fake: expected a 2-D array .* got shape \(1, 20, 4\)"),
        (GOOD, GOOD[:, :3], r"same feature dimension, got real dim 4 and fake dim 3"),
        (GOOD[:3], GOOD, r"real: k=3 needs at least 4 samples, got 3"),
        (GOOD, GOOD[:2], r"fake: k=3 needs at least 4 samples, got 2"),
        (np.where(np.arange(80).reshape(20, 4) == 9, np.nan, GOOD), GOOD, r"real: features must be finite.* row 2"),
        (GOOD, np.where(np.arange(80).reshape(20, 4) == 79, np.inf, GOOD), r"fake: features must be finite.* row 19"),
        (GOOD, GOOD[:, :0], r"same feature dimension"),
        (GOOD.astype(bool), GOOD, r"real: expected a float array, got dtype bool"),
        (GOOD, torch.ones(20, 4, dtype=torch.bool), r"fake: expected a float tensor"),
    ],
)
def test_bad_arrays(real, fake, match):
    with pytest.raises(ValueError, match=match):
        compute_pr(real, fake)


def test_empty_dimension():
    with pytest.raises(ValueError, match=r"real: expected at least one feature column"):
        compute_pr(GOOD[:, :0], GOOD[:, :0])


@pytest.mark.parametrize("k", [0, -1, "3", [], [3, 3], True, 2.5, None])
def test_bad_k(k):
    with pytest.raises(ValueError, match=r"^k: expected|^k: values must be distinct"):
        compute_pr(GOOD, GOOD, k=k)


def test_k_too_large_for_one_set():
    with pytest.raises(ValueError, match=r"real: k=25 needs at least 26 samples, got 20"):
        compute_pr(GOOD, GOOD, k=(3, 25))


@pytest.mark.parametrize("budget", [0, -5, 1.5, "1GB", True])
def test_bad_memory_budget(budget):
    with pytest.raises(ValueError, match=r"memory_budget: expected a positive int"):
        compute_pr(GOOD, GOOD, memory_budget=budget)


def test_bad_strict():
    with pytest.raises(ValueError, match=r"strict: expected True or False, got 'yes'"):
        compute_pr(GOOD, GOOD, strict="yes")


@pytest.mark.parametrize("device,match", [("gpu0", r"device: expected 'auto'"), ("tpu", r"device: expected 'auto'")])
def test_bad_device(device, match):
    with pytest.raises(ValueError, match=match):
        compute_pr(GOOD, GOOD, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match=r"device: 'cuda' requested but CUDA is not available"):
        compute_pr(GOOD, GOOD, device="cuda")


def test_bad_type():
    with pytest.raises(TypeError, match=r"real: expected features .* or images .*, got list"):
        compute_pr([[1.0, 2.0]], GOOD)


def test_missing_and_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fake: no such file or directory: .*nope.npy"):
        compute_pr(GOOD, str(tmp_path / "nope.npy"))
    (tmp_path / "f.txt").write_text("1 2 3")
    with pytest.raises(ValueError, match=r"real: expected a folder of images, a .zip, or features as .npy/.npz"):
        compute_pr(str(tmp_path / "f.txt"), GOOD)
    np.savez(tmp_path / "two.npz", a=GOOD, b=GOOD)
    with pytest.raises(ValueError, match=r"real: .*two.npz.* holds arrays \['a', 'b'\]"):
        compute_pr(tmp_path / "two.npz", GOOD)


def test_integer_features_are_accepted():
    ints = np.arange(80).reshape(20, 4)
    assert compute_pr(ints, ints).precision == 1.0
