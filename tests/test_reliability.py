"""Regressions from a new user's trial (issue 14): no hang, no silently wrong number, one clear line."""

from __future__ import annotations

import contextlib
import signal

import numpy as np
import pytest

from eprmetrics import compute_epr, compute_pr
from tests.reference import brute_pr


@contextlib.contextmanager
def no_hang(seconds: int = 300):
    """Fail (instead of hanging the suite) when the body does not finish; a guard, not a speed check."""

    def _raise(signum, frame):
        raise TimeoutError(f"did not finish within {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("backend", ["ivf-gemm", "faiss-hnsw"])
@pytest.mark.parametrize("strict", [True, False])
def test_duplicate_reference_rows_equal_to_a_query_do_not_hang(backend, strict):
    if backend.startswith("faiss"):
        pytest.importorskip("faiss")
    rng = np.random.default_rng(0)
    real = rng.normal(size=(500, 8)).astype(np.float32)
    fake = rng.normal(size=(500, 8)).astype(np.float32)
    real[:9] = real[0]  # nine identical reference rows: zero radii
    fake[0] = real[0]  # a query on them
    with no_hang():
        res = compute_epr(real, fake, method="sampled", backend=backend, strict=strict, sample_size=500)
    exact = brute_pr(real, fake, 3, strict)
    assert (res.precision, res.recall) == (exact["precision"], exact["recall"])  # everything sampled: exact


def test_hub_audit_with_duplicates_does_not_hang():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(600, 8)).astype(np.float32)
    fake = rng.normal(size=(600, 8)).astype(np.float32)
    real[:12] = real[0]
    fake[:3] = real[0]
    with no_hang():
        res = compute_epr(real, fake, method="hubness", backend="ivf-gemm", strict=True, t=1, audit=600)
    exact = brute_pr(real, fake, 3, True)
    assert res.audit is not None
    assert (res.audit.precision.estimate, res.audit.recall.estimate) == (exact["precision"], exact["recall"])


def _scaled(x: np.ndarray, e: int) -> np.ndarray:
    return np.ldexp(x, e).astype(x.dtype)


def _values(res) -> tuple:
    return (res.precision, res.recall, res.density, res.coverage, res.precision_ci, res.recall_ci)


@pytest.mark.parametrize("dtype,exponents", [(np.float32, (-100, 70, 120)), (np.float64, (-900, -100, 70, 120, 900))])
def test_results_are_identical_under_power_of_two_scaling(dtype, exponents):
    """P&R is scale-invariant and x·2^e is exact: the numbers must not move, at any finite scale."""
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 16)).astype(dtype)
    fake = (rng.normal(size=(280, 16)) * 1.2 + 0.3).astype(dtype)
    ref = brute_pr(real, fake, 3)
    base = compute_pr(real, fake)
    assert (base.precision, base.recall) == (ref["precision"], ref["recall"])
    base_s = compute_epr(real, fake, method="sampled", sample_size=1000)
    for e in exponents:
        r, f = _scaled(real, e), _scaled(fake, e)
        assert np.isfinite(r).all() and np.isfinite(f).all() and (np.ldexp(r, -e) == real).all()
        assert _values(compute_pr(r, f)) == _values(base), e
        assert _values(compute_epr(r, f, method="sampled", sample_size=1000)) == _values(base_s), e


def test_one_huge_row_does_not_change_other_decisions():
    rng = np.random.default_rng(6)
    real = rng.normal(size=(300, 8)).astype(np.float32)
    fake = rng.normal(size=(300, 8)).astype(np.float32)
    real[0] = 1e20  # its fp32 square overflows without rescaling
    ref = brute_pr(real.astype(np.float64), fake.astype(np.float64), 3)
    res = compute_pr(real, fake)
    assert (res.precision, res.recall, res.density, res.coverage) == pytest.approx(
        (ref["precision"], ref["recall"], ref["density"], ref["coverage"]), abs=0
    )


def test_bfloat16_tensors_reach_the_ann_backends():
    import torch

    rng = np.random.default_rng(7)
    real = torch.from_numpy(rng.normal(size=(400, 16)).astype(np.float32)).bfloat16()
    fake = torch.from_numpy(rng.normal(size=(400, 16)).astype(np.float32)).bfloat16()
    exact = compute_pr(real, fake)
    res = compute_epr(real, fake, method="sampled", backend="ivf-gemm", sample_size=400)
    assert (res.precision, res.recall) == (exact.precision, exact.recall)


def test_integer_npy_is_read_block_by_block_and_exact(tmp_path):
    rng = np.random.default_rng(8)
    real = rng.integers(-(2**40), 2**40, size=(200, 6))  # int64 beyond float32's exact range
    fake = rng.integers(-(2**40), 2**40, size=(180, 6))
    np.save(tmp_path / "r.npy", real)
    np.save(tmp_path / "f.npy", fake)
    ref = brute_pr(real.astype(np.float64), fake.astype(np.float64), 3)
    res = compute_pr(tmp_path / "r.npy", tmp_path / "f.npy")
    assert (res.precision, res.recall) == (ref["precision"], ref["recall"])
    int8 = np.full((20, 3), -128, dtype=np.int8)
    int8[::2] = 5
    assert compute_pr(int8, int8).precision == 1.0


