"""Every user option is checked here, once, with one message shape.

A message names the option, what was expected, what was given and how to fix it::

    k: expected a positive int or a non-empty sequence of distinct positive ints, got 0; e.g. k=3 or k=(3, 5, 10)

The Python API calls these checks before any work starts; the command line
passes its values to the API, so both speak alike.
Functions here depend on nothing else in the package: every layer may use them.

Example:
    >>> from eprmetrics.validation import check_k, check_confidence
    >>> check_k((3, 5))
    (3, 5)
    >>> check_confidence(2)
    Traceback (most recent call last):
    ...
    ValueError: confidence: expected a float in (0, 1), got 2; e.g. confidence=0.95
"""

from __future__ import annotations

import importlib
import numbers
import os
from collections.abc import Sequence
from typing import Any, Optional, Union

__all__ = [
    "fail",
    "check_bool",
    "check_int",
    "check_choice",
    "check_k",
    "check_single_k",
    "check_memory_budget",
    "check_sample_size",
    "check_confidence",
    "check_audit",
    "check_path_exists",
    "check_folder",
    "check_output_file",
    "check_path_like",
    "check_mapping",
    "check_graph_options",
    "check_keywords",
    "require",
    "SampleSize",
]

SampleSize = Union[int, float]


def fail(
    name: str, expected: str, got: Any, fix: str = "", *, error: type = ValueError, show: bool = True
) -> Exception:
    """The exception every check raises: ``"{name}: expected {expected}, got {got!r}; {fix}"``.

    ``show=False`` puts ``got`` as it is (already formatted) instead of its ``repr``.
    """
    text = f"{name}: expected {expected}, got {got!r}" if show else f"{name}: expected {expected}, got {got}"
    return error(f"{text}; {fix}" if fix else text)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is ``True`` or ``False``."""
    if not isinstance(value, bool):
        raise fail(name, "True or False", value)
    return value


def check_int(value: Any, name: str, *, minimum: int = 1, fix: str = "") -> int:
    """An int ``≥ minimum`` (bools refused); ``minimum=1`` reads "a positive int"."""
    if not _is_int(value) or value < minimum:
        kind = {1: "a positive int", 0: "a non-negative int"}.get(minimum, f"an int ≥ {minimum}")
        raise fail(name, kind, value, fix)
    return int(value)


def check_choice(value: Any, name: str, choices: Sequence[str], fix: str = "") -> str:
    """``value`` if it is one of ``choices`` (a registry's names, a tuple of modes)."""
    if not isinstance(value, str) or value not in choices:
        raise fail(name, f"one of {tuple(choices)}", value, fix)
    return value


def check_k(k: Any) -> tuple[int, ...]:
    """``k`` as a tuple of distinct positive ints, in the order given (the first is the headline)."""
    ks = (k,) if _is_int(k) else tuple(k) if isinstance(k, (list, tuple)) else ()
    if not ks or any(not _is_int(v) or v < 1 for v in ks) or len(set(ks)) != len(ks):
        raise fail(
            "k", "a positive int or a non-empty sequence of distinct positive ints", k, "e.g. k=3 or k=(3, 5, 10)"
        )
    return tuple(int(v) for v in ks)


def check_single_k(k: Any) -> int:
    """One positive int ``k`` (the fast methods use one neighbourhood size)."""
    if not _is_int(k) or k < 1:
        raise fail("k", "a positive int (eP&R uses one k)", k, "e.g. k=3; compute_pr takes several, e.g. k=(3, 5, 10)")
    return int(k)


def check_memory_budget(value: Any) -> Optional[int]:
    """A positive number of bytes, or None for the device's default."""
    if value is not None and (not _is_int(value) or value <= 0):
        raise fail("memory_budget", "a positive int (bytes) or None", value, "e.g. memory_budget=2**30 for 1 GiB")
    return value


def check_sample_size(value: Any, name: str = "sample_size") -> SampleSize:
    """A positive int (queries per set) or a float in (0, 1) (target half-width of the intervals)."""
    ok = _is_int(value) and value >= 1 or isinstance(value, float) and 0 < value < 1
    if not ok:
        raise fail(
            name,
            "a positive int (queries per set) or a float in (0, 1) (target 95% half-width)",
            value,
            "e.g. 2000 or 0.01",
        )
    return int(value) if _is_int(value) else float(value)


def check_confidence(value: Any) -> float:
    """A confidence level in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise fail("confidence", "a float in (0, 1)", value, "e.g. confidence=0.95")
    return float(value)


def check_audit(value: Any, default_size: int) -> int:
    """Queries per set of the hub method's audit: ``True`` → ``default_size``, ``False`` → 0, or an int ≥ 0."""
    if isinstance(value, bool):
        return default_size if value else 0
    return check_int(value, "audit", minimum=0, fix="pass True, False or a number of queries per set")


def check_path_exists(value: Any, name: str) -> str:
    """``value`` as a path string if it exists (FileNotFoundError otherwise)."""
    path = os.fspath(value)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no such file or directory: {path!r}")
    return path


def check_path_like(value: Any, name: str, optional: bool = True) -> Optional[str]:
    """``value`` as a path string, or None when ``optional``; anything else (an int would be taken as a file
    descriptor) refused."""
    if value is None and optional:
        return None
    if not isinstance(value, (str, os.PathLike)) or isinstance(os.fspath(value), bytes):
        kind = "a path (str or os.PathLike)" + (" or None" if optional else "")
        raise fail(name, kind, type(value).__name__, error=TypeError, show=False)
    return str(os.fspath(value))


def check_mapping(value: Any, name: str, fix: str) -> Optional[dict]:
    """A dict, or None (backend parameters, a dict to fill with statistics)."""
    if value is not None and not isinstance(value, dict):
        raise fail(name, "a dict or None", type(value).__name__, fix, error=TypeError, show=False)
    return value


def check_graph_options(k: Any, seed: Any, options: Any, stats: Any) -> tuple[int, int]:
    """The options of :func:`eprmetrics.knn_graph`, checked before the features are read; ``k`` and ``seed``
    as Python ints (numpy integers welcome)."""
    check_mapping(options, "options", "backend parameters, e.g. options={'nprobe': 32}")
    check_mapping(stats, "stats", "pass a dict to receive the backend's statistics, or None")
    return check_int(k, "k", fix="neighbours per point, self excluded, e.g. k=3"), check_int(seed, "seed", minimum=0)


def check_keywords(options: dict[str, Any], accepted: Sequence[str], where: str, fix: str) -> None:
    """Every key of ``options`` is a keyword of the function that receives them (``where``)."""
    foreign = [key for key in options if key not in accepted]
    if foreign:
        raise fail(", ".join(foreign), f"options of {where}", ", ".join(foreign), fix, show=False)


def check_folder(value: Any, name: str) -> Optional[str]:
    """An output folder (created later if missing), or None; refused when it names an existing file."""
    if value is None:
        return None
    path = os.path.expanduser(check_path_like(value, name) or "")
    if os.path.exists(path) and not os.path.isdir(path):
        raise fail(name, "a folder", path, "it is a file: pass a folder path (created if missing)")
    return path


def check_output_file(value: Any, name: str) -> str:
    """A file to write later: its folder must exist and the path must not be a folder."""
    path = os.path.expanduser(check_path_like(value, name) or "")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise fail(name, "a file path", path, "it is a folder: name a file in it, e.g. result.json")
    if not os.path.isdir(folder):
        raise fail(name, "a file in an existing folder", path, f"create {folder!r} first")
    return path


def require(module: str, extra: str, backend: str, kind: str = "backend") -> Any:
    """Import ``module`` or fail naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise ModuleNotFoundError(
            f"{kind} {backend!r} needs the {package!r} package: pip install 'eprmetrics[{extra}]'"
        ) from exc
