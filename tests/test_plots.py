"""Figures (eprmetrics.plots and ``--plot DIR``): each writes a PNG, the grids pick the right images, bad
arguments are named, and a missing matplotlib is one message, not a traceback."""

import dataclasses
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from eprmetrics import compute_pr, knn_graph  # noqa: E402
from eprmetrics.cli import main  # noqa: E402
from eprmetrics.neighbours import k_occurrence  # noqa: E402
from eprmetrics.plots import (  # noqa: E402
    MISSING,
    error_vs_cost,
    frontier_labels,
    hub_histograms,
    hubness_histogram,
    nearest_pairs,
    nearest_real_pairs,
    pr_curve_plot,
    realism_extremes,
    realism_grid,
)
from eprmetrics.synthetic import make_pair  # noqa: E402


def png_size(path):
    """(width, height) of a PNG file, after checking it is one and not trivially small."""
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
    with Image.open(path) as img:
        return img.size


@pytest.fixture
def features(rng):
    real = rng.normal(size=(150, 8)).astype(np.float32)
    fake = (1.3 * rng.normal(size=(120, 8))).astype(np.float32)
    return real, fake


@pytest.fixture
def images(rng):
    """40 real and 30 fake 12×12 RGB images; fakes 0, 7 and 19 are copies of reals 5, 11 and 30."""
    real = rng.integers(0, 256, size=(40, 12, 12, 3), dtype=np.uint8)
    fake = rng.integers(0, 256, size=(30, 12, 12, 3), dtype=np.uint8)
    fake[[0, 7, 19]] = real[[5, 11, 30]]
    return real, fake


def pixel_features(x):
    return x.reshape(len(x), -1).astype(np.float32) / 255.0


def test_hubness_histogram_writes_a_png(tmp_path, features):
    path = tmp_path / "sub" / "hubness.png"
    assert hubness_histogram(*features, k=3, path=path, t=2) == str(path)
    width, height = png_size(path)
    assert width >= 800 and height >= 450


def test_hub_histograms_are_the_k_occurrence_of_the_exact_graph(features):
    stats = hub_histograms(*features, k=3, t=2, backend="exact")
    for x, name in zip(features, ("real", "fake")):
        occ = k_occurrence(knn_graph(x, 3, backend="exact")[1], len(x))
        assert stats[name].histogram == np.bincount(occ).tolist()
        assert stats[name].n_hubs == int((occ >= 2).sum())
    assert hub_histograms(*features, k=3, t=2, backend="ivf-gemm")["real"].n == 150


def test_realism_extremes_pick_highest_and_lowest():
    scores = np.array([0.5, np.inf, 0.1, 2.0, 0.1, 1.0, 0.0, 3.0])
    most, least = realism_extremes(scores, 3)
    assert most.tolist() == [1, 7, 3] and least.tolist() == [6, 2, 4]  # ties in index order
    most, least = realism_extremes(scores, 10)  # capped at half: no image in both panels
    assert len(most) == len(least) == 4 and not set(most) & set(least)


def test_realism_grid_from_an_array_and_a_folder(tmp_path, rng, images):
    fake = images[1]
    realism = rng.uniform(0, 3, size=len(fake))
    path = realism_grid(fake, realism, tmp_path / "grid.png", n=4)
    width, height = png_size(tmp_path / "grid.png")
    assert path == str(tmp_path / "grid.png") and width > height > 200
    folder = tmp_path / "fakes"
    folder.mkdir()
    for i, img in enumerate(fake):
        Image.fromarray(img).save(folder / f"{i:02d}.png")
    assert realism_grid(folder, realism, tmp_path / "grid2.png", n=8, title="from a folder")
    png_size(tmp_path / "grid2.png")


def test_nearest_real_pairs_find_the_copies(images):
    real, fake = (pixel_features(x) for x in images)
    pairs = nearest_real_pairs(real, fake, 3, k=2)
    assert sorted(pairs.fake.tolist()) == [0, 7, 19]
    assert dict(zip(pairs.fake.tolist(), pairs.real.tolist())) == {0: 5, 7: 11, 19: 30}
    assert (pairs.distance == 0).all() and (pairs.ratio == 0).all()
    # every fake: nearest real and ratio against a float64 brute force
    every = nearest_real_pairs(real, fake, len(fake), k=2)
    d = np.linalg.norm(fake[:, None].astype(np.float64) - real[None], axis=2)
    rr = np.sort(np.linalg.norm(real[:, None].astype(np.float64) - real[None], axis=2), axis=1)[:, 2]
    nn = d.argmin(1)
    ratio = d[np.arange(len(fake)), nn] / rr[nn]
    np.testing.assert_array_equal(every.real, nn[every.fake])
    np.testing.assert_allclose(every.ratio, ratio[every.fake], rtol=1e-5)
    assert (np.diff(every.ratio) >= 0).all()