@pytest.mark.parametrize(
    "content,match",
    [
        (b"\x93NUMPY garbage", r"real: cannot read .*bad.npy.* as a feature file .*numpy.save"),
        ("pickle", r"real: cannot read .*bad.npy.* \(it holds pickled objects, not a plain array\)"),
        ("truncated", r"real: cannot read .*bad.npy.* as a feature file \(.*\); .*complete"),
    ],
)
def test_unreadable_npy_names_the_file(tmp_path, content, match):
    path = tmp_path / "bad.npy"
    if content == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif content == "truncated":
        np.save(path, np.ones((100, 8), np.float32))
        path.write_bytes(path.read_bytes()[:500])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        compute_pr(path, np.ones((10, 8), np.float32))


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    from PIL import Image

    from eprmetrics.features.images import as_image_source

    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520, mean ~32760
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    img = as_image_source([str(tmp_path / "deep.png")], "real")[0]
    assert img.shape == (3, 64, 64) and img.dtype.is_floating_point is False
    assert abs(float(img.float().mean()) - ramp.mean() / 257) < 0.5  # not ~254 (clipped)


@pytest.mark.parametrize("shape", [(4, 16, 16), (4, 1, 16, 16), (4, 16, 16, 1)])
def test_grayscale_uint8_tensors_are_images(shape):
    import torch

    from eprmetrics.features import extract_features

    imgs = torch.randint(0, 256, shape, dtype=torch.uint8)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 5))
    assert extract_features(imgs, extractor=net, progress=False).shape == (4, 5)


def test_float_image_tensor_gets_a_hint():
    import torch

    with pytest.raises(ValueError, match=r"real: expected a 2-D array .* images must be uint8"):
        compute_pr(torch.rand(8, 3, 16, 16), np.ones((8, 5), np.float32))


