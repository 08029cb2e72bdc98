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

from eprmetrics import Manifold, compute_epr, compute_pr, register_extractor  # noqa: E402
from eprmetrics.features.base import Extractor, imagenet_preprocess  # noqa: E402
from eprmetrics.integrations import torchmetrics as tm_module  # noqa: E402
from eprmetrics.integrations.common import canonical_order, f_score  # noqa: E402
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


def canonical(x):
    """``x`` in the row order compute() puts a set in."""
    return x[canonical_order(x)]


# the sampled path even on small sets (backend="auto" computes exactly below 5,000 points)
SAMPLED = dict(method="sampled", sample_size=30, options={"seed": 5, "backend": "exact"})


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
    assert out["f_score"].item() == pytest.approx(f_score(ref.precision, ref.recall))
    assert all(v.ndim == 0 for v in out.values()) and not any("_ci" in key for key in out)


def test_sampled_equals_compute_epr_with_intervals_as_separate_scalars():
    real, fake = data()
    m = metric(**SAMPLED)
    m.update(real, real=True)
    m.update(fake, real=False)
    out = m.compute()
    ref = compute_epr(canonical(features(real)), canonical(features(fake)), **SAMPLED["options"], sample_size=30)
    assert ref.plan.path == "sampled" and ref.precision_ci[0] < ref.precision_ci[1]
    assert set(out) == {
        "precision", "recall", "f_score",
        "precision_ci_low", "precision_ci_high", "recall_ci_low", "recall_ci_high",
    }  # fmt: skip
    assert all(v.ndim == 0 for v in out.values())  # what LightningModule.log_dict accepts
    assert out["precision"].item() == pytest.approx(ref.precision) and out["recall"].item() == pytest.approx(ref.recall)
    assert [out["precision_ci_low"].item(), out["precision_ci_high"].item()] == pytest.approx(list(ref.precision_ci))
    assert [out["recall_ci_low"].item(), out["recall_ci_high"].item()] == pytest.approx(list(ref.recall_ci))


def test_sampled_estimate_does_not_depend_on_the_order_of_the_rows():
    """Gathered from ranks, rows arrive in an order set by the sharding; the estimate must not follow it."""
    real, fake = data()
    perm_r, perm_f = (torch.randperm(len(x), generator=torch.Generator().manual_seed(1)) for x in (real, fake))
    outs = []
    for r, f in ((real, fake), (real[perm_r], fake[perm_f]), (real.flip(0), fake.flip(0))):
        m = metric(**SAMPLED)
        for part in r.tensor_split(3):
            m.update(part, real=True)
        m.update(f, real=False)
        outs.append(values(m.compute()))
    assert outs[0] == outs[1] == outs[2]
    # the raw order does matter to compute_epr itself (so the canonical order is what makes them equal)
    moved = compute_epr(features(real)[perm_r], features(fake)[perm_f], **SAMPLED["options"], sample_size=30)
    assert moved.precision != outs[0]["precision"] or moved.recall != outs[0]["recall"]


def test_canonical_order_is_a_function_of_the_rows_alone():
    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(400, 12, generator=gen))  # many exact zeros, as ReLU features have
    x[7] = x[3]  # identical rows
    x[8] = x[3]
    x[9] = -x[3] * 0  # -0.0 and 0.0 mixed: tied keys are ordered by their bits
    perm = torch.randperm(400, generator=gen)
    assert torch.equal(x[canonical_order(x)], x[perm][canonical_order(x[perm])])
    with pytest.raises(ValueError, match="canonical_order: expected float32 N×D features"):
        canonical_order(x.double())


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
    with pytest.raises(ValueError, match=r"options: expected compute_epr arguments .* got \['process_group'\]"):
        metric(method="sampled", options={"process_group": None})  # set by the metric from its own process_group
    with pytest.raises(ValueError, match="feature: expected one of"):
        PrecisionRecall(feature="no-such-network")


