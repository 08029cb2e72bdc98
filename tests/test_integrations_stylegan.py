"""StyleGAN2-ADA / StyleGAN3: metric functions call NVlabs' feature helpers as precision_recall.py does.

No NVlabs code here: stub checkouts (``metrics.metric_utils``, ``metrics.precision_recall``,
``metrics.metric_main``, ``dnnlib``) are put in ``sys.modules``, one per checkout, behaving as each does
where it matters here (``benchmarks/bench_stylegan.py`` checks the same against the real code):

* ``get_feature_detector`` loads the downloaded detector file with the checkout's loader:
  ``torch.jit.load`` in StyleGAN2-ADA, ``pickle.load`` in StyleGAN3; each URL serves its real format
  (``vgg16.pt`` a TorchScript file, ``vgg16.pkl`` a pickle), so the wrong one fails as it does for real;
* ``compute_feature_stats_for_dataset`` names its cache file as both checkouts do: ``<dataset>-<detector
  file stem>-<md5 of repr(sorted(dict(dataset_kwargs, detector_url, detector_kwargs, stats_kwargs)))>``
  and reads a file it finds whatever ``max_items`` it is asked for;
* ``precision_recall.compute_pr`` holds the checkout's detector URL as a constant and calls the helpers
  with NVlabs' arguments; ``metric_main`` registers NVlabs' ``pr50k3_full``.
"""

import hashlib
import io
import math
import os
import pickle
import re
import subprocess
import sys
import types
import warnings

import numpy as np
import pytest
import torch

from eprmetrics import compute_epr, compute_pr
from eprmetrics.integrations import stylegan
from eprmetrics.integrations.common import flat_values

CPU = torch.device("cpu")
ADA, SG3 = stylegan.DETECTOR_URLS["stylegan2-ada"], stylegan.DETECTOR_URLS["stylegan3"]


class _Stats:
    """What FeatureStats gives back: every captured feature, as a CPU float32 tensor."""

    def __init__(self, features):
        self.features = features

    def get_all_torch(self):
        return torch.from_numpy(self.features)


class _EasyDict(dict):
    """dnnlib.EasyDict: a dict with attribute access (``opts.dataset_kwargs``); its repr is the dict's."""

    __getattr__ = dict.__getitem__


class _Detector(torch.nn.Module):
    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return img.to(torch.float32).flatten(1)


