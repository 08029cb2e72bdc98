"""Images in: folders, zips, file lists and uint8 tensors through extractors, cache and CLI (offline)."""

import json
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from eprmetrics import compute_epr, compute_pr  # noqa: E402
from eprmetrics.cli import main  # noqa: E402
from eprmetrics.features import extract_features  # noqa: E402


class CountingNet(torch.nn.Module):
    """A tiny deterministic extractor that counts its forward calls.

    The count lives outside the module's attributes: the feature cache identifies a custom module by its
    class, code, plain attributes and state, so a module whose attributes change is a new module to it.
    """

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 16))
        self.register_forward_pre_hook(lambda module, args: _CALLS.update({id(module): module.calls + 1}))

    @property
    def calls(self) -> int:
        return _CALLS.get(id(self), 0)

    def forward(self, x):
        return self.net(x)


_CALLS: dict = {}


def write_images(folder, rng, n=24, size=32, modes=("RGB", "L", "RGBA")):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert(modes[i % len(modes)])
        sub = folder / ("sub" if i % 2 else ".")
        sub.mkdir(exist_ok=True)
        img.save(sub / f"img{i:03d}.{'png' if i % 4 else 'bmp'}")
    return folder


def digits_folder(folder):
    """scikit-learn's bundled handwritten digits (real images, offline), upscaled to 32×32."""
    from sklearn.datasets import load_digits

    folder.mkdir(parents=True, exist_ok=True)
    images = load_digits().images[:60]
    for i, im in enumerate(images):
        Image.fromarray((im * 16).clip(0, 255).astype(np.uint8)).resize((32, 32), Image.BILINEAR).save(
            folder / f"{i:03d}.png"
        )
    return folder


@pytest.fixture
def folders(tmp_path, rng):
    real = write_images(tmp_path / "real", rng)
    fake = write_images(tmp_path / "fake", rng)
    return real, fake


def test_folder_zip_list_and_tensor_give_identical_features(folders, tmp_path):
    real, _ = folders
    files = sorted(p for p in real.rglob("*") if p.is_file())
    zpath = tmp_path / "real.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in files:
            zf.write(p, p.relative_to(real).as_posix())
    net = CountingNet()
    a = extract_features(real, extractor=net, progress=False)
    b = extract_features(zpath, extractor=net, progress=False)
    c = extract_features([str(p) for p in files], extractor=net, progress=False)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    stack = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in files])
    np.testing.assert_array_equal(a, extract_features(stack, extractor=net, progress=False))
    np.testing.assert_array_equal(a, extract_features(stack.permute(0, 2, 3, 1).numpy(), extractor=net, progress=False))


def test_identical_folders_give_precision_recall_one(folders):
    real, _ = folders
    res = compute_pr(real, real, extractor=CountingNet())
    assert res.precision == 1.0 and res.recall == 1.0
    res = compute_epr(real, real, method="hubness", extractor=CountingNet(), backend="exact", t=1)
    assert res.precision == 1.0 and res.recall == 1.0


def test_digits_through_compute_pr(tmp_path):
    pytest.importorskip("sklearn")
    real = digits_folder(tmp_path / "digits")
    res = compute_pr(real, str(real), extractor=CountingNet(), k=3)
    assert res.n_real == 60 and res.precision == 1.0


def test_cache_hit_skips_extraction(folders, tmp_path):
    real, _ = folders
    net = CountingNet()
    first = extract_features(real, extractor=net, cache_dir=tmp_path / "cache", progress=False)
    calls = net.calls
    assert calls > 0 and len(list((tmp_path / "cache").glob("*.npy"))) == 1
    again = extract_features(real, extractor=net, cache_dir=tmp_path / "cache", progress=False)
    assert net.calls == calls
    np.testing.assert_array_equal(first, again)
    assert not list((tmp_path / "cache").glob("*.tmp*"))  # atomic: no temporary files left


def test_save_features_keeps_real_and_fake(folders, tmp_path):
    real, fake = folders
    compute_pr(real, fake, extractor=CountingNet(), save_features=str(tmp_path / "feats"))
    assert np.load(tmp_path / "feats" / "real.npy").shape == (24, 16)
    assert np.load(tmp_path / "feats" / "fake.npy").shape == (24, 16)


