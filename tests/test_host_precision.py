"""A host's precision settings never reach features or numbers, on every path (not only inside the metric).

Under ``torch.set_default_dtype(torch.float64)`` (Lightning's ``64-true``; ``bfloat16``: ``bf16-true``) or
inside a bf16 autocast region (``bf16-mixed``): ``extract_features`` and ``compute_pr(images, ...)`` give the
float32 features and numbers bit for bit, and so does every entry point on features (the ANN backends crashed
on a dtype clash). A tiny registry extractor keeps it offline; it draws its weights in the default dtype, as
torchvision's constructors initialise theirs, so a network built under float64 would differ.
"""

import contextlib

import numpy as np
import pytest
import torch

from eprmetrics import Manifold, compute_epr, compute_pr, knn_graph, pr_curve, register_extractor
from eprmetrics.features import extract_features, get_extractor
from eprmetrics.features.base import Extractor, imagenet_preprocess

NAME = "precision-pool-test"


class _Pool(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(48, 8)
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():  # default-dtype draws: another network when built under float64
            self.lin.weight.copy_(torch.randn(self.lin.weight.shape, generator=gen))
            self.lin.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.tensor(1.0 / 3.0)  # a tensor made while it runs, in the default dtype
        return self.lin(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)) * scale


@register_extractor(NAME, dim=8)
def _pool(weights=None):
    return Extractor(NAME, _Pool(), 8, imagenet_preprocess(16), "pool")


def images():
    gen = torch.Generator().manual_seed(4)
    real = torch.randint(0, 256, (60, 3, 20, 20), dtype=torch.uint8, generator=gen)
    fake = (real[:50].int() + torch.randint(-70, 71, (50, 3, 20, 20), generator=gen)).clamp(0, 255)
    return real, fake.to(torch.uint8)


@contextlib.contextmanager
def default_dtype(dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def numbers(result) -> dict:
    """What a result says about the sets (not its timings, memory, or the plan's predicted times)."""
    skip = {"seconds", "peak_rss", "stages", "plan", "memory_budget"}
    return {key: value for key, value in result.to_dict().items() if key not in skip}


HOSTS = {
    "float64-default": lambda: default_dtype(torch.float64),
    "bfloat16-default": lambda: default_dtype(torch.bfloat16),  # Lightning's bf16-true
    "bf16-autocast": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
}


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_extract_features_are_the_float32_ones_under_any_host_precision(host):
    real, _ = images()
    expected = extract_features(real, extractor=NAME, progress=False)
    with HOSTS[host]():
        before = torch.get_default_dtype()
        got = extract_features(real, extractor=NAME, progress=False)
        assert torch.get_default_dtype() == before  # the host's setting is left as it was
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_compute_pr_on_images_gives_the_float32_numbers_under_any_host_precision(host):
    real, fake = images()
    expected = numbers(compute_pr(real, fake, extractor=NAME, k=(3, 5), progress=False))
    with HOSTS[host]():
        got = numbers(compute_pr(real, fake, extractor=NAME, k=(3, 5), progress=False))
    assert got == expected


def test_a_registry_network_is_float32_and_the_default_dtype_is_left_as_the_host_set_it():
    with default_dtype(torch.float64):
        ext = get_extractor(NAME)
        assert torch.get_default_dtype() == torch.float64
        feats = ext(images()[0], torch.device("cpu"))
        assert torch.get_default_dtype() == torch.float64
    assert {p.dtype for p in ext.module.parameters()} == {torch.float32}
    assert feats.dtype == torch.float32


def test_a_custom_module_runs_with_autocast_off_and_gives_float32_features():
    real, _ = images()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 8))
    expected = extract_features(real, extractor=net, progress=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a bf16 Linear would round every feature
        got = extract_features(real, extractor=net, progress=False)
    np.testing.assert_array_equal(got, expected)
    wide = extract_features(real, extractor=net.double(), progress=False)  # the user's float64 network ...
    assert wide.dtype == np.float32  # ... stored as float32
    np.testing.assert_allclose(wide, expected, rtol=1e-5, atol=1e-5)


def feature_sets():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(800, 16)).astype(np.float32)
    return real, (rng.normal(size=(600, 16)) * 1.1 + 0.05).astype(np.float32)


def _graph(backend):
    return [np.asarray(a).tobytes() for a in knn_graph(feature_sets()[0], 5, backend=backend)]


def _sampled(backend, method="sampled"):
    real, fake = feature_sets()
    return numbers(compute_epr(real, fake, method=method, sample_size=100, seed=1, backend=backend, progress=False))


def _curve():
    real, fake = feature_sets()
    curve = pr_curve(Manifold.fit(real, k=3), {0.5: fake[:300], 1.0: fake}, k=3, progress=False)
    return [(r.precision, r.recall, r.density, r.coverage) for r in curve.values()]


ENTRY_POINTS = {
    "knn_graph-ivf-gemm": lambda: _graph("ivf-gemm"),
    "knn_graph-ivf-pca": lambda: _graph("ivf-pca"),
    "compute_epr-ivf-gemm": lambda: _sampled("ivf-gemm"),
    "compute_epr-ivf-pca": lambda: _sampled("ivf-pca"),
    "compute_epr-hubness": lambda: _sampled("exact", "hubness"),
    "pr_curve-manifold": _curve,
}


@pytest.mark.parametrize("host", sorted(HOSTS))
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_entry_points_on_features_ignore_the_host_precision(host, entry):
    """The estimate for one seed and the graph are the float32 run's, not a crash or another estimate."""
    expected = ENTRY_POINTS[entry]()
    with HOSTS[host]():
        before = torch.get_default_dtype()
        got = ENTRY_POINTS[entry]()
        assert torch.get_default_dtype() == before  # the host's setting is left as it was
    assert got == expected
