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


SUITE_MEMORY = 4 << 30  # the whole suite stays under 4 GiB of resident memory (its own process)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when the test process itself grew past the suite's memory budget (a brute force on a full
    n × m × d array once took 17 GiB and was killed by the OOM killer on a busy machine)."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    if peak > SUITE_MEMORY and session.exitstatus == 0:
        print(f"\nthe test process peaked at {peak / 2**30:.2f} GiB, over the suite's {SUITE_MEMORY / 2**30:.0f} GiB")
        session.exitstatus = 1