class _Pool(torch.nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)
        self.lin = torch.nn.Linear(48, 8)
        gen = torch.Generator().manual_seed(seed)  # float32 draws: the same weights whatever the default dtype
        with torch.no_grad():
            for p in self.lin.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * 0.2)

    def forward(self, x):
        return self.lin(self.drop(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)))


@register_extractor("tiny-pool-test")
def _tiny_pool(weights=None):
    return Extractor("tiny-pool-test", _Pool(0), 8, imagenet_preprocess(16), "tiny")


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
    assert torch.equal(m.fake_features[1], m.feature_net(imgs[:10, :1].expand(-1, 3, -1, -1)))
    m.fake_features.pop()
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


# ---------------------------------------------------------------- forward: the Lightning habit


@pytest.mark.parametrize("keep_real", [True, False])
def test_forward_accumulates_like_update_and_never_drops_or_duplicates_real_features(keep_real):
    real, fake = data()
    m = metric(reset_real_features=not keep_real)
    assert m(real[:50], real=True) is None  # one side only: no batch value to compute
    assert m(real[50:], real=True) is None
    for part in fake.tensor_split(3):
        assert m(part, real=False) is None
    assert sum(len(x) for x in m.real_features) == len(real) and sum(len(x) for x in m.fake_features) == len(fake)
    expected = compute_pr(features(real), features(fake))
    assert m.compute()["precision"].item() == pytest.approx(expected.precision)
    m.reset()
    m(fake, real=False)  # a second epoch: the kept real set is neither lost nor doubled
    assert sum(len(x) for x in m.real_features) == (len(real) if keep_real else 0)
    if keep_real:
        twice = compute_pr(features(fake), features(fake)).precision  # what a doubled real set would not give
        out = m.compute()
        assert out["precision"].item() == pytest.approx(expected.precision) and twice == 1.0
        assert out["recall"].item() == pytest.approx(expected.recall)


def test_forward_on_an_identical_fake_set_gives_precision_one():
    """The reported symptom: with reset_real_features=False each forward used to append the real set again."""
    real, _ = data()
    m = metric(reset_real_features=False)
    m.update(real, real=True)
    for _ in range(3):
        m(real[:30], real=False)
    assert len(m.real_features) == 1
    assert m.compute()["precision"].item() == 1.0


def test_metric_collection_forward_and_compute():
    real, fake = data()
    collection = torchmetrics.MetricCollection({"k3": metric(), "k5": metric(k=5)})
    assert collection(real, real=True) == {"k3": None, "k5": None}
    collection(fake, real=False)
    out = collection.compute()
    for k in (3, 5):
        ref = compute_pr(features(real), features(fake), k=k)
        assert out[f"k{k}_precision"].item() == pytest.approx(ref.precision)
        assert out[f"k{k}_recall"].item() == pytest.approx(ref.recall)


# ---------------------------------------------------------------- host precision: autocast, float64


