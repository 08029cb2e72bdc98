"""torch-fidelity: calculate_metrics reuses its inputs, extractor registry and feature cache, and adds our P&R.

Offline: tiny random-projection extractors are registered with torch-fidelity's
``register_feature_extractor``; each counts the images it is given, so a second extraction shows.
The direction (input1 = generated, input2 = real) is checked on a mode-collapsed generated set:
every generated image copies one of two real ones, so precision is high and recall low — swapped
inputs would say the opposite.
"""

import sys

import pytest
import torch

torch_fidelity = pytest.importorskip("torch_fidelity")

from eprmetrics import compute_pr  # noqa: E402
from eprmetrics.integrations.fidelity import calculate_metrics  # noqa: E402

NAME = "eprmetrics-tiny-test"
OTHER = "eprmetrics-tiny-other"  # stands in for torch-fidelity's Inception where a test needs two extractors
SIZE = 16
SEEN = {NAME: 0, OTHER: 0}  # images each extractor was given


class TinyExtractor(torch_fidelity.FeatureExtractorBase):
    """uint8 N×3×16×16 → 16 features by a fixed random projection (no weights to download)."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("proj", torch.randn(3 * SIZE * SIZE, 16, generator=gen))

    @staticmethod
    def get_provided_features_list():
        return ("tiny",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "tiny"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8)

    def forward(self, x):
        SEEN[self.name] += x.shape[0]
        return ((x.float().flatten(1) / 255.0) @ self.proj,)


for _name in (NAME, OTHER):
    if _name not in torch_fidelity.registry.FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(_name, TinyExtractor)


class Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def image_sets():
    """60 distinct real images; 60 generated ones, each one of the first two real images with ±1 noise."""
    gen = torch.Generator().manual_seed(1)
    real = torch.randint(0, 256, (60, 3, SIZE, SIZE), dtype=torch.uint8, generator=gen)
    noise = torch.randint(-1, 2, (60, 3, SIZE, SIZE), generator=gen)
    collapsed = (real[torch.arange(60) % 2].long() + noise).clamp(0, 255).to(torch.uint8)
    return Images(collapsed), Images(real)


KW = dict(feature_extractor=NAME, cuda=False, verbose=False, save_cpu_ram=True, batch_size=32)


def test_mode_collapse_reads_high_precision_low_recall():
    generated, real = image_sets()
    out = calculate_metrics(input1=generated, input2=real, prc=True, cache=False, **KW)
    assert out["eprmetrics_precision"] == 1.0 and out["eprmetrics_recall"] == pytest.approx(2 / 60)
    assert set(out) >= {"eprmetrics_density", "eprmetrics_coverage", "precision", "recall", "f_score"}
    # torch-fidelity >= 0.4 names them the same way (its unreleased P&R before 0.4.0 had them swapped)
    assert out["precision"] == out["eprmetrics_precision"]
    assert out["recall"] == pytest.approx(out["eprmetrics_recall"], rel=1e-6)  # theirs: a float32 mean
    assert out["eprmetrics_f_score"] == pytest.approx(out["f_score"], rel=1e-6)  # 2PR / (P + R), as theirs
    assert all(type(v) is float for key, v in out.items() if key.startswith("eprmetrics_"))
    swapped = calculate_metrics(input1=real, input2=generated, prc=True, cache=False, **KW)
    assert swapped["eprmetrics_precision"] == pytest.approx(2 / 60) and swapped["eprmetrics_recall"] == 1.0


def test_values_equal_compute_pr_on_the_extractor_features():
    generated, real = image_sets()
    out = calculate_metrics(generated, real, prc=True, eprmetrics_k=(3, 5), eprmetrics_fidelity_prc=False, **KW)
    net = TinyExtractor(NAME, ["tiny"])
    feats = {name: net(ds.images)[0] for name, ds in (("fake", generated), ("real", real))}
    ref = compute_pr(feats["real"], feats["fake"], k=(3, 5))
    assert out["eprmetrics_precision"] == ref.precision and out["eprmetrics_coverage"] == ref.coverage
    assert out["eprmetrics_recall_k5"] == ref.per_k[5].recall
    assert "precision" not in out and "f_score" not in out  # torch-fidelity's own P&R left out when asked


def test_each_image_goes_through_the_extractor_once():
    """fid, kid and prc on one extractor: one extraction of each input serves all three, with torch-fidelity's
    values; torch-fidelity's own call on the same inputs is the reference for fid and kid."""
    generated, real = image_sets()
    asked = dict(fid=True, kid=True, prc=True, kid_subsets=2, kid_subset_size=20, cache=False, **KW)
    before = SEEN[NAME]
    out = calculate_metrics(generated, real, **asked)
    assert SEEN[NAME] - before == 120  # 60 generated + 60 real images, each once
    theirs = torch_fidelity.calculate_metrics(input1=generated, input2=real, **asked)
    assert {key: out[key] for key in theirs} == theirs
    assert out["eprmetrics_precision"] == theirs["precision"]


