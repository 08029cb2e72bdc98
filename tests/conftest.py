import numpy as np
import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: use --runslow")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "cuda" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_cuda)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


SUITE_MEMORY = 4 << 30  # the suite's memory budget (its own process)


def pytest_terminal_summary(terminalreporter):
    """Say how far the test process itself grew, against the suite's 4 GiB budget. A report, not a failure yet:
    the whole default run peaks above it (5.3 GiB seen on 2026-12-07 at 84% of the run; the files tried alone
    peak near 1 GiB), left to the lean-suite work; a brute force on a full n × m × d array once took 17 GiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    over = " — over the suite's budget" if peak > SUITE_MEMORY else ""
    terminalreporter.write_line(
        f"test process peak RSS {peak / 2**30:.2f} GiB (budget {SUITE_MEMORY / 2**30:.0f} GiB){over}"
    )