@pytest.fixture(scope="module")
def downloads():
    """Each known detector URL's file in its real format: TorchScript for ``vgg16.pt``, a pickle for ``vgg16.pkl``."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; StyleGAN2-ADA's format is it
        torch.jit.save(torch.jit.script(_Detector()), buf)
    return {ADA: buf.getvalue(), SG3: pickle.dumps(_Detector())}


def features():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(120, 12)).astype(np.float32)
    fake = (rng.normal(size=(100, 12)) * 1.3 + 0.2).astype(np.float32)
    return real, fake


# The two loaders, as each checkout's get_feature_detector has it (url → module).
def _ada_get_feature_detector(url, device=CPU, num_gpus=1, rank=0, verbose=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(io.BytesIO(_open_url(url))).eval().to(device)


def _sg3_get_feature_detector(url, device=CPU, num_gpus=1, rank=0, verbose=False):
    return pickle.load(io.BytesIO(_open_url(url))).to(device)


def _open_url(url):
    return sys.modules["dnnlib"].util.downloads[url]


# Each checkout's precision_recall.compute_pr: its detector URL is a constant of the function.
def _ada_compute_pr(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size):
    detector_url = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt"
    return _nvlabs_features(opts, detector_url, max_real, num_gen)


def _sg3_compute_pr(opts, max_real, num_gen, nhood_size, row_batch_size, col_batch_size):
    detector_url = "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/vgg16.pkl"
    return _nvlabs_features(opts, detector_url, max_real, num_gen)


def _nvlabs_features(opts, detector_url, max_real, num_gen):
    mu, detector_kwargs = sys.modules["metrics.metric_utils"], dict(return_features=True)
    mu.compute_feature_stats_for_dataset(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=0, capture_all=True, max_items=max_real)  # fmt: skip
    mu.compute_feature_stats_for_generator(
        opts=opts, detector_url=detector_url, detector_kwargs=detector_kwargs,
        rel_lo=0, rel_hi=1, capture_all=True, max_items=num_gen)  # fmt: skip
    return float("nan"), float("nan")  # the values are not what these tests compare


STUBS = {
    "stylegan2-ada": (_ada_get_feature_detector, _ada_compute_pr),
    "stylegan3": (_sg3_get_feature_detector, _sg3_compute_pr),
}


def install(monkeypatch, downloads, kind, *, compute_pr_fn=None, loader=None):
    """A stub checkout of ``kind`` in sys.modules; returns a record of its calls, cache and registry."""
    real, fake = features()
    rec = types.SimpleNamespace(calls=[], cache={}, computed=[], loaded=[], registered={})
    get_detector, nv_compute_pr = STUBS[kind]
    get_detector = loader or get_detector

    def for_dataset(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64, max_items=None, **stats):
        rec.calls.append(("dataset", dict(detector_url=detector_url, rel_hi=rel_hi, max_items=max_items, **stats)))
        args = dict(dataset_kwargs=opts.dataset_kwargs, detector_url=detector_url)
        args.update(detector_kwargs=detector_kwargs, stats_kwargs=stats)
        md5 = hashlib.md5(repr(sorted(args.items())).encode("utf-8")).hexdigest()
        tag = f"data-{os.path.splitext(detector_url.split('/')[-1])[0]}-{md5}"
        if tag not in rec.cache:
            rec.loaded.append(type(utils.get_feature_detector(detector_url)).__name__)
            rec.cache[tag] = _Stats(real[:max_items])
            rec.computed.append(tag)
        return rec.cache[tag]

    def for_generator(opts, detector_url, detector_kwargs, rel_lo=0, rel_hi=1, batch_size=64, batch_gen=None, **stats):
        rec.calls.append(("generator", dict(detector_url=detector_url, rel_hi=rel_hi, **stats)))
        utils.get_feature_detector(detector_url)
        return _Stats(fake[: stats["max_items"]])

    utils = types.ModuleType("metrics.metric_utils")
    utils.get_feature_detector = get_detector
    utils.compute_feature_stats_for_dataset = for_dataset
    utils.compute_feature_stats_for_generator = for_generator
    pr = types.ModuleType("metrics.precision_recall")
    pr.compute_pr = compute_pr_fn or nv_compute_pr
    main = types.ModuleType("metrics.metric_main")
    main.register_metric = lambda fn: rec.registered.setdefault(fn.__name__, fn)

    def pr50k3_full(opts):  # NVlabs' own
        opts.dataset_kwargs.update(max_size=None, xflip=False)
        pr.compute_pr(opts, max_real=200000, num_gen=50000, nhood_size=3, row_batch_size=10000, col_batch_size=10000)

    rec.pr50k3_full = pr50k3_full
    package = types.ModuleType("metrics")
    package.__path__ = []
    package.metric_utils, package.metric_main, package.precision_recall = utils, main, pr
    dnnlib = types.ModuleType("dnnlib")
    # construct_class_by_name: the dataset, here its real features (len() is its size, as NVlabs' has it)
    dnnlib.util = types.SimpleNamespace(downloads=downloads, construct_class_by_name=lambda **kw: real)
    dnnlib.make_cache_dir_path = lambda *paths: os.path.join("/cache", *paths)
    modules = {"metrics": package, "metrics.metric_utils": utils, "metrics.metric_main": main}
    modules.update({"metrics.precision_recall": pr, "dnnlib": dnnlib})
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return rec


@pytest.fixture(params=["stylegan2-ada", "stylegan3"])
def checkout(request, monkeypatch, downloads):
    return install(monkeypatch, downloads, request.param)


def options(rank=0, num_gpus=1, **dataset):
    return types.SimpleNamespace(
        G=None,
        G_kwargs=_EasyDict(),
        dataset_kwargs=_EasyDict(
            {"class_name": "training.dataset.ImageFolderDataset", "path": "data.zip", "xflip": True, **dataset}
        ),
        num_gpus=num_gpus,
        rank=rank,
        device=torch.device("cpu"),
        cache=True,
    )


def prefixed(name, res, ks=(3,)):
    return {f"{name}_{key}": value for key, value in flat_values(res, ks).items()}


def test_each_checkout_gets_its_detector_and_nvlabs_cache_file(checkout):
    """The bug: StyleGAN2-ADA was handed StyleGAN3's pickle URL (torch.jit.load failed) and its own cache missed."""
    opts = options()
    checkout.pr50k3_full(opts)  # NVlabs' own, first: it writes the cache file
    out = stylegan.pr50k3_full_exact(options())
    assert len(checkout.cache) == 1 and len(checkout.computed) == 1  # ours read NVlabs' file: one key
    (nv_real, _), (ours_real, ours_fake) = checkout.calls[0::2], checkout.calls[2:]
    assert ours_real == nv_real and ours_fake == checkout.calls[1]  # every argument NVlabs passes
    assert checkout.loaded == ["RecursiveScriptModule" if nv_real[1]["detector_url"] == ADA else "_Detector"]
    assert opts.dataset_kwargs == options(xflip=False, max_size=None).dataset_kwargs
    real, fake = features()
    ref = compute_pr(real, fake, k=3)
    assert out == prefixed("pr50k3_full_exact", ref)  # the shared flat_values contract, f_score included
    assert out["pr50k3_full_exact_f_score"] == 2 * ref.precision * ref.recall / (ref.precision + ref.recall)
    assert all(type(v) is float for v in out.values())  # calc_metric broadcasts each as a float64 tensor