def test_metrics_on_another_extractor_go_to_torch_fidelity(monkeypatch):
    """Default extractors: FID on Inception, P&R on VGG-16 (here two tiny stand-ins): each sees each image once."""
    monkeypatch.setitem(torch_fidelity.utils.DEFAULT_FEATURE_EXTRACTOR, "fid", OTHER)
    monkeypatch.setitem(torch_fidelity.utils.DEFAULT_FEATURE_EXTRACTOR, "prc", NAME)
    kw = {key: value for key, value in KW.items() if key != "feature_extractor"}
    generated, real = image_sets()
    before = dict(SEEN)
    out = calculate_metrics(generated, real, fid=True, prc=True, cache=False, **kw)
    assert {name: SEEN[name] - before[name] for name in SEEN} == {NAME: 120, OTHER: 120}
    theirs = torch_fidelity.calculate_metrics(input1=generated, input2=real, fid=True, prc=True, cache=False, **kw)
    assert {key: out[key] for key in theirs} == theirs
    assert out["eprmetrics_recall"] == pytest.approx(theirs["recall"], rel=1e-6)


def test_without_prc_it_is_torch_fidelitys_call_and_computes_no_pr(monkeypatch):
    import eprmetrics.integrations.fidelity as fidelity

    def no_pr(*args, **kwargs):
        raise AssertionError("P&R computed without prc=True")

    monkeypatch.setattr(fidelity, "evaluate", no_pr)
    generated, real = image_sets()
    before = SEEN[NAME]
    out = calculate_metrics(generated, real, fid=True, cache=False, **KW)
    assert SEEN[NAME] - before == 120
    assert out == torch_fidelity.calculate_metrics(input1=generated, input2=real, fid=True, cache=False, **KW)
    assert set(out) == {"frechet_inception_distance"}


def test_feature_cache_is_torch_fidelitys(tmp_path):
    generated, real = image_sets()
    cache = dict(cache_root=str(tmp_path), input1_cache_name="tiny-generated", input2_cache_name="tiny-real")
    first = calculate_metrics(generated, real, prc=True, **cache, **KW)
    seen = SEEN[NAME]
    assert len(list(tmp_path.glob(f"tiny-*-{NAME}-features-tiny.pt"))) == 2
    again = calculate_metrics(generated, real, prc=True, **cache, **KW)
    assert SEEN[NAME] == seen and again == first  # read back, not extracted again


def test_sampled_has_intervals():
    generated, real = image_sets()
    out = calculate_metrics(
        generated, real, prc=True, eprmetrics_method="sampled", eprmetrics_sample_size=30, cache=False, **KW
    )
    for side in ("precision", "recall"):
        low, value, high = (out[f"eprmetrics_{side}{s}"] for s in ("_ci_low", "", "_ci_high"))
        assert type(low) is float and type(high) is float and low <= value <= high
    assert "eprmetrics_density" not in out and "eprmetrics_f_score" in out


def test_bad_options_and_missing_library_are_one_line(monkeypatch):
    generated, real = image_sets()
    with pytest.raises(ValueError, match="eprmetrics_options: expected compute_pr arguments"):
        calculate_metrics(generated, real, prc=True, eprmetrics_options={"k": 3}, **KW)
    with pytest.raises(ValueError, match="eprmetrics_method: expected one of|method: expected one of"):
        calculate_metrics(generated, real, prc=True, eprmetrics_method="hubness", **KW)
    with pytest.raises(ValueError, match=r"^eprmetrics_fidelity_prc: expected True or False, got 'no'$"):
        calculate_metrics(generated, real, prc=True, eprmetrics_fidelity_prc="no", **KW)
    with pytest.raises(ValueError, match=r"^eprmetrics_k: expected to come with prc=True .*got 5; add prc=True"):
        calculate_metrics(generated, real, fid=True, eprmetrics_k=5, **KW)
    with pytest.raises(ValueError, match=r"^input2: expected the real samples .*got None; pass input2="):
        calculate_metrics(generated, prc=True, **KW)
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'eprmetrics\[fidelity\]'"):
        calculate_metrics(generated, real, prc=True, **KW)