def registry_metric(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return PrecisionRecall(feature="tiny-pool-test", **kwargs)


def image_data():
    gen = torch.Generator().manual_seed(4)
    real = torch.randint(0, 256, (90, 3, 20, 20), dtype=torch.uint8, generator=gen)
    fake = (real[:70].int() + torch.randint(-60, 61, (70, 3, 20, 20), generator=gen)).clamp(0, 255).to(torch.uint8)
    return real, fake


def run(m, real, fake):
    m.update(real, real=True)
    m.update(fake, real=False)
    assert all(t.dtype == torch.float32 for name in ("real_features", "fake_features") for t in getattr(m, name))
    return values(m.compute())


def as_float32(values: dict) -> dict:
    """Values reported in float64 (a float64 metric), as the float32 tensors of a float32 metric report them."""
    return {key: torch.tensor(value, dtype=torch.float32).item() for key, value in values.items()}


@pytest.mark.parametrize("kind", ["registry", "custom"])
def test_bf16_autocast_gives_the_float32_numbers(kind):
    real, fake = image_data() if kind == "registry" else data()
    make = registry_metric if kind == "registry" else metric
    expected = run(make(k=(3, 5)), real, fake)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # Lightning's bf16-mixed wraps validation in this
        got = run(make(k=(3, 5)), real, fake)
    assert got == expected


def test_float64_hosts_give_the_float32_numbers():
    real, fake = image_data()
    kwargs = dict(method="sampled", sample_size=30, options={"seed": 5, "backend": "exact"})
    reference = registry_metric(**kwargs)
    expected = run(reference, real, fake)
    m = registry_metric(**kwargs).set_dtype(torch.float64)
    assert next(m.feature_net.parameters()).dtype == torch.float32  # the network keeps its dtype
    got = run(m, real, fake)
    assert m.compute()["precision"].dtype == torch.float64  # the metric's dtype: its values rounded to float32 ...
    assert as_float32(got) == expected  # ... are the float32 run's, bit for bit
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # what Lightning's 64-true does while it builds and runs the module
    try:
        m = registry_metric(**kwargs)  # network and preprocessing (ImageNet mean/std) made under float64
        got = run(m, real, fake)
    finally:
        torch.set_default_dtype(previous)
    assert {p.dtype for p in m.feature_net.parameters()} == {torch.float32}
    assert torch.equal(torch.cat(m.real_features), torch.cat(reference.real_features))  # the very same features
    assert as_float32(got) == expected


def test_dtype_casts_reach_neither_the_kept_features_nor_the_network():
    real, fake = data()
    m = metric()
    m.update(real, real=True)
    before = m.real_features[0].clone()
    weight = m.feature_net.weight.detach().clone()
    m.set_dtype(torch.half)  # a cast to half would round every kept feature
    assert m.real_features[0].dtype == torch.float32 and torch.equal(m.real_features[0], before)
    assert m.feature_net.weight.dtype == torch.float32
    m.bfloat16()  # what Lightning's bf16-true does to the module: not cast to bfloat16 and back (rounded weights)
    assert torch.equal(m.feature_net.weight, weight)
    m.update(fake.double(), real=False)  # a float64 batch (Lightning's 64-true) meets the float32 network
    assert m.fake_features[0].dtype == torch.float32
    out = m.compute()
    assert out["precision"].dtype == torch.float32  # not half: the values keep float32 resolution
    assert out["precision"].item() == pytest.approx(compute_pr(features(real), features(fake)).precision)


# ---------------------------------------------------------------- normalize=True: floats in [0, 1]


def test_normalize_takes_floats_in_unit_range_as_torchmetrics_does():
    real, fake = image_data()
    expected = run(registry_metric(), real, fake)
    assert run(registry_metric(normalize=True), real.float() / 255, fake.float() / 255) == expected
    assert run(registry_metric(normalize=True), real.double() / 255, fake.bfloat16() / 255)[
        "precision"
    ] == pytest.approx(expected["precision"], abs=0.05)
    m = registry_metric(normalize=True)
    with pytest.raises(
        ValueError, match=r"imgs: expected float images with values in \[0, 1\] .* got values in \[-1, 1\]"
    ):
        m.update(real.float() / 127.5 - 1, real=True)
    with pytest.raises(
        ValueError, match=r"imgs: expected float images N×3×H×W with values in \[0, 1\].* got torch.uint8"
    ):
        m.update(real, real=True)
    nan = real.float() / 255
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="got values in"):
        m.update(nan, real=True)
    with pytest.raises(ValueError, match=r"imgs: expected uint8 images .* normalize=True for floats in \[0, 1\]"):
        registry_metric().update(real.float() / 255, real=True)
    with pytest.raises(ValueError, match="normalize: True scales float images .* feature is an nn.Module"):
        metric(normalize=True)
    with pytest.raises(ValueError, match="normalize: expected"):
        registry_metric(normalize=1)


