"""DINOv2 (timm) and CLIP (open_clip) extractors, offline: random-init networks saved to files and passed as weights=.

Nothing is downloaded: the networks get random weights, saved to temporary files; the download
tests make name resolution fail, so the hub fails as it does without network. The smallest
networks (ViT-S/14, ViT-B/32) run by default, each built as few times as the checks allow; ViT-L
is ``slow``.
"""

import socket
import sys
import time

import numpy as np
import pytest
import torch

from eprmetrics.cli import main
from eprmetrics.features import extract_features, extractor_names, get_extractor
from eprmetrics.features.base import IMAGENET_MEAN, IMAGENET_STD, extractor_dim, without_init
from eprmetrics.features.clip import clip_preprocess
from eprmetrics.features.dinov2 import dinov2_preprocess, dinov2_state_at_224

DIMS = {
    "dinov2": 1024,
    "dinov2-vits14": 384,
    "dinov2-vitb14": 768,
    "dinov2-vitl14": 1024,
    "dinov2-vitg14": 1536,
    "clip": 512,
    "clip-vitb32": 512,
    "clip-vitl14": 768,
}
CPU = torch.device("cpu")


def images(n=2, h=37, w=53, seed=0):
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def other_state(state):
    """Other weights of the same shapes (a second random state, without building a second network)."""
    gen = torch.Generator().manual_seed(1)
    return {k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in state.items()}


@pytest.fixture(scope="module")
def dinov2_case(tmp_path_factory):
    """ViT-S/14 random weights saved at 518 px (timm's default, as the released ones); others in Meta's layout."""
    timm = pytest.importorskip("timm")
    folder = tmp_path_factory.mktemp("dinov2")
    torch.manual_seed(0)
    state = timm.create_model("vit_small_patch14_dinov2", num_classes=0).state_dict()
    torch.save(state, folder / "a518.pt")
    torch.save({**other_state(state), "mask_token": torch.zeros(1, 384)}, folder / "b518.pt")  # Meta's layout
    ext = get_extractor("dinov2-vits14", weights=folder / "a518.pt")
    return folder / "a518.pt", folder / "b518.pt", state, ext, ext(images(), CPU)


@pytest.fixture(scope="module")
def clip_case(tmp_path_factory):
    """ViT-B/32: the whole model's random state dict (as create_model saves it), its .visual's, other weights."""
    open_clip = pytest.importorskip("open_clip")
    folder = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True).eval().half().float()

    def save(state, name):  # float16 files (half the writing; the values are float16 ones): loaded as float32
        torch.save({k: v.half() for k, v in state.items()}, folder / name)

    save(model.state_dict(), "whole.pt")
    save(model.visual.state_dict(), "visual.pt")
    save(other_state(model.visual.state_dict()), "other.pt")
    feats = get_extractor("clip", weights=folder / "whole.pt")(images(), CPU)
    (folder / "whole.pt").unlink()  # 300 MB no later test reads: CI disks can be small
    return folder / "visual.pt", folder / "other.pt", model, feats


def test_registry_lists_the_names_with_their_widths():
    assert set(DIMS) <= set(extractor_names())
    assert {name: extractor_dim(name) for name in DIMS} == DIMS


def test_the_declared_widths_are_the_networks():
    timm = pytest.importorskip("timm")
    open_clip = pytest.importorskip("open_clip")
    from eprmetrics.features import clip, dinov2

    for variant, (arch, dim) in dinov2.VARIANTS.items():
        with torch.device("meta"):  # shapes only: no memory, no init cost
            net = timm.create_model(arch, num_classes=0, img_size=224)
        assert net.num_features == dim == DIMS[f"dinov2-{variant}"] and net.pos_embed.shape == (1, 257, dim)
    for variant, (arch, dim) in clip.VARIANTS.items():
        assert open_clip.get_model_config(arch)["embed_dim"] == dim == DIMS[f"clip-{variant}"]


def test_dinov2_loads_its_weights(dinov2_case):
    _, b518, state, ext, feats = dinov2_case
    assert torch.equal(ext.module.state_dict()["blocks.0.attn.qkv.weight"], state["blocks.0.attn.qkv.weight"])
    assert feats.shape == (2, 384) and feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert not torch.allclose(get_extractor("dinov2-vits14", weights=b518)(images(), CPU), feats)


def test_dinov2_position_embedding_is_resampled_as_dinov2_does():
    cls, const = torch.randn(1, 1, 8), torch.full((1, 37 * 37, 8), 0.25)
    meta_format = {
        "pos_embed": torch.cat([cls, const], 1),
        "mask_token": torch.zeros(1, 8),
        "blocks.0.mlp.w12.weight": 1,
    }
    out = dinov2_state_at_224(meta_format)
    assert set(out) == {"pos_embed", "blocks.0.mlp.fc1.weight"}
    assert out["pos_embed"].shape == (1, 1 + 16 * 16, 8)
    assert torch.equal(out["pos_embed"][:, :1], cls) and torch.allclose(out["pos_embed"][:, 1:], const[:, :256])
    at224 = {"pos_embed": torch.randn(1, 257, 8)}
    assert dinov2_state_at_224(dict(at224))["pos_embed"] is at224["pos_embed"]


def test_clip_is_encode_image_of_the_weights_file(clip_case):
    _, other, model, feats = clip_case
    with torch.inference_mode():  # the whole model's encode_image (QuickGELU, as OpenAI's weights need)
        expected = model.encode_image(clip_preprocess(images(), CPU))
    assert feats.shape == (2, 512) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(get_extractor("clip", weights=other)(images(), CPU), feats)


