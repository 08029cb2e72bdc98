"""No network and no ``weights=``: the vgg16 / inception extractors fail with one line saying how to pass a file.

The network is blocked, never used: torch.hub's download (and urllib's ``urlopen`` behind it) raise
as they do on a machine without network, and ``TORCH_HOME`` points at an empty folder so no cached
weights are found.
"""

import http.client
import socket
import urllib.error
import urllib.request

import pytest
import torch

pytest.importorskip("torchvision")

from eprmetrics.cli import main  # noqa: E402
from eprmetrics.features import extract_features, get_extractor  # noqa: E402
from eprmetrics.features.base import pretrained  # noqa: E402

NO_NETWORK = urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Every download raises ``raised[0]`` (default: what urllib raises without network)."""
    raised = [NO_NETWORK]

    def blocked(*args, **kwargs):
        raise raised[0]

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", blocked)
    monkeypatch.setattr(urllib.request, "urlopen", blocked)
    return raised


@pytest.mark.parametrize("extractor,builder", [("vgg16", "vgg16"), ("inception", "inception_v3")])
def test_extract_features_says_how_to_pass_weights(offline, extractor, builder):
    imgs = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError) as info:
        extract_features(imgs, extractor=extractor, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{extractor}: cannot download the IMAGENET1K_V1 weights (URLError: ")
    assert "Temporary failure in name resolution" in message
    assert "on a machine without network pass weights=PATH" in message
    assert f'torch.save(torchvision.models.{builder}(weights="IMAGENET1K_V1").state_dict(), PATH)' in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)


@pytest.mark.parametrize(
    "error,shown",
    [
        (TimeoutError("timed out"), "TimeoutError: timed out"),
        (ConnectionResetError(104, "Connection reset by peer"), "Connection reset by peer"),
        (urllib.error.HTTPError("https://x", 503, "Service Unavailable", None, None), "HTTPError: Service Unavailable"),
        (http.client.IncompleteRead(b"partial"), "IncompleteRead"),
        (RuntimeError('invalid hash value (expected "397923af", got "00")'), "invalid hash value"),
    ],
)
def test_other_download_failures_are_one_line_too(offline, error, shown):
    offline[0] = error
    with pytest.raises(ValueError, match="vgg16: cannot download the IMAGENET1K_V1 weights") as info:
        get_extractor("vgg16")
    assert shown in str(info.value) and "\n" not in str(info.value)


def test_other_errors_pass_through():
    def broken():
        raise RuntimeError("size mismatch")

    with pytest.raises(RuntimeError, match="size mismatch"):
        pretrained("vgg16", broken, "vgg16")


@pytest.mark.parametrize("extractor", ["vgg16", "inception"])
def test_cli_exits_2_with_one_line(offline, tmp_path, capsys, extractor):
    pytest.importorskip("PIL")
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("real", "fake"):
        (tmp_path / name).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    code = main([str(tmp_path / "real"), str(tmp_path / "fake"), "--extractor", extractor, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"eprmetrics: error: {extractor}: cannot download the IMAGENET1K_V1 weights")
    assert err.count("\n") == 1 and "Traceback" not in err and "--weights PATH" in err


def test_nothing_reaches_stdout_before_the_offline_error(offline, capfd):
    """torch.hub prints "Downloading: ..." on stdout before it downloads: stdout may be a report (--json -)."""
    imgs = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match="vgg16: cannot download"):
        extract_features(imgs, extractor="vgg16", progress=False)
    captured = capfd.readouterr()
    assert captured.out == "", captured.out


def test_a_download_note_goes_to_stderr(capfd):
    def build():
        print('Downloading: "https://example/w.pth" to /cache/w.pth')
        return torch.nn.Identity()

    assert isinstance(pretrained("vgg16", build, "vgg16"), torch.nn.Identity)
    captured = capfd.readouterr()
    assert captured.out == "" and "Downloading:" in captured.err
