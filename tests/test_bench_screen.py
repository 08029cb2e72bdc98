"""benchmarks/bench_screen.py at toy size: it runs, writes its files, and the three runs agree."""

import json
import sys

from benchmarks import bench_screen, common


def test_bench_screen_smoke(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["bench_screen", "--n", "1500", "--dim", "256", "--tag", "t"])
    bench_screen.main()
    out = json.loads((tmp_path / "screen_1500_256_t.json").read_text())
    assert [r["kind"] for r in out["rows"]] == ["low", "long", "digits"]
    assert all(r["identical_estimates"] for r in out["rows"])
    screened = out["rows"][0]["runs"]["screen"]["sides"]["precision"]["screen"]
    assert screened["used"] and screened["dims"] == 32
    assert out["rows"][0]["runs"]["full rows"]["sides"]["precision"]["screen"] is None
    assert "| full rows |" in (tmp_path / "screen_1500_256_t.md").read_text()
