"""torch.distributed, only when asked: 2-rank gloo runs (launched by torchrun).

* with ``distributed=True`` every rank gets the single-process result exactly (exact, hubness, sampled —
  two-phase and screened too — knn_graph, Manifold.fit, pr_curve), even with a different ``memory_budget``
  on each rank (the smallest is agreed, on the CPU too);
* without it every rank computes alone, its own answer, though a process group is initialised (unequal
  shares included), and a rank computing alone while the other waits at a barrier does not block;
* misuse — other data, shapes or options on a rank, a bad input on one rank, a rank that never joins —
  ends in one clear error on every rank that made the call, within the timeout.
"""

import json
import os
import subprocess
import sys

import pytest

from eprmetrics import compute_pr
from tests.dist_worker import BUDGET, data, halves, local, results, subset

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ADVICE = "every rank must pass the same data and options"


def _torchrun(tmp_path, *args, ranks=2):
    """Run ``tests/dist_worker.py`` on ``ranks`` gloo processes; every rank's JSON output."""
    # PYTHONPATH: the ranks import this checkout's eprmetrics, as the test process does.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": ROOT}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={ranks}",
        os.path.join(HERE, "dist_worker.py"),
        str(tmp_path),
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(ranks)]


@pytest.mark.parametrize("ranks", [2])
def test_gloo_ranks_equal_single_process(tmp_path, ranks):
    """Rank 0 asks for a 64 KiB budget, rank 1 for 256 KiB: both use 64 KiB and equal one process with it."""
    got = _torchrun(tmp_path, ranks=ranks)
    single = results(*data())
    assert single["two-phase"][-2:] == [800, 800]  # the phase one was used
    for r in range(ranks):
        assert got[r].pop("world") == [r, ranks]
        assert got[r] == json.loads(json.dumps(single)), f"rank {r} differs from the single-process result"


def test_only_when_asked_and_one_error_on_every_rank(tmp_path):
    ranks = _torchrun(tmp_path, "scenarios")
    for r, out in enumerate(ranks):  # no flag: each rank's own answer on its own (unequal) share
        assert out["local"] == json.loads(json.dumps(local(*halves(r))))
    assert ranks[0]["local"] != ranks[1]["local"]
    # Rank 0 alone (rank 1 at a barrier): the single-process answer, and nobody blocked.
    assert ranks[0]["rank0_only"] == json.loads(json.dumps(local(*data())))
    expected = {
        "data": "DistributedError: distributed: ranks disagree on real.data: rank 0 rows hash ",
        "shape": "DistributedError: distributed: ranks disagree on real.shape: rank 0 (700, 24), rank 1 (600, 24) "
        f"(also real.data); {ADVICE}",
        "seed": f"DistributedError: distributed: ranks disagree on seed: rank 0 0, rank 1 1; {ADVICE}",
        "graph": "DistributedError: distributed: ranks disagree on X.data: rank 0 rows hash ",
    }
    for case, message in expected.items():
        first = ranks[0][case][0]
        assert first == ranks[1][case][0], f"{case}: the ranks raised different errors"
        assert first.startswith(message) and first.endswith(ADVICE), first
        assert "\n" not in first
        assert all(out[case][1] < 20 for out in ranks)  # raised at once, not at the timeout
    # A bad input on rank 1: its own error there, named by rank 0.
    own = "ValueError: fake: features must be finite, found NaN or Inf in row 3"
    assert ranks[1]["input"][0] == own
    assert ranks[0]["input"][0] == f"DistributedError: distributed: rank 1 failed before the shared work: {own}"
    # The group still serves a shared call after those errors.
    assert ranks[0]["after"] == ranks[1]["after"] == compute_pr(*data(), k=3).precision
    # Rank 0 asks to share a call rank 1 never makes: an error after the 3 s timeout, not the group's 30 min.
    message, seconds = ranks[0]["lone"]
    assert message.startswith("DistributedError: distributed: not every rank of the process group joined this call")
    assert "distributed_timeout=3 s" in message
    assert 3 <= seconds < 20


def test_a_process_group_of_some_ranks(tmp_path):
    """Ranks 0 and 1 of three share over their own group (every collective on it: rank 2, busy alone, is never
    waited for) and equal one process; rank 2 is refused the group it is not in."""
    ranks = _torchrun(tmp_path, "group", ranks=3)
    single = json.loads(json.dumps(subset(*data(), memory_budget=BUDGET)))
    assert ranks[0]["group"] == ranks[1]["group"] == single
    assert ranks[2]["alone"] == json.loads(json.dumps(local(*halves(0))))
    assert ranks[2]["outside"][0] == (
        "ValueError: process_group: expected a group this process belongs to, got one it is not a member of; call "
        "with the group's own ranks only, or without process_group"
    )


def test_cli_under_torchrun_reports_once(tmp_path):
    import numpy as np

    real, fake = data()
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": ROOT}
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
