"""Helpers shared by the benchmark scripts: isolated worker processes, result files, the machine.

Memory is read with :mod:`eprmetrics.profiling` (``reset_peak_rss``, ``read_rss``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# EPRM_BENCH_RESULTS redirects every result file (the GPU suite's --smoke run in `make test` writes to a temp dir).
RESULTS = os.environ.get("EPRM_BENCH_RESULTS") or os.path.join(REPO, "benchmarks", "results")


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), None)
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def run_worker(name: str, args: list[str], timeout: Optional[float] = None) -> dict[str, Any]:
    """Run ``python -m benchmarks.<name> --worker ...`` from the repository root in a fresh process.

    The worker's last stdout line is its JSON result.
    """
    cmd = [sys.executable, "-m", f"benchmarks.{name}", "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def save(name: str, payload: dict[str, Any], markdown: str) -> tuple[str, str]:
    os.makedirs(RESULTS, exist_ok=True)
    j, m = os.path.join(RESULTS, name + ".json"), os.path.join(RESULTS, name + ".md")
    with open(j, "w") as fh:
        json.dump(payload, fh, indent=2)
    with open(m, "w") as fh:
        fh.write(markdown)
    return j, m


def gib(n: Optional[float]) -> str:
    return "-" if n is None else f"{n / 2**30:.2f}"
