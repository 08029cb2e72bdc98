"""The command line: results, JSON, and one-line errors with exit status 2."""

import json

import numpy as np
import pytest

from eprmetrics.cli import main


@pytest.fixture
def files(tmp_path, rng):
    real = rng.normal(size=(120, 8)).astype(np.float32)
    fake = rng.normal(size=(100, 8)).astype(np.float32)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    return tmp_path


def test_run_prints_and_writes_json(files, capsys):
    out = files / "out.json"
    assert (
        main([str(files / "real.npy"), str(files / "fake.npy"), "--exact", "--k", "3,5", "--json", str(out), "--quiet"])
        == 0
    )
    text = capsys.readouterr().out
    assert "precision" in text and "stage" in text
    data = json.loads(out.read_text())
    assert set(data["per_k"]) == {"3", "5"} and 0 <= data["precision"] <= 1 and data["method"] == "exact"


def test_default_is_epr(files, capsys):
    out = files / "epr.json"
    assert (
        main(
            [
                str(files / "real.npy"),
                str(files / "fake.npy"),
                "--method",
                "hubness",
                "--t",
                "1",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "hubs at t=1" in capsys.readouterr().out
    assert json.loads(out.read_text())["method"] == "hubness"


def test_epr_with_several_k_is_an_error(files, capsys):
    assert main([str(files / "real.npy"), str(files / "fake.npy"), "--k", "3,5", "--quiet"]) == 2
    assert "eP&R uses one k" in capsys.readouterr().err


def test_demo_prints_table(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "demo.png"
    assert main(["demo", "--n", "300", "--dim", "16", "--quiet", "--plot", str(plot)]) == 0
    text = capsys.readouterr().out
    assert "mode_drop" in text and "eP&R" in text and "Stages of the last exact run" in text
    assert plot.stat().st_size > 1000


@pytest.mark.parametrize(
    "argv_tail,message",
    [
        (["missing.npy"], "fake: no such file or directory"),
        (["bad.npy"], "fake: features must be finite"),
        (["short.npy"], "fake: k=3 needs at least 4 samples"),
        (["wide.npy"], "same feature dimension"),
    ],
)
def test_bad_inputs_one_line_exit_2(files, capsys, argv_tail, message):
    np.save(files / "bad.npy", np.full((20, 8), np.nan, np.float32))
    np.save(files / "short.npy", np.zeros((3, 8), np.float32))
    np.save(files / "wide.npy", np.zeros((30, 9), np.float32))
    code = main([str(files / "real.npy"), str(files / argv_tail[0]), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("eprmetrics: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [["a.npy", "b.npy", "--bogus"], ["a.npy", "b.npy", "--k", "x"], ["a.npy", "b.npy", "--memory-budget", "-3G"]],
)
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_k_zero_is_a_clear_error(files, capsys):
    assert main([str(files / "real.npy"), str(files / "fake.npy"), "--k", "0", "--quiet"]) == 2
    assert "k: expected a positive int" in capsys.readouterr().err


def test_no_arguments_prints_help(capsys):
    assert main([]) == 2


def test_bench_on_synthetic_and_files(files, capsys):
    assert main(["bench", "--n", "400", "--dim", "16", "--t", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "exact compute_pr" in text and "compute_epr radii=ann" in text
    assert (
        main(["bench", "--real", str(files / "real.npy"), "--fake", str(files / "fake.npy"), "--t", "1", "--quiet"])
        == 0
    )
    assert main(["bench", "--real", str(files / "real.npy"), "--quiet"]) == 2


def test_sampled_method_with_intervals(files, capsys):
    out = files / "sampled.json"
    assert (
        main(
            [
                str(files / "real.npy"),
                str(files / "fake.npy"),
                "--method",
                "sampled",
                "--backend",
                "ivf-gemm",
                "--sample-size",
                "50",
                "--json",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "sampled estimate, 95% intervals" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["method"] == "sampled" and data["precision_ci"][0] <= data["precision"] <= data["precision_ci"][1]


def test_bad_sample_size_is_one_line(files, capsys):
    assert (
        main(
            [str(files / "real.npy"), str(files / "fake.npy"), "--method", "sampled", "--sample-size", "2.5", "--quiet"]
        )
        == 2
    )
    assert "--sample-size: expected" in capsys.readouterr().err


def test_registered_backend_and_extractor_can_be_chosen(files, monkeypatch, capsys):
    """CLI choice lists come from the registries: a backend or extractor registered by a plugin shows up."""
    from eprmetrics import register_backend, register_extractor
    from eprmetrics.features import base as extractor_base
    from eprmetrics.neighbours.ann import base as backend_base
    from eprmetrics.neighbours.ann.exact import ExactBackend

    monkeypatch.setattr(backend_base, "_REGISTRY", dict(backend_base._REGISTRY))
    monkeypatch.setattr(extractor_base, "_REGISTRY", dict(extractor_base._REGISTRY))

    @register_backend
    class PluginBackend(ExactBackend):
        name = "plugin-exact"

    register_extractor("plugin-net")(lambda weights: None)
    out = files / "out.json"
    argv = [
        str(files / "real.npy"),
        str(files / "fake.npy"),
        "--backend",
        "plugin-exact",
        "--extractor",
        "plugin-net",
        "--method",
        "sampled",
        "--sample-size",
        "50",
        "--json",
        str(out),
        "--quiet",
    ]
    assert main(argv) == 0
    assert json.loads(out.read_text())["backend"] == "plugin-exact"
