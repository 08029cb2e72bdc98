"""The reference manifold and P&R curves: reuse equals a fresh computation and a float64 brute force."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from eprmetrics import Manifold, compute_epr, compute_pr, pr_curve
from eprmetrics.engine import FeatureSet
from eprmetrics.estimators.planner import Rates, exact_cost, sampled_cost
from tests.reference import brute_pr, brute_realism, lattice, radii2


def _data(rng, kind):
    if kind == "random":
        return rng.normal(size=(260, 6)).astype(np.float32), rng.normal(size=(200, 6)).astype(np.float32) * 0.9
    if kind == "lattice":  # duplicates and exact distance ties everywhere
        return lattice(rng, 220, 3, high=3), lattice(rng, 170, 3, high=3)
    real = rng.normal(size=(240, 5)).astype(np.float32)
    real[:4] *= 1e4  # outliers with huge radii: balls that hold almost everything
    fake = rng.normal(size=(180, 5)).astype(np.float32)
    fake[:3] *= 1e4
    return real, fake


def _same(a, b):
    for key in ("precision", "recall", "density", "coverage"):
        assert getattr(a, key) == getattr(b, key), key


@pytest.mark.parametrize("kind", ["random", "lattice", "outliers"])
@pytest.mark.parametrize("strict", [False, True])
def test_reuse_equals_fresh_and_bruteforce(rng, kind, strict):
    real, fake = _data(rng, kind)
    manifold = Manifold.fit(real, k=(3, 5))
    for k in (3, 5, 2):
        reused = compute_pr(manifold, fake, k=k, strict=strict, realism=True)
        fresh = compute_pr(real, fake, k=k, strict=strict, realism=True)
        _same(reused, fresh)
        ref = brute_pr(real, fake, k=k, strict=strict)
        assert reused.precision == ref["precision"] and reused.recall == ref["recall"]
        assert reused.density == pytest.approx(ref["density"], rel=1e-12)
        assert reused.coverage == ref["coverage"]
        np.testing.assert_array_equal(reused.realism, fresh.realism)
        if kind == "random":
            np.testing.assert_allclose(reused.realism, brute_realism(real, fake, k), rtol=1e-5)
    multi = compute_pr(manifold, fake, k=(3, 5), strict=strict)
    assert multi.per_k[5].precision == compute_pr(real, fake, k=5, strict=strict).precision


def test_radii_and_hubs_are_the_exact_ones(rng):
    real, _ = _data(rng, "lattice")
    manifold = Manifold.fit(real, k=4)
    np.testing.assert_array_equal(manifold.radii(4) ** 2, radii2(real, 4))
    np.testing.assert_array_equal(manifold.radii(2) ** 2, radii2(real, 2))
    occurrence = manifold.k_occurrence(4)
    assert occurrence.sum() == 4 * len(real) and occurrence.shape == (len(real),)
    hubs = manifold.hubs(t=4, k=4)
    assert hubs.n_hubs == int((occurrence >= 4).sum()) and hubs.backend == "exact"


def test_save_load_round_trip_and_memmap_path(rng, tmp_path):
    real, fake = _data(rng, "random")
    fresh = compute_pr(real, fake, k=3)
    path = Manifold.fit(real, k=3).save(tmp_path / "m")
    loaded = Manifold.load(path)
    assert isinstance(loaded.features, np.memmap) and loaded.k == (3,)
    _same(compute_pr(loaded, fake, k=3), fresh)
    # features=False keeps the path of the .npy the manifold was fitted on
    np.save(tmp_path / "real.npy", real.astype(np.float16))
    on_disk = Manifold.fit(str(tmp_path / "real.npy"), k=3)
    kept = Manifold.load(on_disk.save(tmp_path / "m16", features=False))
    assert not os.path.exists(tmp_path / "m16" / "features.npy")
    _same(compute_pr(kept, fake, k=3), compute_pr(str(tmp_path / "real.npy"), fake, k=3))


def test_load_refuses_other_features(rng, tmp_path):
    real, _ = _data(rng, "random")
    np.save(tmp_path / "real.npy", real)
    path = Manifold.fit(str(tmp_path / "real.npy")).save(tmp_path / "m", features=False)
    changed = real.copy()
    changed[-1] += 1.0
    np.save(tmp_path / "real.npy", changed)
    with pytest.raises(ValueError, match="not the feature file this manifold was fitted on"):
        Manifold.load(path)
    np.save(tmp_path / "moved.npy", real)
    assert Manifold.load(path, features=tmp_path / "moved.npy").n == len(real)
    with pytest.raises(FileNotFoundError, match="holds no manifold.json"):
        Manifold.load(tmp_path / "nowhere")
    meta = json.loads((tmp_path / "m" / "manifold.json").read_text())
    meta["version"] = 99
    (tmp_path / "m" / "manifold.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 99, newer than this eprmetrics reads"):
        Manifold.load(path)


def test_bad_uses_name_the_input(rng):
    real, fake = _data(rng, "random")
    manifold = Manifold.fit(real, k=3)
    with pytest.raises(ValueError, match=r"k: this manifold holds radii for k ≤ 3, got k=5.*k=\(3, 5\)"):
        compute_pr(manifold, fake, k=5)
    with pytest.raises(TypeError, match="fake: got a Manifold"):
        compute_pr(fake, manifold)
    with pytest.raises(ValueError, match="same feature dimension"):
        compute_pr(manifold, fake[:, :4])
    with pytest.raises(ValueError, match="fake: features must be finite"):
        compute_pr(manifold, np.where(np.arange(6) == 2, np.nan, fake))
    with pytest.raises(ValueError, match="features: False keeps only the path"):
        manifold.save("unused", features=False)


def test_scale_of_the_pair_follows_the_fake_set(rng):
    # A fake set with huge values changes the pair's power-of-two scale: the stored radii rescale exactly.
    real, fake = _data(rng, "random")
    fake = fake * np.float32(2.0**40)
    real_big = real * np.float32(2.0**30)
    manifold = Manifold.fit(real_big, k=3)
    _same(compute_pr(manifold, fake, k=3), compute_pr(real_big, fake, k=3))
    np.testing.assert_allclose(manifold.radii(3), np.sqrt(radii2(real_big, 3)), rtol=1e-12)


def test_fast_methods_reuse_the_exact_graph(rng):
    real, fake = _data(rng, "random")
    manifold = Manifold.fit(real, k=3)
    a = compute_epr(manifold, fake, backend="exact", sample_size=120, seed=3)
    b = compute_epr(real, fake, backend="exact", sample_size=120, seed=3)
    assert (a.precision, a.recall, a.precision_ci, a.recall_ci) == (b.precision, b.recall, b.precision_ci, b.recall_ci)
    assert not any("real: exact k-NN graph" in s.name for s in a.stages)
    c = compute_epr(manifold, fake, backend="ivf-gemm", sample_size=150, seed=1)
    assert c.plan.backends == {"real": "exact", "fake": "ivf-gemm"}
    exact = compute_pr(real, fake, k=3)
    assert c.precision_ci[0] - 0.05 <= exact.precision <= c.precision_ci[1] + 0.05
    h1 = compute_epr(manifold, fake, method="hubness", backend="exact", t=2, audit=False)
    h2 = compute_epr(real, fake, method="hubness", backend="exact", t=2, audit=False)
    assert (h1.precision, h1.recall, h1.hubs["real"].n_hubs) == (h2.precision, h2.recall, h2.hubs["real"].n_hubs)


def test_planner_counts_no_real_pass_for_a_manifold():
    rates = Rates(gemm_flops=1e10, per_element=1e-9, per_f64_element=1e-9)
    full, reused = exact_cost(50_000, 50_000, 512, rates), exact_cost(50_000, 50_000, 512, rates, frozenset({"real"}))
    assert reused["radii"] == pytest.approx(full["radii"] / 2) and reused["cross pass"] == full["cross pass"]
    sets = {name: FeatureSet(np.zeros((50_000, 512), np.float32), name) for name in ("real", "fake")}
    backends, cost = sampled_cost(sets, 3, 0.01, 0.95, rates, frozenset({"real"}))
    backends_full, cost_full = sampled_cost(sets, 3, 0.01, 0.95, rates)
    assert backends["real"] == "exact" and cost["graphs"] == pytest.approx(cost_full["graphs"] / 2)


def test_pr_curve_equals_independent_calls(rng):
    real = rng.normal(size=(300, 6)).astype(np.float32)
    fakes = {psi: (psi * rng.normal(size=(220, 6))).astype(np.float32) for psi in (0.3, 0.6, 1.0)}
    curve = pr_curve(real, fakes, k=3)
    assert curve.labels == [0.3, 0.6, 1.0] and curve.fit_seconds > 0
    for psi, fake in fakes.items():
        _same(curve[psi], compute_pr(real, fake, k=3))
    assert curve.precision == [curve[p].precision for p in fakes]
    front = curve.frontier()
    assert front and all(p in fakes for p in front)
    data = json.loads(curve.to_json())
    assert [row["label"] for row in data["points"]] == [0.3, 0.6, 1.0] and data["n_real"] == 300
    assert "| 0.6 |" in curve.table()
    sampled = pr_curve(curve.manifold, fakes, method="sampled", k=3, backend="exact", sample_size=100)
    assert sampled.fit_seconds == 0.0 and sampled[1.0].precision_ci is not None
    assert "[" in sampled.table()


def test_pr_curve_bad_arguments(rng):
    real = rng.normal(size=(50, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="method: expected one of"):
        pr_curve(real, {1: real}, method="fast")
    with pytest.raises(ValueError, match="fakes: expected a non-empty mapping"):
        pr_curve(real, {})
    with pytest.raises(ValueError, match="fakes: expected a non-empty mapping"):
        pr_curve(real, [real])
    with pytest.raises(ValueError, match="k: this manifold holds radii for k ≤ 3"):
        pr_curve(Manifold.fit(real, k=3), {1: real}, k=4)


def test_fit_on_images_equals_features(rng):
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 6))
    real = torch.from_numpy(rng.integers(0, 256, size=(60, 3, 8, 8), dtype=np.uint8))
    fake = torch.from_numpy(rng.integers(0, 256, size=(50, 3, 8, 8), dtype=np.uint8))
    manifold = Manifold.fit(real, k=3, extractor=net, progress=False)
    assert manifold.dim == 6 and manifold.n == 60
    _same(compute_pr(manifold, fake, extractor=net), compute_pr(real, fake, extractor=net))


def test_cli_fits_and_uses_a_manifold(rng, tmp_path, capsys):
    from eprmetrics.cli import main

    real, fake = _data(rng, "random")
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    out = str(tmp_path / "m")
    assert main(["manifold", str(tmp_path / "real.npy"), out, "--k", "3,5", "--quiet", "--no-copy"]) == 0
    assert "use it as REAL" in capsys.readouterr().out
    assert (
        main([out, str(tmp_path / "fake.npy"), "--exact", "--k", "5", "--quiet", "--json", str(tmp_path / "a.json")])
        == 0
    )
    fresh = ["--exact", "--k", "5", "--quiet", "--json", str(tmp_path / "b.json")]
    assert main([str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), *fresh]) == 0
    a, b = (json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab")
    assert (a["precision"], a["recall"], a["density"]) == (b["precision"], b["recall"], b["density"])
    capsys.readouterr()
    assert main([out, str(tmp_path / "fake.npy"), "--exact", "--k", "7", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--k: this manifold holds radii for k ≤ 5" in err[0]
    assert main(["manifold", str(tmp_path / "missing.npy"), str(tmp_path / "m2")]) == 2
    assert "missing.npy" in capsys.readouterr().err
