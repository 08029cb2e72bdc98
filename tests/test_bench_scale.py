"""bench_scale's report: a series measured in pieces (scaling runs, the LSUN-scale run) becomes one table,
one fitted exponent and one plot; pieces of different data kinds are refused."""

import json

import pytest

KIND = {"dim": 64, "spectrum": "long", "defect": "truncation", "strength": 0.1, "dtype": "float16", "device": "cpu"}


def _row(n, seconds, with_n=True):
    row = {
        "method": "sampled",
        "seconds": seconds,
        "precision": 0.9,
        "recall": 0.5,
        "precision_ci": [0.89, 0.91],
        "recall_ci": [0.49, 0.51],
        "plan": {"backends": {"real": "ivf-pca", "fake": "ivf-pca"}},
        "anon_rss_growth": 1 << 20,
    }
    return {**row, "n": n} if with_n else row


@pytest.fixture
def results(tmp_path, monkeypatch):
    import benchmarks.bench_scale as bench
    import benchmarks.common as common

    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    monkeypatch.setattr(bench, "RESULTS", str(tmp_path))
    return tmp_path, bench


def _write(path, args, rows):
    path.write_text(json.dumps({"args": args, "rows": rows}))
    return str(path)


def test_report_folds_earlier_runs_into_one_series(results):
    tmp, bench = results
    series = _write(tmp / "a.json", {**KIND, "n": 0}, [_row(1000, 1.0), _row(2000, 2.0)])
    lsun = _write(tmp / "b.json", {**KIND, "n": 8000}, [_row(8000, 8.0, with_n=False)])  # its n is in its args
    bench.main(["report", "--tag", "t", "--fit-from", "1000", "--from", series, lsun])
    saved = json.loads((tmp / "scale_scaling_t.json").read_text())
    assert saved["exponents"]["sampled"] == pytest.approx(1.0)
    assert [r["n"] for r in saved["rows"]] == [1000, 2000, 8000]
    md = (tmp / "scale_scaling_t.md").read_text()
    assert "| 8,000 | 8.0 |" in md and "d=64, long spectrum" in md and "`b.json`" in md
    again = _write(tmp / "c.json", {**KIND, "n": 0}, [_row(2000, 4.0)])  # the 2,000 point measured again
    bench.main(["report", "--tag", "t", "--fit-from", "1000", "--from", series, lsun, again])
    saved = json.loads((tmp / "scale_scaling_t.json").read_text())
    assert [(r["n"], r["seconds"], r["source"]) for r in saved["rows"]][1] == (2000, 4.0, "c.json")


def test_report_refuses_pieces_of_different_data(results):
    tmp, bench = results
    a = _write(tmp / "a.json", {**KIND, "n": 0}, [_row(1000, 1.0)])
    b = _write(tmp / "b.json", {**KIND, "spectrum": "low", "n": 0}, [_row(2000, 2.0)])
    with pytest.raises(SystemExit, match="one data kind per report"):
        bench.main(["report", "--from", a, b])
    with pytest.raises(SystemExit, match="give --from"):
        bench.main(["report"])
    (tmp / "c.json").write_text("{}")
    for bad in (str(tmp / "missing.json"), str(tmp / "c.json")):
        with pytest.raises(SystemExit, match="could not read it"):
            bench.main(["report", "--from", bad])


def test_rows_of_serves_the_first_rows_of_larger_memmaps(tmp_path):
    """``--rows-of N``: the sets are the first n rows of N-row memmaps (written once), equal to n-row sets, and the
    reads of the package are counted against those files in full passes of the n rows."""
    import argparse

    import numpy as np

    import benchmarks.bench_scale as bench
    from eprmetrics.synthetic import SyntheticSpec, generate

    args = argparse.Namespace(
        n=1024,
        rows_of=2048,
        dim=8,
        seed=0,
        spectrum="heavy",
        memmap=str(tmp_path),
        dtype="float16",
        defect="truncation",
        strength=0.1,
        gen_device="cpu",
        device="cpu",
    )
    real, fake, how = bench.make_sets(args)
    assert real.shape == (1024, 8) and "first 1,024 rows of 2,048-row memmaps" in how
    spec = SyntheticSpec(dim=8, seed=0, spectrum="heavy")
    np.testing.assert_array_equal(real, generate(1024, spec, stream=0).half().numpy())
    stage = {"mapped_read": {str(tmp_path / "real_2048_8_float16_heavy.npy"): 2 * real.nbytes}}
    assert bench.memmap_passes([stage], {"real": real})["real"]["passes"] == 2.0