def test_without_init_builds_as_usual_when_it_must():
    def reads_its_values():
        net = torch.nn.Linear(2, 2)
        net.weight.sum().item()  # cannot on the meta device
        return net

    assert without_init(reads_its_values).weight.device.type == "cpu"
    assert torch.equal(without_init(lambda: torch.nn.BatchNorm1d(3)).running_var, torch.ones(3))  # buffers
    assert without_init(lambda: torch.nn.Linear(2, 2)).weight.device.type == "cpu"


def test_preprocessing_sizes_and_crops():
    x = images(2, 224, 224)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(dinov2_preprocess(x, CPU), (x / 255 - mean) / std)  # 224 px: no resize
    mixed = [images(1, 17, 90)[0], images(1, 300, 41)[0]]
    assert dinov2_preprocess(mixed, CPU).shape == clip_preprocess(mixed, CPU).shape == (2, 3, 224, 224)
    tall = images(1, 448, 224)  # shorter side already 224: CLIP only crops the centre
    torch.testing.assert_close(clip_preprocess(tall, CPU), clip_preprocess(tall[:, :, 112:336], CPU))


@pytest.mark.parametrize("extractor", ["dinov2-vits14", "clip-vitb32"])
def test_extract_features_from_arrays_and_folders(dinov2_case, clip_case, tmp_path, extractor):
    """N×H×W×3 arrays and a folder of two sizes (each image resized on its own) give the N×3×H×W features."""
    pytest.importorskip("PIL")
    from PIL import Image

    weights, feats = (dinov2_case[0], dinov2_case[4]) if extractor.startswith("dinov2") else clip_case[::3]
    nhwc = images().permute(0, 2, 3, 1).numpy()
    out = extract_features(nhwc, extractor=extractor, weights=weights, progress=False)
    assert out.shape == (2, DIMS[extractor]) and out.dtype == np.float32
    np.testing.assert_array_equal(out, feats.numpy())
    Image.fromarray(nhwc[0]).save(tmp_path / "0.png")
    Image.fromarray(images(1, 64, 20, seed=1)[0].permute(1, 2, 0).numpy()).save(tmp_path / "1.png")
    folder = extract_features(tmp_path, extractor=extractor, weights=weights, progress=False)
    assert folder.shape == (2, DIMS[extractor])
    np.testing.assert_allclose(folder[0], feats[0].numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "extractor,origin",
    [("dinov2-vits14", 'timm.create_model("vit_small_patch14_dinov2.lvd142m"'), ("clip", "open_clip")],
)
def test_a_bad_weights_file_is_one_line(tmp_path, extractor, origin):
    pytest.importorskip("timm" if extractor.startswith("dinov2") else "open_clip")
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match=f"does not fit {extractor} ") as info:
        get_extractor(extractor, weights=tmp_path / "foreign.pt")
    assert "\n" not in str(info.value) and f"pass a state dict saved from {origin}" in str(info.value)


@pytest.mark.parametrize(
    "extractor,package,extra", [("dinov2", "timm", "dinov2"), ("clip-vitl14", "open_clip", "clip")]
)
def test_a_missing_library_names_the_extra(monkeypatch, tmp_path, extractor, package, extra):
    monkeypatch.setitem(sys.modules, package, None)
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(
        ModuleNotFoundError, match=rf"needs the '{package}' package: pip install 'eprmetrics\[{extra}\]'"
    ):
        get_extractor(extractor, weights=tmp_path / "w.pt")


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Name resolution fails (as without network); the hub's retries do not wait; its cache is empty."""
    hub = pytest.importorskip("huggingface_hub")

    def unresolvable(*args, **kwargs):
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    monkeypatch.setattr(hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.mark.parametrize(
    "extractor,what,source",
    [  # timm builds the network before it downloads: the smallest one
        ("dinov2-vits14", "vit_small_patch14_dinov2.lvd142m", 'timm.create_model("vit_small_patch14_dinov2.lvd142m"'),
        ("clip", "ViT-B-32 openai", 'open_clip.create_model("ViT-B-32", pretrained="openai"'),
    ],
)
def test_without_network_says_how_to_pass_weights(no_network, tmp_path, capsys, extractor, what, source):
    pytest.importorskip("timm" if extractor.startswith("dinov2") else "open_clip")
    pytest.importorskip("PIL")
    from PIL import Image

    with pytest.raises(ValueError) as info:
        extract_features(images(1), extractor=extractor, progress=False)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{extractor}: cannot download the {what} weights (")
    assert "Temporary failure in name resolution" in message
    assert (
        f"pass weights=PATH (--weights PATH on the command line), a state dict saved with torch.save({source}"
        in message
    )
    for name in ("real", "fake"):
        (tmp_path / name).mkdir()
        for i in range(6):
            Image.fromarray(images(1, 8, 8, seed=i)[0].permute(1, 2, 0).numpy()).save(tmp_path / name / f"{i}.png")
    capsys.readouterr()
    assert main([str(tmp_path / "real"), str(tmp_path / "fake"), "--extractor", extractor, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"eprmetrics: error: {extractor}: cannot download the {what} weights")
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("extractor,arch", [("dinov2", "vit_large_patch14_dinov2"), ("clip-vitl14", "ViT-L-14")])
def test_vit_large(tmp_path, extractor, arch):
    if extractor == "dinov2":
        state = pytest.importorskip("timm").create_model(arch, num_classes=0).state_dict()
    else:
        state = pytest.importorskip("open_clip").create_model(arch, force_quick_gelu=True).state_dict()
    torch.save(state, tmp_path / "w.pt")
    feats = extract_features(images(2, 50, 70), extractor=extractor, weights=tmp_path / "w.pt", progress=False)
    assert feats.shape == (2, DIMS[extractor]) and np.isfinite(feats).all()
