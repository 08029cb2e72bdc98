"""VGG-16 features equal torch-fidelity's at every input size: the TF1 resize, pinned three ways.

By hand (what TF1's ``resize_bilinear`` reads), against torch-fidelity's own resize function, and
end to end: one random-init state dict (a torchvision VGG-16's, the key names both load) in a tmp
file, loaded into torch-fidelity's ``FeatureExtractorVGG16`` and into ours. Nothing is downloaded.
"""

import pytest
import torch
import torch.nn.functional as F

from eprmetrics.features import extractor_identity, register_extractor
from eprmetrics.features.base import extractor_revision, get_extractor, resize_batch
from eprmetrics.features.resize import resize

CPU = torch.device("cpu")


def test_tf1_reads_pixel_corners_torch_reads_centres():
    row = torch.tensor([[[[0.0, 4.0]]]])
    # TF1: output j reads the input at j · 2/4 = 0, 0.5, 1, 1.5 — the last one past the edge repeats it
    assert resize(row, (1, 4), "tf1").flatten().tolist() == [0.0, 2.0, 4.0, 4.0]
    # PyTorch half-pixel: (j + ½) · 2/4 − ½ = −0.25, 0.25, 0.75, 1.25, clamped
    assert resize(row, (1, 4), "torch").flatten().tolist() == [0.0, 1.0, 3.0, 4.0]
    wide = torch.arange(8.0).view(1, 1, 1, 8)
    assert resize(wide, (1, 3), "tf1").flatten().tolist() == pytest.approx([0.0, 8 / 3, 16 / 3])
    column = torch.tensor([0.0, 4.0]).view(1, 1, 2, 1)
    assert resize(column, (4, 1), "tf1").flatten().tolist() == [0.0, 2.0, 4.0, 4.0]


@pytest.mark.parametrize("shape,size", [((32, 32), 224), ((256, 256), 224), ((40, 90), 224), ((1, 5), 7), ((7, 7), 3)])
def test_tf1_resize_equals_torch_fidelitys(shape, size):
    compat = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    x = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(0))
    theirs = compat.interpolate_bilinear_2d_like_tensorflow1x(x, size=(size, size), align_corners=False)
    torch.testing.assert_close(resize(x, (size, size), "tf1"), theirs, rtol=0, atol=1e-6)
    if shape != (size, size):  # the resize eprmetrics used before: far from it
        assert (resize(x, (size, size), "torch") - theirs).abs().max() > 0.05


def test_resize_mode_is_checked():
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"^resize: expected one of \('tf1', 'torch'\), got 'bicubic'; "):
        resize_batch(images, 4, CPU, mode="bicubic")


@pytest.fixture(scope="module")
def both_vgg16(tmp_path_factory):
    """torch-fidelity's VGG-16 extractor and ours, holding one random-init state dict."""
    fe = pytest.importorskip("torch_fidelity.feature_extractor_vgg16")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg16") / "vgg16_random.pt"
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)
    theirs = fe.FeatureExtractorVGG16("vgg16", ["fc2_relu"], feature_extractor_weights_path=str(path))
    yield theirs, get_extractor("vgg16", path)
    path.unlink()


def _images(size):
    """Two uint8 images: pixel noise (every pixel its own) and a smooth one (a bicubic upscale of 4×4)."""
    gen = torch.Generator().manual_seed(size)
    noise = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=gen)
    smooth = F.interpolate(torch.rand(1, 3, 4, 4, generator=gen), size=(size, size), mode="bicubic")
    return torch.cat([noise, (smooth.clamp(0, 1) * 255).round().to(torch.uint8)])


@pytest.mark.parametrize("size", [32, 64, 256, 224])
def test_vgg16_features_equal_torch_fidelitys(both_vgg16, size):
    theirs, ours = both_vgg16
    images = _images(size)
    with torch.no_grad():
        expected = theirs(images)[0]
    got = ours(images, CPU)
    assert got.shape == expected.shape == (2, 4096) and (expected > 0).any(dim=1).all()
    relative = (got - expected).norm(dim=1) / expected.norm(dim=1)
    assert relative.max() <= 1e-5, relative  # the earlier resize: 3–13% at 32–64 px, 0.2–5% at 256 px


def test_vgg16_cache_identity_carries_its_resize():
    """Features cached with the earlier resize (key ``vgg16|default``) are never served as today's."""
    assert extractor_revision("vgg16") == "resize=tf1"
    assert extractor_identity("vgg16", None) == "vgg16|default|resize=tf1"
    register_extractor("parity-test-net", dim=4)(lambda weights: None)
    assert extractor_identity("parity-test-net", None) == "parity-test-net|default"  # no revision: key unchanged