class _Slice(__import__("torch").nn.Module):
    """A parameter-free extractor whose output width is a plain attribute."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, x):
        return x.flatten(1)[:, : self.width]


def test_parameter_free_custom_modules_do_not_share_a_cache_entry(tmp_path):
    import torch

    from eprmetrics.features import extract_features

    imgs = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    a = extract_features(imgs, extractor=_Slice(3), cache_dir=tmp_path, progress=False)
    b = extract_features(imgs, extractor=_Slice(12), cache_dir=tmp_path, progress=False)
    assert a.shape == (6, 3) and b.shape == (6, 12)
    again = extract_features(imgs, extractor=_Slice(12), cache_dir=tmp_path, progress=False)
    assert np.array_equal(again, b) and len(list(tmp_path.glob("*.npy"))) == 2


def test_cache_hit_builds_no_network(tmp_path, monkeypatch):
    import torch

    from eprmetrics.features import base, extract_features

    imgs = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    first = extract_features(imgs, extractor=net, cache_dir=tmp_path, progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the network was built on a cache hit")

    monkeypatch.setattr("eprmetrics.features.get_extractor", refuse)
    assert np.array_equal(extract_features(imgs, extractor=net, cache_dir=tmp_path, progress=False), first)
    assert base.get_extractor is not refuse


def test_cached_and_saved_files_follow_the_umask(tmp_path):
    import os
    import stat

    from eprmetrics.features.cache import save_atomic

    old = os.umask(0o022)
    try:
        path = save_atomic(str(tmp_path / "f.npy"), np.ones((2, 2), np.float32))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_weights_for_another_network_get_one_line(tmp_path):
    import torch

    pytest.importorskip("torchvision")
    from eprmetrics.features import get_extractor

    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"weights: .*other.pt' does not fit vgg16 \(missing \d+ keys such as .*"):
        get_extractor("vgg16", tmp_path / "other.pt")


@pytest.mark.parametrize("option", ["cache_dir", "save_features"])
def test_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, option):
    import torch

    afile = tmp_path / "file.txt"
    afile.write_text("x")
    imgs = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match=rf"^{option}: expected a folder, got .*file.txt'; it is a file"):
        compute_pr(imgs, imgs, extractor=torch.nn.Flatten(), **{option: str(afile)})


def test_to_json_takes_json_options():
    rng = np.random.default_rng(9)
    res = compute_pr(rng.normal(size=(30, 4)), rng.normal(size=(30, 4)))
    assert "\n" not in res.to_json(indent=None)


def test_radii_ann_with_the_exact_backend_warns():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    with pytest.warns(UserWarning, match=r"radii: 'ann' has no effect here") as caught:
        res = compute_epr(x, x[:150], method="hubness", radii="ann", t=1, audit=False)
    assert res.radii == "exact" and caught[0].filename == __file__


def test_json_has_no_infinity_for_realism_on_a_real_point():
    import json

    rng = np.random.default_rng(11)
    cells = rng.choice(10**4, size=50, replace=False)  # distinct integer points: fp32 distances are exact
    real = np.stack([(cells // 10**i) % 10 for i in range(4)], axis=1).astype(np.float32)
    from tests.reference import radii2

    tight = int(np.argmin(radii2(real, 3)))  # a real ball below the median radius: realism counts it
    fake = np.concatenate([real[tight : tight + 1], rng.normal(size=(20, 4)).astype(np.float32)])  # on a real point
    res = compute_pr(real, fake, realism=True)
    assert np.isinf(res.realism).sum() >= 1
    data = json.loads(res.to_json())  # strict JSON: Infinity would not parse as a number here
    assert data["realism"][0] is None and 0 in data["realism_infinite"]
    assert "Infinity" not in res.to_json()


def test_cli_version_and_help(capsys):
    from eprmetrics.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("eprmetrics ")
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "eprmetrics run [-h]" in out and "eprmetrics demo [-h]" in out and "eprmetrics bench [-h]" in out


def test_cli_warnings_are_one_line_in_cli_terms(tmp_path, capsys):
    from eprmetrics.cli import main

    rng = np.random.default_rng(12)
    np.save(tmp_path / "r.npy", rng.normal(size=(200, 6)).astype(np.float32))
    np.save(tmp_path / "f.npy", rng.normal(size=(180, 6)).astype(np.float32))
    assert (
        main(
            [
                str(tmp_path / "r.npy"),
                str(tmp_path / "f.npy"),
                "--method",
                "hubness",
                "--radii",
                "ann",
                "--t",
                "1",
                "--no-audit",
                "--quiet",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [line for line in err if line.startswith("eprmetrics: warning: --radii: 'ann' has no effect")]
    assert len(err) == 1


def test_progress_defaults_to_automatic():
    import inspect

    from eprmetrics.features import extract_features

    for fn in (compute_pr, compute_epr, extract_features):
        assert inspect.signature(fn).parameters["progress"].default is None


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("k", [3, 5])
def test_density_and_coverage_equal_prdc_to_the_bit(seed, k):
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(100 + seed)
    real = rng.normal(size=(180, 12)).astype(np.float32)
    fake = (rng.normal(size=(170, 12)) * 1.1 + 0.2).astype(np.float32)
    ref = prdc.compute_prdc(real, fake, nearest_k=k)
    res = compute_pr(real, fake, k=k, strict=True)
    assert (res.precision, res.recall, res.density, res.coverage) == tuple(
        ref[key] for key in ("precision", "recall", "density", "coverage")
    )


def test_numpy_integer_k_is_accepted():
    rng = np.random.default_rng(13)
    x = rng.normal(size=(40, 4))
    assert compute_pr(x, x, k=np.int64(3)).k == 3
    assert compute_epr(x, x, k=np.int32(3), method="sampled", sample_size=40).k == 3


@pytest.mark.parametrize(
    "kwargs,option",
    [
        ({"method": "sampled", "backend": "ivf-gemm", "sample_size": 1}, "sample_size"),
        ({"method": "sampled", "backend": "ivf-gemm", "sample_size": 2}, "sample_size"),
        ({"method": "hubness", "audit": 1, "t": 1}, "audit"),
    ],
)
def test_too_small_a_sample_says_how_many(kwargs, option):
    rng = np.random.default_rng(14)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    with pytest.raises(
        ValueError,
        match=rf"^{option}: expected at least \d+ queries per set here .* got \d; "
        rf"pass {option}=\d+ or more",
    ):
        compute_epr(x, x[:200] + 0.1, **kwargs)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"nprobe": 0}, r"nprobe: expected a positive int, got 0"),
        ({"nprobe": 10**6}, r"nprobe: expected an int between 1 and nlist"),
        ({"nlist": 10**6}, r"nlist: expected at most n = 400 lists"),
        ({"query_nprobe": 2.5}, r"query_nprobe: expected a positive int"),
    ],
)
def test_ivf_gemm_options_are_checked(options, match):
    from eprmetrics import knn_graph

    x = np.random.default_rng(15).normal(size=(400, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"^backend 'ivf-gemm': " + match):
        knn_graph(x, 3, backend="ivf-gemm", options=options)


def test_feature_width_mismatch_is_caught_before_extraction(monkeypatch):
    import torch

    import eprmetrics.features as features

    def refuse(*args, **kwargs):
        raise AssertionError("extraction started")

    monkeypatch.setattr(features, "extract_features", refuse)
    monkeypatch.setattr("eprmetrics.inputs.extract_features", refuse)
    imgs = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"^real: expected 4096-d features to compare with the fake images' vgg16"):
        compute_pr(np.ones((6, 512), np.float32), imgs)


def test_faiss_training_prints_nothing(capfd):
    pytest.importorskip("faiss")
    from eprmetrics import knn_graph

    x = np.random.default_rng(16).normal(size=(500, 8)).astype(np.float32)
    knn_graph(x, 3, backend="faiss-ivf", options={"nlist": 22})
    assert "WARNING clustering" not in capfd.readouterr().err
