"""Distribution only when asked, checked in one process: the options, no takeover of an initialised group,
the agreement on the budget (on the CPU too) and on the plan, and the one-line errors of disagreeing ranks.

The same behaviours across real processes: tests/test_distributed.py (2 gloo ranks under torchrun).
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from eprmetrics import Manifold, compute_epr, compute_pr, knn_graph, pr_curve
from eprmetrics.engine import DistributedError, TileEngine, World, call_options, fingerprint, norm_sums
from eprmetrics.engine.agreement import check_agreement

CPU = torch.device("cpu")
ADVICE = "every rank must pass the same data and options"


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(300, 8)).astype(np.float32), rng.normal(size=(250, 8)).astype(np.float32)


ENTRY_POINTS = {
    "compute_pr": lambda r, f, **kw: compute_pr(r, f, **kw),
    "compute_epr": lambda r, f, **kw: compute_epr(r, f, **kw),
    "knn_graph": lambda r, f, **kw: knn_graph(r, 3, **kw),
    "Manifold.fit": lambda r, f, **kw: Manifold.fit(r, **kw),
    "pr_curve": lambda r, f, **kw: pr_curve(r, {"a": f}, **kw),
}


# ------------------------------------------------------------------ the options
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_distributed_without_a_process_group_is_one_clear_error(entry):
    with pytest.raises(ValueError) as info:
        ENTRY_POINTS[entry](*_pair(), distributed=True)
    assert str(info.value) == (
        "distributed: expected an initialised torch.distributed process group with distributed=True, got none; "
        "call torch.distributed.init_process_group(...) (or eprmetrics.engine.init()) on every rank first, or "
        "leave distributed=False to compute on this process alone"
    )


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"process_group": "gloo"},
            "process_group: expected a torch.distributed ProcessGroup (e.g. torch.distributed.new_group(...)) or "
            "None, got str; pass the group the ranks share, or distributed=True for the default group",
        ),
        ({"distributed": 1}, "distributed: expected True or False, got 1; e.g. distributed=True"),
        ({"distributed": "yes"}, "distributed: expected True or False, got 'yes'; e.g. distributed=True"),
        (
            {"distributed_timeout": 0},
            "distributed_timeout: expected a positive number of seconds, got 0; e.g. distributed_timeout=60",
        ),
        (
            {"distributed_timeout": float("inf")},
            "distributed_timeout: expected a positive number of seconds, got inf; e.g. distributed_timeout=60",
        ),
    ],
)
def test_bad_distribution_options_name_the_option(entry, kwargs, message):
    with pytest.raises(ValueError) as info:
        ENTRY_POINTS[entry](*_pair(), **kwargs)
    assert str(info.value) == message


# ------------------------------------------------------------ no takeover of a group
@pytest.fixture
def foreign_group(monkeypatch):
    """A 2-rank default process group the caller initialised for its own use: every collective fails."""
    import torch.distributed as dist

    def refuse(*args, **kwargs):
        raise AssertionError("a call without distributed=True used the caller's process group")

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    for name in ("all_reduce", "all_gather", "all_gather_object", "barrier", "broadcast", "monitored_barrier"):
        monkeypatch.setattr(dist, name, refuse)


def test_an_initialised_group_is_not_taken_over(foreign_group):
    real, fake = _pair()
    assert not World.current()
    assert compute_pr(real, fake, memory_budget=1 << 14).precision == compute_pr(real, fake).precision
    res = compute_epr(real, fake, backend="ivf-pca", sample_size=100, backend_options={"dims": 4})
    assert 0 <= res.precision <= 1
    for backend in ("exact", "ivf-gemm", "ivf-pca"):  # the backends that share their work when asked
        _, idx = knn_graph(real, 3, backend=backend)
        assert idx.shape == (300, 3)
    assert Manifold.fit(real, k=3).n == 300
    assert not World.current()


def test_the_call_world_is_installed_for_the_call_only():
    seen = []

    class Two(World):
        def agree(self, payload, timeout=None):
            seen.append(dict(payload))
            return [dict(payload)] * 2

    two = Two(0, 2)
    with two.joined(call_options("compute_pr", {"k": 3, "memory_budget": 1})):
        assert World.current() is two
        with World().joined({}):  # a nested call without distributed=True: alone
            assert not World.current()
        assert World.current() is two
    assert not World.current()
    assert seen == [{"call": "'compute_pr'", "k": "3"}]  # the budget is agreed apart, by the engine


# ------------------------------------------------------------ the budget, on every device
class _Ranks(World):
    """Rank 0 of 2 whose partner asks for ``other`` bytes; records the collectives."""

    def __init__(self, other):
        super().__init__(0, 2)
        self.other, self.asked = other, []

    def min_int(self, value, device):
        self.asked.append((value, device.type))
        return min(value, self.other)


def test_engines_agree_on_the_smallest_budget_on_the_cpu():
    ranks = _Ranks(1 << 16)
    eng = TileEngine(64, CPU, 1 << 20, world=ranks)
    assert ranks.asked == [(1 << 20, "cpu")]
    assert eng.memory_budget == 1 << 16
    assert eng.tile == TileEngine(64, CPU, 1 << 16).tile < TileEngine(64, CPU, 1 << 20).tile
    eng.run_pass(lambda: None)  # a pass on the CPU keeps the agreed tiles
    assert eng.memory_budget == 1 << 16 and len(ranks.asked) == 1
    bigger = TileEngine(64, CPU, 1 << 12, world=_Ranks(1 << 20))
    assert bigger.memory_budget == 1 << 12  # the smallest, whichever rank has it


def test_a_bad_budget_is_refused_before_any_collective():
    ranks = _Ranks(1 << 16)
    with pytest.raises(ValueError, match="memory_budget: expected a positive number of bytes"):
        TileEngine(64, CPU, 0, world=ranks)
    assert ranks.asked == []


# ------------------------------------------------------------ what ranks compare
def test_disagreement_names_the_first_difference_and_the_others():
    with pytest.raises(DistributedError) as info:
        check_agreement([{"real.shape": "(1000, 64)", "k": "3"}, {"real.shape": "(900, 64)", "k": "5"}])
    assert str(info.value) == (
        f"distributed: ranks disagree on real.shape: rank 0 (1000, 64), rank 1 (900, 64) (also k); {ADVICE}"
    )
    with pytest.raises(DistributedError, match="on call: rank 0 'compute_pr', rank 1 <absent>"):
        check_agreement([{"call": "'compute_pr'"}, {}])
    check_agreement([{"a": "1"}, {"a": "1"}, {"a": "1"}])


def test_call_options_compare_values_not_spellings():
    a = call_options("compute_pr", {"k": [3, 5], "seed": np.int64(2), "device": "cpu", "real": np.zeros(3)})
    b = call_options("compute_pr", {"k": (3, 5), "seed": 2, "device": torch.device("cpu"), "real": None})
    assert a == b == {"call": "'compute_pr'", "k": "(3, 5)", "seed": "2", "device": "'cpu'"}
    kept_apart = {"memory_budget": 1, "progress": True, "num_workers": 4, "distributed": True, "process_group": 1}
    assert call_options("knn_graph", kept_apart) == {"call": "'knn_graph'"}
    assert call_options("knn_graph", {"options": {"nprobe": 8}}) != call_options("knn_graph", {"options": {}})


def test_fingerprints_read_a_bounded_sample_and_norm_sums_the_rest():
    from eprmetrics.engine import FeatureSet

    x = np.random.default_rng(1).normal(size=(2000, 16)).astype(np.float32)
    base = fingerprint(FeatureSet(x, "real"))
    assert base == fingerprint(FeatureSet(torch.from_numpy(x.copy()), "real"))  # numpy or torch: the same
    assert base["real.shape"] == "(2000, 16)" and base["real.dtype"] == "float32"
    sampled = x.copy()
    sampled[-1, 0] += 1  # the last row is always sampled
    assert fingerprint(FeatureSet(sampled, "real"))["real.data"] != base["real.data"]
    between = x.copy()
    between[1, 0] += 1  # a row between the 256 sampled ones: only the norms tell
    assert fingerprint(FeatureSet(between, "real")) == base
    eng = TileEngine(16, CPU, 1 << 20)

    def sums(data):
        fs = FeatureSet(data, "real")
        return norm_sums({"real": eng.prepare(fs, eng.center_of(FeatureSet(x, "real")))})

    assert sums(between) != sums(x) == sums(x[::-1].copy())  # order-free: the exactly rounded sum


def test_an_error_on_one_rank_is_raised_on_every_rank():
    class Other(World):
        def exchange(self, payload, timeout=None):
            return [dict(payload), {"error": "ValueError: fake: features must be finite"}]

    with pytest.raises(DistributedError) as info:
        Other(0, 2).settle(lambda: 1, lambda value: {"value": str(value)})
    assert str(info.value) == (
        "distributed: rank 1 failed before the shared work: ValueError: fake: features must be finite"
    )

    class Mine(World):
        def exchange(self, payload, timeout=None):
            return [dict(payload), {"error": None, "value": "1"}]

    with pytest.raises(KeyError):  # this rank's own error, as it was
        Mine(0, 2).settle(lambda: {}["missing"], lambda value: {})


def test_the_plan_is_rank_zeros():
    """The planner measures each rank's machine: every rank takes rank 0's choice, unchanged by the exchange."""
    from eprmetrics.estimators.planner import Choice

    choice = Choice("sampled", "because", {"real": "ivf-pca"}, {"graphs": 1 / 3}, {"exact": float("inf")})
    mine = Choice("exact", "other", {"real": "exact"}, {"radii": 0.1}, {})

    class Two(World):
        def exchange(self, payload, timeout=None):  # JSON both ways, as the real exchange
            return [json.loads(json.dumps(dataclasses.asdict(choice))), json.loads(json.dumps(payload))]

    assert Choice(**Two(1, 2).first(dataclasses.asdict(mine))) == choice


def test_graphs_a_backend_did_not_reproduce_are_refused():
    """Sharing ranks go on from each set's graph: an ANN backend that builds another graph per process
    (threads, say) must end in one error, not a blend of two designs."""
    from eprmetrics.engine import FeatureSet
    from eprmetrics.neighbours import GraphRequest, build_graph
    from eprmetrics.profiling import Profiler

    class Partner(World):  # rank 0 of 2; the partner's graph differs
        def min_int(self, value, device):
            return value

        def exchange(self, payload, timeout=None):
            return [dict(payload), {key: value + "0" for key, value in payload.items()}]

    eng = TileEngine(8, CPU, 1 << 20, world=Partner(0, 2))
    fs = FeatureSet(_pair()[0], "real")
    p = eng.prepare(fs, eng.center_of(fs))
    with pytest.raises(DistributedError) as info:
        build_graph(eng, fs, p, GraphRequest("ivf-gemm", "sampled", 3, 0), Profiler(CPU), False)
    message = str(info.value)
    assert message.startswith("distributed: ranks disagree on real.graph: rank 0 ivf-gemm graph ")
    assert message.endswith(
        "the data were equal, so the ivf-gemm backend built different graphs on the ranks; use 'ivf-pca', "
        "'ivf-gemm' or 'exact' for a distributed call"
    )
