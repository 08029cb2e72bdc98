"""benchmarks/bench_sampled.py coverage at toy size, with the graphs reused across seeds: a two-phase design
draws a new phase one (and strata) for every seed, while the radii computed so far are kept."""

import json

from benchmarks import bench_sampled, common


def test_coverage_with_reused_graphs_redraws_the_phase_one(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    args = ["coverage", "--n", "3000", "--dim", "16", "--seeds", "3", "--backend", "ivf-pca", "--device", "cpu"]
    bench_sampled.main(args + ["--reuse-graphs", "--sample-size", "30", "--tag", "t"])
    rows = json.loads((tmp_path / "sampled_coverage_t.json").read_text())["rows"][1:]  # [0]: the summary
    assert [r["phase_one"] for r in rows] == [{"precision": 1200, "recall": 1200}] * 3
    assert len({r["precision"] for r in rows}) > 1  # three seeds, three samples
    assert (
        "a phase one of 1,200 fakes / 1,200 reals, drawn anew each seed"
        in (tmp_path / "sampled_coverage_t.md").read_text()
    )