def test_corrupt_image_raises_naming_it_or_is_skipped(folders):
    real, _ = folders
    bad = real / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"real: cannot read image .*broken.png"):
        compute_pr(real, real, extractor=CountingNet())
    with pytest.warns(UserWarning, match=r"real: 1 of 25 images could not be read and were skipped .*broken.png"):
        feats = extract_features(real, name="real", extractor=CountingNet(), on_error="skip", progress=False)
    assert feats.shape[0] == 24


def test_empty_folder_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"real: no images .* in folder"):
        compute_pr(tmp_path / "empty", tmp_path / "empty", extractor=CountingNet())
    with pytest.raises(FileNotFoundError, match=r"fake: no such file or directory"):
        compute_pr(np.zeros((10, 3), np.float32), str(tmp_path / "nope"), extractor=CountingNet())


def test_missing_torchvision_names_the_extra(folders, monkeypatch):
    import sys

    real, _ = folders
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(
        ModuleNotFoundError,
        match=r"extractor 'vgg16' needs the 'torchvision' package: "
        r"pip install 'eprmetrics\[vision\]'",
    ):
        extract_features(real, extractor="vgg16", progress=False)


def test_bad_extractor_options(folders):
    real, _ = folders
    with pytest.raises(ValueError, match="extractor: expected one of"):
        extract_features(real, extractor="resnet", progress=False)
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        extract_features(real, extractor=CountingNet(), batch_size=0, progress=False)
    with pytest.raises(FileNotFoundError, match="weights: no such file"):
        extract_features(real, extractor="vgg16", weights="/nonexistent/vgg.pt", progress=False)


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "vgg16_random.pt"
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), path)
    return path


def test_cli_on_image_folders_with_offline_vgg16(folders, vgg_weights, tmp_path, capsys):
    real, fake = folders
    out = tmp_path / "out.json"
    code = main(
        [
            str(real),
            str(fake),
            "--weights",
            str(vgg_weights),
            "--json",
            str(out),
            "--exact",
            "--batch-size",
            "8",
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["dim"] == 4096 and data["n_real"] == 24 and 0 <= data["precision"] <= 1
    feats = extract_features(real, extractor="vgg16", weights=vgg_weights, progress=False)
    assert feats.shape == (24, 4096) and (feats >= 0).all()  # fc2 after ReLU


def test_inception_with_offline_weights(folders, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path / "inception.pt"
    torch.save(torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    real, _ = folders
    feats = extract_features(
        sorted(p for p in real.rglob("*.png"))[:5], extractor="inception", weights=path, progress=False
    )
    assert feats.shape == (5, 2048)


@pytest.mark.parametrize("workers", [0, 1])
def test_cli_corrupt_image_one_line(folders, vgg_weights, capsys, workers):
    real, fake = folders
    (fake / "broken.png").write_bytes(b"garbage")
    code = main([str(real), str(fake), "--weights", str(vgg_weights), "--workers", str(workers), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "fake: cannot read image" in err and "broken.png" in err


def test_cli_path_errors_one_line(folders, tmp_path, capsys, monkeypatch):
    import torch.hub

    def no_download(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    real, _ = folders
    (tmp_path / "empty").mkdir()
    for argv, message in (
        ([str(tmp_path / "empty"), str(real)], "real: no images"),
        ([str(real), str(tmp_path / "missing")], "fake: no such file or directory"),
        ([str(real), str(real), "--weights", str(tmp_path / "w.pt")], "weights: no such file"),
    ):
        code = main(argv + ["--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert message in err, err


def test_linked_folders_are_followed_and_a_loop_is_read_once(tmp_path, rng):
    """A folder linked into the input holds images the input means (left out, the count was silently wrong);
    a link back to the input or above it (``..``, ``/``) is left out with a warning naming it (not a walk of
    the whole disk, nor images from outside the input)."""
    from eprmetrics.features import as_image_source

    root, elsewhere = tmp_path / "real", tmp_path / "elsewhere"
    write_images(root / "a", rng, n=3, size=8)
    write_images(elsewhere, rng, n=2, size=8)
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)
    with pytest.warns(UserWarning, match=r"real: 1 linked folders were left out: .* the first: .*loop"):
        src = as_image_source(str(root), "real")
    assert len(src) == 5
    assert sum(f.startswith(str(root / "linked")) for f in src.items) == 2
    (root / "a" / "up").symlink_to(tmp_path, target_is_directory=True)  # holds the input: all of tmp_path
    (root / "a" / "disk").symlink_to("/", target_is_directory=True)  # the whole disk
    with pytest.warns(UserWarning, match=r"real: 3 linked folders were left out"):
        assert len(as_image_source(str(root), "real")) == 5
