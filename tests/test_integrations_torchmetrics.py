"""torchmetrics: PrecisionRecall gathers features like KID, equals compute_pr / compute_epr, and is DDP-safe.

Tiny networks and feature sizes only (offline); the DDP test spawns two gloo processes that each
update with half of the data and checks that they report what one process does.
"""

import os
import time
import warnings

import pytest
import torch

torchmetrics = pytest.importorskip("torchmetrics")

from eprmetrics import compute_epr, compute_pr, register_extractor  # noqa: E402
from eprmetrics.features.base import Extractor, resize_batch  # noqa: E402
from eprmetrics.integrations.torchmetrics import FrozenExtractor, PrecisionRecall  # noqa: E402

SEED = 3


def tiny_net(dim: int = 16) -> torch.nn.Module:
    """Float features in, a fixed random projection out (the same weights in every process)."""
    gen = torch.Generator().manual_seed(SEED)
    lin = torch.nn.Linear(24, dim)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(dim, 24, generator=gen))
        lin.bias.zero_()
    return lin


def data():
    """Real and fake inputs for ``tiny_net``: two overlapping Gaussians."""
    gen = torch.Generator().manual_seed(11)
    real = torch.randn(91, 24, generator=gen)  # odd sizes: ranks hold 46 and 45
    fake = torch.randn(71, 24, generator=gen) * 1.2 + 0.3
    return real, fake


def metric(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the memory warning, tested below
        return PrecisionRecall(feature=tiny_net(), **kwargs)


def values(out):
    return {key: value.tolist() for key, value in out.items()}


def features(x):
    with torch.no_grad():
        return tiny_net()(x)


def test_is_a_torchmetrics_metric_like_kid():
    m = metric()
    assert isinstance(m, torchmetrics.Metric)
    assert m.higher_is_better is True and m.full_state_update is False and m.is_differentiable is False
    assert m._reductions["real_features"] is torchmetrics.utilities.data.dim_zero_cat
    assert m._defaults["fake_features"] == []
    with pytest.warns(UserWarning, match="will save all extracted features"):
        PrecisionRecall(feature=tiny_net())


def test_exact_equals_compute_pr():
    real, fake = data()
    m = metric(k=(3, 5))
    for part in real.split(40):
        m.update(part, real=True)
    for part in fake.split(25):
        m.update(part, real=False)
    out = m.compute()
    ref = compute_pr(features(real), features(fake), k=(3, 5))
    assert out["precision"].item() == pytest.approx(ref.precision) and out["recall"].item() == pytest.approx(ref.recall)
    assert out["density"].item() == pytest.approx(ref.density) and out["coverage"].item() == pytest.approx(ref.coverage)
    assert out["recall_k5"].item() == pytest.approx(ref.per_k[5].recall)
    assert {"precision_ci", "recall_ci"}.isdisjoint(out) and all(v.ndim == 0 for v in out.values())


def test_sampled_equals_compute_epr_with_intervals():
    real, fake = data()
    m = metric(method="sampled", sample_size=30, options={"seed": 5})
    m.update(real, real=True)
    m.update(fake, real=False)
    out = m.compute()
    ref = compute_epr(features(real), features(fake), method="sampled", sample_size=30, seed=5)
    assert out["precision"].item() == pytest.approx(ref.precision)
    assert out["precision_ci"].tolist() == pytest.approx(list(ref.precision_ci))
    assert out["recall_ci"].tolist() == pytest.approx(list(ref.recall_ci))
    assert "density" not in out


def test_reset_honours_reset_real_features():
    real, fake = data()
    keep = metric(reset_real_features=False)
    clear = metric()
    for m in (keep, clear):
        m.update(real, real=True)
        m.update(fake, real=False)
        m.reset()
    assert len(keep.real_features) == 1 and keep.fake_features == []
    assert clear.real_features == [] and clear.fake_features == []
    keep.update(fake, real=False)
    assert keep.compute()["precision"].item() == pytest.approx(compute_pr(features(real), features(fake)).precision)


def test_nothing_to_compute_and_bad_options_are_one_line():
    m = metric()
    m.update(data()[0], real=True)
    with pytest.raises(ValueError, match=r"no fake features to compute on; call update\(imgs, real=False\)"):
        m.compute()
    with pytest.raises(ValueError, match="method: expected one of"):
        metric(method="hubness")
    with pytest.raises(ValueError, match="eP&R uses one k"):
        metric(method="sampled", k=(3, 5))
    with pytest.raises(ValueError, match=r"options: expected compute_pr arguments .* got \['sample_size'\]"):
        metric(options={"sample_size": 10})
    with pytest.raises(ValueError, match="feature: expected one of"):
        PrecisionRecall(feature="no-such-network")


class _Pool(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)
        self.lin = torch.nn.Linear(48, 8)

    def forward(self, x):
        return self.lin(self.drop(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)))


