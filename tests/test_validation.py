"""Every bad input gets a ValueError/TypeError naming the argument and what was received."""

import re

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr, compute_pr

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


# Every option of both entry points: one message shape "<name>: expected <what>, got <value>; <how to fix>",
# each pinned in full (torchmetrics test_kid style). The checks run before any work starts.
OPTION_ERRORS = [
    (
        compute_pr,
        {"k": 0},
        ValueError,
        "k: expected a positive int or a non-empty sequence of distinct positive ints, got 0; e.g. k=3 or k=(3, 5, 10)",
    ),
    (
        compute_pr,
        {"k": (3, 3)},
        ValueError,
        "k: expected a positive int or a non-empty sequence of distinct positive ints, got (3, 3); "
        "e.g. k=3 or k=(3, 5, 10)",
    ),
    (compute_pr, {"strict": "yes"}, ValueError, "strict: expected True or False, got 'yes'"),
    (compute_pr, {"density_coverage": 1}, ValueError, "density_coverage: expected True or False, got 1"),
    (compute_pr, {"realism": None}, ValueError, "realism: expected True or False, got None"),
    (compute_pr, {"progress": "no"}, ValueError, "progress: expected True or False, got 'no'"),
    (
        compute_pr,
        {"memory_budget": -5},
        ValueError,
        "memory_budget: expected a positive int (bytes) or None, got -5; e.g. memory_budget=2**30 for 1 GiB",
    ),
    (
        compute_pr,
        {"error_bound": "tight"},
        ValueError,
        "error_bound: expected one of ('probabilistic', 'worst-case'), got 'tight'",
    ),
    (
        compute_pr,
        {"precision": "fp16"},
        ValueError,
        "precision: expected one of ('fp32', 'tf32', 'bf16'), got 'fp16'; tf32 needs CUDA; bf16 runs anywhere",
    ),
    (
        compute_pr,
        {"device": "gpu0"},
        ValueError,
        "device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu0'; pass one of these",
    ),
    (compute_pr, {"batch_size": 0}, ValueError, "batch_size: expected a positive int, got 0"),
    (compute_pr, {"num_workers": -1}, ValueError, "num_workers: expected a non-negative int, got -1"),
    (compute_pr, {"on_error": "ignore"}, ValueError, "on_error: expected one of ('raise', 'skip'), got 'ignore'"),
    (
        compute_pr,
        {"extractor": "resnet"},
        ValueError,
        r"extractor: expected one of \(.*'inception', (.*, )?'vgg16'\), got 'resnet'; or pass an nn.Module",
    ),
    (
        compute_epr,
        {"method": "exact"},
        ValueError,
        "method: expected one of ('hubness', 'sampled'), got 'exact'; or use compute_pr for exact values",
    ),
    (
        compute_epr,
        {"k": (3, 5)},
        ValueError,
        "k: expected a positive int (eP&R uses one k), got (3, 5); "
        "e.g. k=3; compute_pr takes several, e.g. k=(3, 5, 10)",
    ),
    (
        compute_epr,
        {"t": -1},
        ValueError,
        "t: expected a non-negative int, got -1; hubs are the points with N_k ≥ t, e.g. t=3",
    ),
    (compute_epr, {"radii": "approx"}, ValueError, "radii: expected one of ('exact', 'ann'), got 'approx'"),
    (
        compute_epr,
        {"backend": "annoy"},
        ValueError,
        r"backend: expected 'auto' or one of \[.*'ivf-gemm'.*\], "
        r"got 'annoy'; register your own with eprmetrics.register_backend",
    ),
    (
        compute_epr,
        {"backend_options": ["nprobe", 3]},
        TypeError,
        "backend_options: expected a dict of backend parameters or None, got list; e.g. backend_options={'nprobe': 32}",
    ),
    (
        compute_epr,
        {"sample_size": 1.5},
        ValueError,
        r"sample_size: expected a positive int \(queries per set\) or a float in \(0, 1\) \(target 95% half-width\), "
        r"got 1.5; e.g. 2000 or 0.01",
    ),
    (
        compute_epr,
        {"confidence": 95},
        ValueError,
        r"confidence: expected a float in \(0, 1\), got 95; "
        r"e.g. confidence=0.95",
    ),
    (
        compute_epr,
        {"audit": -3},
        ValueError,
        "audit: expected a non-negative int, got -3; pass True, False or a number of queries per set",
    ),
    (compute_epr, {"seed": -1}, ValueError, "seed: expected a non-negative int, got -1"),
]


@pytest.mark.parametrize(
    "fn,kwargs,error,message",
    OPTION_ERRORS,
    ids=[f"{fn.__name__}-{next(iter(kw))}-{i}" for i, (fn, kw, _, _) in enumerate(OPTION_ERRORS)],
)
def test_every_option_message_is_pinned(fn, kwargs, error, message):
    with pytest.raises(error) as info:
        fn(GOOD, GOOD, **kwargs)
    text = str(info.value)
    assert text == message or re.fullmatch(message, text), text
    assert re.match(r"^[a-z_]+: expected .+, got .+", text)  # one shape: name, expected, given


def test_options_are_checked_before_inputs_are_read(tmp_path):
    missing = str(tmp_path / "missing.npy")  # would raise FileNotFoundError if it were read first
    with pytest.raises(ValueError, match="^k: expected"):
        compute_pr(missing, missing, k=0)
    with pytest.raises(ValueError, match="^method: expected"):
        compute_epr(missing, missing, method="fast")