def test_nearest_pairs_writes_a_png(tmp_path, images):
    real_f, fake_f = (pixel_features(x) for x in images)
    path = nearest_pairs(*images, real_f, fake_f, tmp_path / "pairs.png", n=10, k=2)
    width, height = png_size(tmp_path / "pairs.png")
    assert path == str(tmp_path / "pairs.png") and width > 1000 and height > 500  # 10 pairs: two rows of pairs


@pytest.fixture(scope="module")
def psi_curve():
    """Exact P&R of fakes of shrinking spread (truncation ψ), ψ → Result."""
    curve = {}
    for psi in (0.4, 0.7, 1.0):
        real, fake = make_pair(300, 300, dim=16, defect="truncation", strength=1.0 - psi, seed=3)
        curve[psi] = compute_pr(real, fake, k=3, progress=False)
    return curve


def test_pr_curve_plot_numeric_categorical_and_intervals(tmp_path, psi_curve):
    assert pr_curve_plot(psi_curve, tmp_path / "psi.png", xlabel="truncation ψ") == str(tmp_path / "psi.png")
    assert png_size(tmp_path / "psi.png")[0] >= 1000
    with_ci = {
        f"ckpt-{i}": dataclasses.replace(
            r, precision_ci=(r.precision - 0.05, r.precision), recall_ci=(r.recall, r.recall + 0.02), confidence=0.95
        )
        for i, r in enumerate(psi_curve.values())
    }
    assert pr_curve_plot(with_ci, tmp_path / "ckpt.png")
    png_size(tmp_path / "ckpt.png")


def test_frontier_labels(psi_curve):
    r = next(iter(psi_curve.values()))
    points = {"a": (0.9, 0.1), "b": (0.8, 0.5), "c": (0.7, 0.4), "d": (0.5, 0.9), "e": (0.8, 0.5)}
    curve = {k: dataclasses.replace(r, precision=p, recall=rc) for k, (p, rc) in points.items()}
    assert frontier_labels(curve) == ["a", "b", "d", "e"]  # c is beaten by b; b and e tie


def test_error_vs_cost_with_exact_zero_and_mappings(tmp_path):
    rows = [("exact", 2.5, 0.0), ("sampled", 0.7, 0.02, "n=250"), ("sampled", 1.1, 0.008, "n=1000")]
    rows += [{"method": "hubness", "seconds": 1.6, "error": 0.03}, ("sampled", 2.4, 0.0, "n=4000")]
    assert error_vs_cost(rows, tmp_path / "cost.png", ylabel="max |error|") == str(tmp_path / "cost.png")
    png_size(tmp_path / "cost.png")
    assert error_vs_cost(iter([("a", 1.0, 0.1)]), tmp_path / "one.png")


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda d: realism_grid(d["fake"], np.ones(5), d["tmp"] / "x.png"), ValueError, "realism: expected one score"),
        (lambda d: realism_extremes([1.0, np.nan, 2.0]), ValueError, "realism: expected scores that are not NaN"),
        (lambda d: realism_extremes([1.0, 2.0], n=0), ValueError, "n: expected a positive int"),
        (lambda d: realism_grid(d["fake"], np.ones(30), d["tmp"]), ValueError, "path: expected a file path"),
        (lambda d: realism_grid(d["fake"], np.ones(30), d["tmp"] / "noext"), ValueError, "path: expected a file name"),
        (lambda d: realism_grid(d["fake"][..., 0:2], np.ones(30), d["tmp"] / "x.png"), ValueError, "images: expected"),
        (
            lambda d: nearest_pairs(d["real"], d["fake"], d["rf"][:9], d["ff"], d["tmp"] / "x.png"),
            ValueError,
            "real_features: expected one row per image of real_images (40), got 9 rows",
        ),
        (
            lambda d: nearest_pairs(d["real"], d["fake"], d["rf"], d["ff"][:, :5], d["tmp"] / "x.png"),
            ValueError,
            "same feature dimension",
        ),
        (lambda d: nearest_real_pairs(d["rf"], d["ff"], k=0), ValueError, "k: expected a positive int"),
        (lambda d: hubness_histogram(d["rf"], d["ff"], k=3, path=d["tmp"] / "h.png", t=-1), ValueError, "t: expected"),
        (lambda d: hubness_histogram(d["rf"], d["ff"], k=0, path=d["tmp"] / "h.png"), ValueError, "k: expected"),
        (lambda d: pr_curve_plot({}, d["tmp"] / "c.png"), ValueError, "curve: expected at least one"),
        (lambda d: pr_curve_plot([1, 2], d["tmp"] / "c.png"), TypeError, "curve: expected a mapping"),
        (lambda d: pr_curve_plot({0.5: 0.9}, d["tmp"] / "c.png"), TypeError, "curve: expected Result values"),
        (lambda d: error_vs_cost([], d["tmp"] / "e.png"), ValueError, "rows: expected at least one"),
        (lambda d: error_vs_cost([("a", -1.0, 0.1)], d["tmp"] / "e.png"), ValueError, "rows[0]: expected a positive"),
        (lambda d: error_vs_cost([("a", 1.0, 0.1), ("b", 1.0)], d["tmp"] / "e.png"), ValueError, "rows[1]: expected"),
        (lambda d: error_vs_cost([("a", 1.0, float("nan"))], d["tmp"] / "e.png"), ValueError, "rows[0]: expected"),
    ],
)
def test_bad_arguments_are_named(tmp_path, images, call, error, message):
    real, fake = images
    d = {"real": real, "fake": fake, "rf": pixel_features(real), "ff": pixel_features(fake), "tmp": tmp_path}
    with pytest.raises(error) as info:
        call(d)
    assert message in str(info.value)


