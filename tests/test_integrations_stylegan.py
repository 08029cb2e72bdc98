"""StyleGAN2-ADA / StyleGAN3: metric functions call NVlabs' feature helpers as precision_recall.py does.

No NVlabs code here: a stub ``metrics.metric_utils`` (same call shapes, FeatureStats-like returns)
is put in ``sys.modules``; the metrics must call it with NVlabs' arguments, key their results
``<metric>_<value>``, report from rank 0 and equal compute_pr / compute_epr on the same features.
"""

import math
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr, compute_pr
from eprmetrics.integrations import stylegan


class _Stats:
    """What FeatureStats gives back: every captured feature, as a CPU float32 tensor."""

    def __init__(self, features):
        self.features = features

    def get_all_torch(self):
        return torch.from_numpy(self.features)


class _EasyDict(dict):
    """dnnlib.EasyDict: a dict with attribute access (``opts.dataset_kwargs``)."""

    __getattr__ = dict.__getitem__


def features():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(120, 12)).astype(np.float32)
    fake = (rng.normal(size=(100, 12)) * 1.3 + 0.2).astype(np.float32)
    return real, fake


@pytest.fixture
def checkout(monkeypatch):
    """A stub StyleGAN checkout: ``metrics.metric_utils`` recording its calls, ``metrics.metric_main`` registering."""
    real, fake = features()
    calls = []
    utils = types.ModuleType("metrics.metric_utils")

    def for_dataset(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64, max_items=None, **stats):
        call = dict(detector_url=detector_url, detector_kwargs=detector_kwargs, rel_lo=rel_lo, rel_hi=rel_hi)
        calls.append(("dataset", {**call, "max_items": max_items, **stats}))
        return _Stats(real[:max_items])

    def for_generator(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64, batch_gen=None, **stats):
        call = dict(detector_url=detector_url, detector_kwargs=detector_kwargs, rel_lo=rel_lo, rel_hi=rel_hi)
        calls.append(("generator", {**call, **stats}))
        return _Stats(fake[: stats["max_items"]])

    utils.compute_feature_stats_for_dataset = for_dataset
    utils.compute_feature_stats_for_generator = for_generator
    main = types.ModuleType("metrics.metric_main")
    main.registered = {}
    main.register_metric = lambda fn: main.registered.setdefault(fn.__name__, fn)
    package = types.ModuleType("metrics")
    package.__path__ = []
    package.metric_utils, package.metric_main = utils, main
    for name, module in {"metrics": package, "metrics.metric_utils": utils, "metrics.metric_main": main}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(calls=calls, main=main)


def options(rank=0, num_gpus=1, **dataset):
    return types.SimpleNamespace(
        G=None,
        G_kwargs=_EasyDict(),
        dataset_kwargs=_EasyDict(path="data.zip", xflip=True, max_size=5000, **dataset),
        num_gpus=num_gpus,
        rank=rank,
        device=torch.device("cpu"),
    )


def test_full_exact_calls_the_helpers_as_nvlabs_and_equals_compute_pr(checkout):
    opts = options()
    out = stylegan.pr50k3_full_exact(opts)
    expected_call = dict(
        detector_url=stylegan.DETECTOR_URL, detector_kwargs=dict(return_features=True), rel_lo=0, capture_all=True
    )
    (kind1, call1), (kind2, call2) = checkout.calls
    assert kind1 == "dataset" and call1 == {**expected_call, "rel_hi": 0, "max_items": 200000}
    assert kind2 == "generator" and call2 == {**expected_call, "rel_hi": 1, "max_items": 50000}
    assert opts.dataset_kwargs["max_size"] is None and opts.dataset_kwargs["xflip"] is False  # the _full convention
    real, fake = features()
    ref = compute_pr(real, fake, k=3)
    assert out == {
        "pr50k3_full_exact_precision": ref.precision,
        "pr50k3_full_exact_recall": ref.recall,
        "pr50k3_full_exact_density": ref.density,
        "pr50k3_full_exact_coverage": ref.coverage,
        "pr50k3_full_exact_f_score": 2 * ref.precision * ref.recall / (ref.precision + ref.recall),
    }
    assert all(type(v) is float for v in out.values())  # calc_metric broadcasts each as a float64 tensor


def test_sampled_has_intervals_and_legacy_keeps_xflip(checkout):
    opts = options()
    out = stylegan.pr50k3_sampled(opts)
    assert opts.dataset_kwargs["xflip"] is True and opts.dataset_kwargs["max_size"] is None
    assert checkout.calls[0][1]["max_items"] == 50000
    real, fake = features()
    ref = compute_epr(real, fake, method="sampled", k=3)
    assert out["pr50k3_sampled_precision"] == ref.precision and out["pr50k3_sampled_recall"] == ref.recall
    assert (out["pr50k3_sampled_precision_ci_low"], out["pr50k3_sampled_precision_ci_high"]) == ref.precision_ci
    assert (out["pr50k3_sampled_recall_ci_low"], out["pr50k3_sampled_recall_ci_high"]) == ref.recall_ci


def test_other_ranks_return_nan_with_the_same_keys(checkout):
    lead = stylegan.pr50k3_full_exact(options(rank=0, num_gpus=2))
    other = stylegan.pr50k3_full_exact(options(rank=1, num_gpus=2))
    assert list(other) == list(lead) and all(math.isnan(v) for v in other.values())


def test_register_with_the_checkout_register_metric(checkout):
    names = stylegan.register(checkout.main.register_metric)
    assert names == ["pr50k3_full_exact", "pr50k3_full_sampled", "pr50k3_exact", "pr50k3_sampled"]
    assert list(checkout.main.registered) == names
    checkout.main.registered.clear()
    assert stylegan.register() == names and list(checkout.main.registered) == names  # found in metrics.metric_main


def test_make_metric_names_and_checks(checkout):
    fn = stylegan.make_metric("pr90_k35", max_real=90, num_gen=80, k=(3, 5))
    assert fn.__name__ == "pr90_k35"
    out = fn(options())
    real, fake = features()
    ref = compute_pr(real[:90], fake[:80], k=(3, 5))
    assert out["pr90_k35_precision"] == ref.precision and out["pr90_k35_recall_k5"] == ref.per_k[5].recall
    with pytest.raises(ValueError, match="name: expected a Python identifier"):
        stylegan.make_metric("pr 10k", max_real=None, num_gen=10)
    with pytest.raises(ValueError, match="method: expected one of"):
        stylegan.make_metric("x", max_real=None, num_gen=10, method="hubness")


def test_without_a_checkout_says_where_to_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "metrics", None)  # import of metrics fails
    with pytest.raises(ModuleNotFoundError, match="run it from a StyleGAN2-ADA or StyleGAN3 checkout"):
        stylegan.pr50k3_full_exact(options())
    with pytest.raises(ModuleNotFoundError, match="StyleGAN2-ADA or StyleGAN3 checkout"):
        stylegan.register()


def test_adapters_import_without_their_libraries():
    """The core install has neither torchmetrics nor torch-fidelity: importing the adapters must not need them."""
    code = (
        "import sys; sys.modules.update(torchmetrics=None, torch_fidelity=None)\n"
        "import eprmetrics.integrations, eprmetrics.integrations.stylegan, eprmetrics.integrations.fidelity\n"
        "import eprmetrics.integrations.torchmetrics as tm\n"
        "try:\n    tm.PrecisionRecall\nexcept ModuleNotFoundError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == (
        "integration 'torchmetrics' needs the 'torchmetrics' package: pip install 'eprmetrics[torchmetrics]'"
    )
