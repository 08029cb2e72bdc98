"""API fuzz: every bad value of every option is accepted by design or refused by an error naming the option.

A table of bad values (wrong types, negative, NaN, huge, bools for ints, numpy scalars, bytes…) is passed
to each option of :func:`compute_pr`, :func:`compute_epr`, :func:`knn_graph`, :meth:`Manifold.fit`,
:meth:`Manifold.load` and :func:`pr_curve`, one at a time. The call either succeeds or raises one of the
user errors (``ValueError``, ``TypeError``, ``FileNotFoundError``…) whose message names the option — never
an ``AttributeError``, ``KeyError`` or a ``TypeError`` from inside that leaves the user guessing. Values
accepted by design (numpy integers for ints) must be accepted.
"""

from __future__ import annotations

import copy
import re
import warnings

import numpy as np
import pytest

from eprmetrics import Manifold, compute_epr, compute_pr, knn_graph, pr_curve
from eprmetrics.fileio import OutputError

RNG = np.random.default_rng(11)
REAL = RNG.normal(size=(60, 6)).astype(np.float32)
FAKE = RNG.normal(size=(50, 6)).astype(np.float32)

BAD = {
    "str": "x",
    "empty": "",
    "negative": -1,
    "zero": 0,
    "fraction": 1.5,
    "nan": float("nan"),
    "inf": float("inf"),
    "huge": 10**30,
    "bool": True,
    "none": None,
    "list": [1],
    "tuple": (),
    "dict": {},
    "np.int64(-1)": np.int64(-1),
    "np.int64(3)": np.int64(3),
    "np.float64": np.float64(2.0),
    "np.bool_": np.bool_(True),
    "object": object(),
    "bytes": b"cpu",
}
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError, OutputError)

IMAGE_OPTIONS = ["extractor", "weights", "batch_size", "num_workers", "cache_dir", "on_error"]
ENGINE_OPTIONS = [
    "device",
    "memory_budget",
    "error_bound",
    "precision",
    "progress",
    "distributed",
    "process_group",
    "distributed_timeout",
]
CALLS = {
    "compute_pr": (
        lambda **kw: compute_pr(REAL, FAKE, **kw),
        ["k", "strict", "density_coverage", "realism", "save_features", *ENGINE_OPTIONS, *IMAGE_OPTIONS],
    ),
    "compute_epr": (
        lambda **kw: compute_epr(REAL, FAKE, **kw),
        ["method", "k", "t", "backend", "radii", "sample_size", "confidence", "audit", "seed", "screen", "strict"]
        + ["backend_options", "save_features", *ENGINE_OPTIONS, *IMAGE_OPTIONS],
    ),
    "knn_graph": (
        lambda **kw: knn_graph(REAL, **({"k": 3} | kw)),
        ["k", "backend", "seed", "device", "options", "stats", "distributed", "process_group"],
    ),
    "Manifold.fit": (lambda **kw: Manifold.fit(REAL, **kw), ["k", *ENGINE_OPTIONS, *IMAGE_OPTIONS]),
    "pr_curve": (
        lambda **kw: pr_curve(REAL, **({"fakes": {0.5: FAKE}} | kw)),
        ["fakes", "method", "k", "device", "sample_size", "seed"],
    ),
}
CASES = [(fn, option) for fn, (_, options) in CALLS.items() for option in options]

# Accepted by design: numpy integers are ints.
MUST_ACCEPT = {
    ("compute_pr", "k"): [np.int64(3), np.int32(2)],
    ("compute_epr", "k"): [np.int64(3)],
    ("compute_epr", "t"): [np.int64(2)],
    ("compute_epr", "seed"): [np.int64(7)],
    ("compute_epr", "sample_size"): [np.int64(20)],
    ("knn_graph", "k"): [np.int64(3), np.uint8(2)],
    ("knn_graph", "seed"): [np.int64(3)],
    ("Manifold.fit", "k"): [np.int64(3)],
    ("pr_curve", "k"): [np.int64(3)],
}


# Manifold.load's messages call its path argument what it is: the manifold folder.
ALIASES = {"path": ("path", "manifold")}


def _names_option(message: str, option: str) -> bool:
    return re.search(rf"(^|[^a-z_]){re.escape(option)}([^a-z_]|$)", message) is not None


def _outcome(call, option: str, value, tmp_path, monkeypatch) -> str:
    """'' when ``value`` is accepted or refused well; what went wrong otherwise."""
    monkeypatch.chdir(tmp_path)  # a string value taken as a folder name lands here
    value = copy.deepcopy(value)  # knn_graph fills a dict given as stats: every case gets a fresh one
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call(**{option: value})
    except USER_ERRORS as exc:
        if not any(_names_option(str(exc), name) for name in ALIASES.get(option, (option,))):
            return f"{type(exc).__name__} not naming {option}: {exc}"
    except Exception as exc:  # noqa: BLE001 — the point: nothing else may escape
        return f"raw {type(exc).__name__}: {exc}"
    return ""


@pytest.mark.parametrize("fn,option", CASES, ids=[f"{fn}-{option}" for fn, option in CASES])
def test_every_bad_value_is_accepted_or_named(fn, option, tmp_path, monkeypatch):
    call, _ = CALLS[fn]
    failures = []
    for label, value in BAD.items():
        problem = _outcome(call, option, value, tmp_path, monkeypatch)
        if problem:
            failures.append(f"{option}={label}: {problem[:200]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("fn,option", list(MUST_ACCEPT), ids=[f"{fn}-{o}" for fn, o in MUST_ACCEPT])
def test_numpy_integers_are_ints(fn, option):
    call, _ = CALLS[fn]
    for value in MUST_ACCEPT[fn, option]:
        call(**{option: value})


@pytest.mark.parametrize("option", ["path", "features"])
def test_manifold_load_bad_values_are_named(option, tmp_path, monkeypatch):
    folder = tmp_path / "m"
    Manifold.fit(REAL, k=3).save(str(folder))

    def load(**kw):
        return Manifold.load(**({"path": str(folder)} | kw))

    failures = [f"{label}: {p}" for label, v in BAD.items() if (p := _outcome(load, option, v, tmp_path, monkeypatch))]
    assert not failures, "\n".join(failures)


def test_knn_graph_checks_its_options_before_reading_the_features():
    """``seed`` was not checked at all, ``options``/``stats`` failed inside (``argument after ** must be a
    mapping``, ``'str' object has no attribute 'update'``)."""
    with pytest.raises(ValueError, match=r"^seed: expected a non-negative int, got -1"):
        knn_graph("not read", 3, seed=-1)
    with pytest.raises(TypeError, match=r"^options: expected a dict or None, got str; .*nprobe"):
        knn_graph(REAL, 3, options="nprobe=3")
    with pytest.raises(TypeError, match=r"^stats: expected a dict or None, got list"):
        knn_graph(REAL, 3, stats=[])


def test_pr_curve_names_options_its_method_does_not_take_and_the_fake_that_failed():
    with pytest.raises(ValueError, match=r"^sample_size: expected options of compute_pr \(method='exact'\)"):
        pr_curve(REAL, {1: FAKE}, sample_size=100)
    with pytest.raises(ValueError, match=r"^realism, bogus: expected options of compute_epr \(method='sampled'\)"):
        pr_curve(REAL, {1: FAKE}, method="sampled", realism=True, bogus=1)
    bad = np.full_like(FAKE, np.nan)
    with pytest.raises(ValueError, match=r"^fakes\[0\.7\]: fake: features must be finite"):
        pr_curve(REAL, {0.5: FAKE, 0.7: bad})