def test_missing_matplotlib_is_one_message(tmp_path, features, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert hubness_histogram(*features, path=tmp_path / "h.png") is False
    assert error_vs_cost([("a", 1.0, 0.1)], tmp_path / "e.png") is False
    assert capsys.readouterr().out.splitlines() == [MISSING, MISSING]
    assert not list(tmp_path.iterdir())
    np.save(tmp_path / "real.npy", features[0])
    np.save(tmp_path / "fake.npy", features[1])
    argv = [str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--exact", "--quiet"]
    assert main(argv + ["--plot", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    assert "--plot: matplotlib is missing" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "plot:" not in captured.out and not list((tmp_path / "p").iterdir())


def test_cli_plot_on_feature_files(tmp_path, features, capsys):
    for x, name in zip(features, ("real", "fake")):
        np.save(tmp_path / f"{name}.npy", x)
    out = tmp_path / "figures"
    argv = [str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--method", "hubness", "--t", "2", "--quiet"]
    assert main(argv + ["--plot", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"plot: {out / 'hubness.png'}" in text and "need image inputs and --exact" in text
    assert sorted(p.name for p in out.iterdir()) == ["hubness.png"]
    png_size(out / "hubness.png")


def test_cli_plot_on_image_folders(tmp_path, images, monkeypatch, capsys):
    import torch

    from eprmetrics import register_extractor
    from eprmetrics.features import base as extractor_base
    from eprmetrics.features.base import get_extractor

    monkeypatch.setattr(extractor_base, "_REGISTRY", dict(extractor_base._REGISTRY))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 16))
    register_extractor("plots-test-net", dim=16)(lambda weights: get_extractor(net))
    for x, name in zip(images, ("real", "fake")):
        (tmp_path / name).mkdir()
        for i, img in enumerate(x):
            Image.fromarray(img).save(tmp_path / name / f"{i:03d}.png")
    out = tmp_path / "figures"
    argv = [str(tmp_path / "real"), str(tmp_path / "fake"), "--extractor", "plots-test-net", "--exact", "--realism"]
    assert main(argv + ["--k", "2", "--quiet", "--plot", str(out)]) == 0
    text = capsys.readouterr().out
    names = ("hubness.png", "nearest_pairs.png", "realism_grid.png")
    assert all(f"plot: {out / name}" in text for name in names), text
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "real.npy", "fake.npy"])  # features kept
    for name in names:
        png_size(out / name)


@pytest.mark.parametrize(
    "kind,message", [("file", "--plot: expected a folder"), ("under-file", "--plot: cannot write to")]
)
def test_cli_bad_plot_dir_is_one_line(tmp_path, features, capsys, kind, message):
    for x, name in zip(features, ("real", "fake")):
        np.save(tmp_path / f"{name}.npy", x)
    (tmp_path / "taken").write_text("a file")
    target = tmp_path / "taken" if kind == "file" else tmp_path / "taken" / "figures"
    assert main([str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--plot", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err, err