@pytest.mark.parametrize("kind", ["stylegan2-ada", "stylegan3"])
def test_ours_first_then_nvlabs_reads_our_file(kind, monkeypatch, downloads):
    rec = install(monkeypatch, downloads, kind)
    stylegan.pr50k3_full_exact(options())
    rec.pr50k3_full(options())
    assert len(rec.computed) == 1 and stylegan.checkout_kind() == kind
    assert rec.calls[0][1]["detector_url"] == stylegan.DETECTOR_URLS[kind] == stylegan.checkout_detector_url()


@pytest.mark.parametrize("kind, other", [("stylegan2-ada", SG3), ("stylegan3", ADA)])
def test_the_other_checkouts_detector_is_refused_in_one_line(kind, other, monkeypatch, downloads):
    install(monkeypatch, downloads, kind)
    loader_error = "PytorchStreamReader failed reading zip archive" if kind == "stylegan2-ada" else "persistent id"
    with pytest.raises((RuntimeError, pickle.UnpicklingError), match=loader_error):  # what the checkout says
        sys.modules["metrics.metric_utils"].get_feature_detector(other)
    fn = stylegan.make_metric("pr_other", max_real=None, num_gen=10, detector_url=other)
    own = "StyleGAN2-ADA (torch.jit.load" if kind == "stylegan2-ada" else "StyleGAN3 (pickle.load"
    with pytest.raises(ValueError, match=r"^detector_url: expected a detector file that " + re.escape(own)) as err:
        fn(options())
    assert "leave detector_url unset" in str(err.value) and "\n" not in str(err.value)


def test_a_detector_of_ones_own_passes_through(checkout):
    url = "https://example.org/my-features.pt"  # served in the format of the checkout's loader
    own = sys.modules["dnnlib"].util.downloads[stylegan.DETECTOR_URLS[stylegan.checkout_kind()]]
    sys.modules["dnnlib"].util.downloads = {**sys.modules["dnnlib"].util.downloads, url: own}
    stylegan.make_metric("pr_mine", max_real=None, num_gen=10, detector_url=url)(options())
    assert {call["detector_url"] for _, call in checkout.calls} == {url}
    assert list(checkout.cache)[0].startswith("data-my-features-")


@pytest.mark.parametrize("kind", ["stylegan2-ada", "stylegan3"])
def test_url_from_the_loader_when_precision_recall_names_none(kind, monkeypatch, downloads):
    install(monkeypatch, downloads, kind, compute_pr_fn=lambda opts, **kw: (0.0, 0.0))
    assert stylegan.checkout_detector_url() == stylegan.DETECTOR_URLS[kind]
    monkeypatch.delitem(sys.modules, "metrics.precision_recall")
    monkeypatch.setitem(sys.modules, "metrics.precision_recall", None)  # a checkout without it
    assert stylegan.checkout_detector_url() == stylegan.DETECTOR_URLS[kind]


