"""torch.distributed: a 2-rank gloo run (launched by torchrun) equals the single-process result exactly."""

import json
import os
import subprocess
import sys

import pytest

from tests.dist_worker import data, results

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("ranks", [2])
def test_gloo_ranks_equal_single_process(tmp_path, ranks):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={ranks}",
        os.path.join(HERE, "dist_worker.py"),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = results(*data())
    assert single["two-phase"][-2:] == [800, 800]  # the phase one was used
    for r in range(ranks):
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert got.pop("world") == [r, ranks]
        assert got == json.loads(json.dumps(single)), f"rank {r} differs from the single-process result"


def test_cli_under_torchrun_reports_once(tmp_path):
    import numpy as np

    from eprmetrics import compute_pr

    real, fake = data()
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "eprmetrics",
        str(tmp_path / "real.npy"),
        str(tmp_path / "fake.npy"),
        "--exact",
        "--memory-budget",
        "64K",
        "--json",
        str(tmp_path / "out.json"),
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("eprmetrics exact P&R") == 1
    got = json.loads((tmp_path / "out.json").read_text())
    ex = compute_pr(real, fake)
    assert (got["precision"], got["recall"], got["density"], got["coverage"]) == (
        ex.precision,
        ex.recall,
        ex.density,
        ex.coverage,
    )