# ---------------------------------------------------------------- reference=Manifold


def test_reference_manifold_is_the_real_side_and_refuses_real_updates(monkeypatch):
    real, fake = data()
    manifold = Manifold.fit(features(real), k=(3, 5))
    seen = []
    evaluate = tm_module.evaluate
    monkeypatch.setattr(tm_module, "evaluate", lambda r, f, **kw: seen.append(r) or evaluate(r, f, **kw))
    m = metric(k=(3, 5), reference=manifold)
    m.update(fake, real=False)
    out = m.compute()
    ref = compute_pr(features(real), features(fake), k=(3, 5))
    assert seen == [manifold] and m.real_features == []  # handed over as it is: its radii are not recomputed
    assert out["precision"].item() == pytest.approx(ref.precision) and out["recall_k5"].item() == pytest.approx(
        ref.per_k[5].recall
    )
    with pytest.raises(ValueError, match=r"real: this metric's real side is the Manifold given as reference="):
        m.update(real, real=True)
    with pytest.raises(ValueError, match="k: this manifold holds radii for k ≤ 5, got k=10"):
        metric(k=10, reference=manifold)
    with pytest.raises(ValueError, match="reference: expected an eprmetrics.Manifold"):
        metric(reference=features(real))
    wide = metric(reference=Manifold.fit(torch.randn(50, 7)))
    with pytest.raises(ValueError, match="feature: the network returned 16 features per image, but .* have 7"):
        wide.update(fake, real=False)


@register_extractor("tiny-pool-test-other")
def _tiny_pool_other(weights=None):  # same architecture and width, other weights
    return Extractor("tiny-pool-test-other", _Pool(1), 8, imagenet_preprocess(16), "tiny")


def test_reference_manifold_fitted_on_images_must_come_from_the_metric_network():
    real, fake = image_data()
    manifold = Manifold.fit(real, k=3, extractor="tiny-pool-test", progress=False)
    m = registry_metric(reference=manifold)
    m.update(fake, real=False)
    ref = compute_pr(real, fake, k=3, extractor="tiny-pool-test", progress=False)
    assert m.compute()["precision"].item() == pytest.approx(ref.precision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValueError, match="reference: the manifold's features were made by tiny-pool-test, but .* "
                           "is tiny-pool-test-other; build the metric with the manifold's network"):  # fmt: skip
            PrecisionRecall(feature="tiny-pool-test-other", reference=manifold)


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


# ---------------------------------------------------------------- a real Lightning loop


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "64-true", "bf16-true"])
def test_lightning_log_dict_takes_every_sampled_output_under_each_precision_plugin(precision):
    """``self.log_dict(metric.compute())`` in a Trainer (Lightning rejects a tensor of more than one element),
    with the metric called the Lightning way (``self.metric(imgs, real=...)``): the float32 numbers."""
    lightning = pytest.importorskip("lightning")
    real, fake = image_data()
    kwargs = dict(method="sampled", sample_size=30, options={"seed": 5, "backend": "exact"})
    expected = run(registry_metric(**kwargs), real, fake)

    class Module(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            self.metric = registry_metric(**kwargs)
            self.lin = torch.nn.Linear(1, 1)

        def validation_step(self, batch, batch_idx):
            imgs, is_real = batch
            self.metric(imgs, real=bool(is_real))

        def on_validation_epoch_end(self):
            self.log_dict(self.metric.compute())
            self.metric.reset()

    batches = [(part, True) for part in real.tensor_split(2)] + [(part, False) for part in fake.tensor_split(3)]
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    trainer = lightning.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    module = Module()
    for _ in range(2):  # a second epoch starts from the reset state and gives the same values
        (logged,) = trainer.validate(module, dataloaders=loader, verbose=False)
        assert as_float32(logged) == expected
        assert module.metric.real_features == [] and module.metric.fake_features == []