def test_a_checkout_of_neither_kind_asks_for_a_url(monkeypatch, downloads):
    def get_feature_detector(url, device=None, num_gpus=1, rank=0, verbose=False):
        return sys.modules["dnnlib"].util.downloads[url]

    install(monkeypatch, downloads, "stylegan3", compute_pr_fn=lambda opts: None, loader=get_feature_detector)
    assert stylegan.checkout_kind() is None
    with pytest.raises(ValueError, match=r"^detector_url: expected the VGG-16 detector .* pass make_metric\("):
        stylegan.pr50k3_full_exact(options())


def test_a_cache_file_with_more_reals_is_cut_one_with_fewer_refused(checkout):
    real, fake = features()
    stylegan.pr50k3_full_exact(options())  # writes all 120 reals under the key of the _full options
    out = stylegan.make_metric("pr90", max_real=90, num_gen=100)(options())  # same key: reads 120
    assert len(checkout.computed) == 1
    assert out == prefixed("pr90", compute_pr(real[:90], fake, k=3))
    checkout.cache.clear()
    stylegan.make_metric("pr90", max_real=90, num_gen=100)(options())  # now the file holds 90
    with pytest.raises(ValueError, match=r"^real features: expected 120 \(min\(dataset size, max_real=200000\)\)"):
        stylegan.pr50k3_full_exact(options())


def test_sampled_has_intervals_and_legacy_keeps_xflip(checkout):
    opts = options()
    out = stylegan.pr50k3_sampled(opts)
    assert opts.dataset_kwargs["xflip"] is True and opts.dataset_kwargs["max_size"] is None
    assert checkout.calls[0][1]["max_items"] == 50000
    real, fake = features()
    ref = compute_epr(real, fake, method="sampled", k=3)
    assert out == prefixed("pr50k3_sampled", ref)
    assert (out["pr50k3_sampled_precision_ci_low"], out["pr50k3_sampled_precision_ci_high"]) == ref.precision_ci


def test_other_ranks_return_nan_with_the_same_keys(checkout):
    lead = stylegan.pr50k3_full_exact(options(rank=0, num_gpus=2))
    other = stylegan.pr50k3_full_exact(options(rank=1, num_gpus=2))
    assert list(other) == list(lead) and all(math.isnan(v) for v in other.values())


@pytest.mark.parametrize("num_gpus,ready,shared", [(2, True, True), (2, False, False), (1, True, False)])
def test_the_ranks_of_a_multi_gpu_run_share_the_passes(checkout, monkeypatch, num_gpus, ready, shared):
    """eprmetrics computes alone unless asked: with several GPUs (and their process group) the metric asks."""
    import torch.distributed as dist

    seen = []
    real = stylegan.evaluate

    def spy(*args, options=None, **kwargs):
        seen.append(options["distributed"])
        return real(*args, options={**options, "distributed": False}, **kwargs)  # no group in this process

    monkeypatch.setattr(stylegan, "evaluate", spy)
    monkeypatch.setattr(dist, "is_initialized", lambda: ready)
    stylegan.pr50k3_full_exact(options(rank=0, num_gpus=num_gpus))
    assert seen == [shared]


def test_register_with_the_checkout_register_metric(checkout):
    names = stylegan.register(lambda fn: checkout.registered.setdefault(fn.__name__, fn))
    assert names == ["pr50k3_full_exact", "pr50k3_full_sampled", "pr50k3_exact", "pr50k3_sampled"]
    assert list(checkout.registered) == names
    checkout.registered.clear()
    assert stylegan.register() == names and list(checkout.registered) == names  # found in metrics.metric_main


def test_make_metric_names_and_checks(checkout):
    fn = stylegan.make_metric("pr90_k35", max_real=90, num_gen=80, k=(3, 5))
    assert fn.__name__ == "pr90_k35"
    out = fn(options())
    real, fake = features()
    assert out == prefixed("pr90_k35", compute_pr(real[:90], fake[:80], k=(3, 5)), (3, 5))
    bad = [
        (dict(name="pr 10k"), "name: expected a Python identifier"),
        (dict(method="hubness"), "method: expected one of"),
        (dict(num_gen=0), "num_gen: expected a positive int, got 0"),
        (dict(max_real=-5), "max_real: expected a positive int, got -5; or None"),
        (dict(detector_url=3), "detector_url: expected a URL or path string"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=re.escape(message)):
            stylegan.make_metric(**{"name": "x", "max_real": None, "num_gen": 10, **kwargs})


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