@register_extractor("tiny-pool-test")
def _tiny_pool(weights=None):
    torch.manual_seed(0)
    return Extractor("tiny-pool-test", _Pool(), 8, lambda imgs, dev: resize_batch(imgs, 16, dev), "tiny")


def test_registry_extractor_takes_uint8_images_and_stays_in_eval_mode():
    gen = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (30, 3, 20, 20), dtype=torch.uint8, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = PrecisionRecall(feature="tiny-pool-test")
    assert isinstance(m.feature_net, FrozenExtractor)
    m.train()  # what Lightning does to every sub-module: dropout must stay off
    assert not m.feature_net.training and not m.feature_net.net.drop.training
    m.update(imgs, real=True)
    m.update(imgs[:10], real=False)
    m.update(imgs[:10, :1], real=False)  # grayscale N×1×H×W is repeated to RGB
    out = m.compute()
    assert out["precision"].item() == 1.0
    with pytest.raises(ValueError, match=r"imgs: expected uint8 images N×3×H×W .* got torch.float32 tensor"):
        m.update(imgs.float() / 255, real=True)


def test_plot_returns_figure_and_axes():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    real, fake = data()
    m = metric(method="sampled", sample_size=20)
    m.update(real, real=True)
    m.update(fake, real=False)
    fig, ax = m.plot()  # intervals are left out: the helper draws scalars
    assert fig is not None and ax is not None
    fig, ax = m.plot([m.compute(), m.compute()])
    assert ax is not None


# ---------------------------------------------------------------- DDP: two gloo processes


def _ddp_worker(rank: int, world: int, folder: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        out = {"world": [dist.get_rank(), dist.get_world_size()], "results": _results(rank, world)}
        torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _results(rank: int = 0, world: int = 1) -> dict:
    """Both methods, each process updating with its contiguous share of the data (uneven sizes and batches)."""
    real, fake = data()
    out = {}
    for name, kwargs in {"exact": dict(k=(3, 5)), "sampled": dict(method="sampled", sample_size=40)}.items():
        m = metric(**kwargs)
        m.update(real.tensor_split(world)[rank], real=True)
        for chunk in fake.tensor_split(world)[rank].tensor_split(2):
            m.update(chunk, real=False)
        out[name] = values(m.compute())
        out[f"{name}_local_real"] = sum(len(x) for x in m.real_features)  # this process's own share
    return out


def test_ddp_two_gloo_processes_equal_one_process(tmp_path):
    import torch.multiprocessing as mp

    # fork: the children start with torch, torchmetrics and eprmetrics imported (spawn re-imports them: ~25 s)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    workers = mp.start_processes(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=False, start_method=method)
    deadline = time.monotonic() + 300
    while not workers.join(timeout=2):
        if time.monotonic() > deadline:
            for p in workers.processes:
                p.kill()
            pytest.fail("the two DDP processes did not finish in 300 s")
    single = _results()
    for rank, share in enumerate((46, 45)):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["world"] == [rank, 2]
        assert got["results"].pop("exact_local_real") == got["results"].pop("sampled_local_real") == share
        assert got["results"] == {k: v for k, v in single.items() if not k.endswith("_local_real")}, rank
