"""What the ranks of a distributed call compare before sharing it, and the one error they raise.

* :func:`call_options`: the call and its options as comparable strings (the inputs, ``memory_budget`` and
  per-process settings left out);
* :func:`fingerprint`: a set's shape, dtype and a hash of up to :data:`FINGERPRINT_ROWS` evenly spaced rows
  (a bounded read at any size); :func:`norm_sums`: the exact sum of every row's norm once the set is prepared;
* :func:`check_agreement`: one :class:`DistributedError`, the same on every rank, naming what differs.

The exchange itself is :meth:`eprmetrics.engine.World.agree`.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from typing import Any, Mapping

import numpy as np
import torch

from .device import resolve_device
from .sets import FeatureSet

__all__ = ["DistributedError", "check_agreement", "call_options", "fingerprint", "norm_sums", "FINGERPRINT_ROWS"]

# Rows of a set whose bytes are hashed when ranks compare their inputs (evenly spaced, first and last included).
FINGERPRINT_ROWS = 256
# Options that may differ between ranks: the inputs (compared by fingerprint), the budget (the smallest is
# taken), per-process settings (progress bars, loader workers, folders), and the distribution options.
_NOT_COMPARED = frozenset(
    {
        "cls",
        "real",
        "fake",
        "fakes",
        "X",
        "memory_budget",
        "progress",
        "num_workers",
        "cache_dir",
        "save_features",
        "stats",
        "distributed",
        "process_group",
        "distributed_timeout",
    }
)
_ADVICE = "every rank must pass the same data and options"


class DistributedError(ValueError):
    """Ranks of a distributed call disagree (data, options, plan), or not all joined in time."""


def check_agreement(payloads: list[dict[str, Any]]) -> None:
    """One :class:`DistributedError` naming the first value the ranks' ``payloads`` disagree on (and the other
    names that differ); nothing when they are equal."""
    keys = list(dict.fromkeys(key for p in payloads for key in p))
    differ = [key for key in keys if len({json.dumps(p.get(key, "<absent>")) for p in payloads}) > 1]
    if not differ:
        return
    key = differ[0]
    values = [p.get(key, "<absent>") for p in payloads]
    shown = ", ".join(f"rank {r} {v}" for r, v in enumerate(values[:8])) + (", …" if len(values) > 8 else "")
    more = f" (also {', '.join(differ[1:])})" if len(differ) > 1 else ""
    raise DistributedError(f"distributed: ranks disagree on {key}: {shown}{more}; {_ADVICE}")


def _plain(value: Any) -> str:
    """An option as a comparable string: numbers and sequences normalised, objects by their type."""
    if value is None or isinstance(value, (bool, str)):
        return repr(value)
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_plain(v) for v in value) + ")"
    if isinstance(value, dict):
        items = sorted((_plain(k), _plain(v)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, torch.device):
        return repr(value.type)
    return type(value).__qualname__


def call_options(call: str, params: Mapping[str, Any]) -> dict[str, str]:
    """What the ranks of a ``call`` must agree on: its name and every option of ``params`` (the call's
    arguments) but the inputs, ``memory_budget``, per-process settings and the distribution options; the
    device by its type (``cuda:0`` on one rank and ``cuda:1`` on the next is one plan)."""
    out = {"call": repr(call)}
    for key, value in params.items():
        if key == "device":
            out[key] = repr(resolve_device(value).type)
        elif key not in _NOT_COMPARED:
            out[key] = _plain(value)
    return out


def fingerprint(fs: FeatureSet) -> dict[str, str]:
    """Shape, dtype and a hash of up to :data:`FINGERPRINT_ROWS` evenly spaced rows of ``fs`` (as float64,
    scaled): what ranks compare before sharing a call; a bounded read at any size."""
    pick = np.unique(np.linspace(0, fs.n - 1, min(fs.n, FINGERPRINT_ROWS)).round().astype(np.int64))
    rows = fs.take(torch.from_numpy(pick), torch.device("cpu")).numpy()
    digest = hashlib.blake2b(np.ascontiguousarray(rows).tobytes(), digest_size=8).hexdigest()
    dtype = str(fs.data.dtype).replace("torch.", "")
    return {
        f"{fs.name}.shape": str((fs.n, fs.dim)),
        f"{fs.name}.dtype": dtype,
        f"{fs.name}.data": f"rows hash {digest}",
    }


def norm_sums(prepared: Mapping[str, Any]) -> dict[str, str]:
    """The exactly rounded sum of every row's float64 norm, per prepared set (``name → Prepared``): the whole
    data compared at no extra read, whatever the summation order of each rank."""
    return {f"{name}.data": f"norm sum {math.fsum(p.norm.cpu().numpy().tolist()):.17g}" for name, p in prepared.items()}
