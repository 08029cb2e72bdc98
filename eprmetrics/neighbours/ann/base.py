"""The contract every ANN backend fulfils, and the registry that holds them.

``knn_graph(X, k, backend=...)`` returns ``(distances, indices)``: for each
point its ``k`` nearest *other* points, ascending true L2 distances (float32),
``int64`` indices, the query itself excluded (its own index is dropped when the
backend returns it, otherwise the farthest of the ``k + 1`` found), ``-1`` /
``inf`` where a backend found fewer. Backends register with
:func:`register_backend`; optional libraries are imported only when used.
"""

from __future__ import annotations

import abc
import importlib
import time
from typing import Any, ClassVar, Optional

import numpy as np
import torch

from ...validation import fail, require

__all__ = ["ANNBackend", "register_backend", "get_backend", "backend_names", "available_backends", "finish_graph"]

_REGISTRY: dict[str, type["ANNBackend"]] = {}


class ANNBackend(abc.ABC):
    """One approximate (or exact) k-NN library behind the common contract.

    Subclasses set ``name``, ``extra`` (the pip extra), ``module`` (what must
    import) and ``defaults`` (every tunable parameter with its default; a
    value ``None`` means "derived from n and d" in :meth:`resolve_params`).
    """

    name: ClassVar[str]
    extra: ClassVar[str] = ""
    module: ClassVar[Optional[str]] = None
    defaults: ClassVar[dict[str, Any]] = {}
    deterministic: ClassVar[bool] = True
    supports_queries: ClassVar[bool] = True  # can search points that are not indexed
    accepts_float16: ClassVar[bool] = False  # build/search take float16 arrays (memmaps) as they are
    # search's distances are fp32 sums of squared direct differences of the rows it was given (not a norm
    # expansion, not a compressed code), so they bound true distances within a known rounding factor.
    measures_distances: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"backend {self.name!r}: unknown option(s) {sorted(unknown)}; expected some of {sorted(self.defaults)}"
            )
        self.params = {**self.defaults, **params}
        self.used_params: dict[str, Any] = {}

    @classmethod
    def is_available(cls) -> bool:
        if cls.module is None:
            return True
        try:
            importlib.import_module(cls.module)
            return True
        except ImportError:
            return False

    @classmethod
    def check_available(cls) -> None:
        if cls.module is not None:
            require(cls.module, cls.extra, cls.name)

    def resolve_params(self, n: int, dim: int) -> dict[str, Any]:
        """Concrete parameters for a set of ``n`` points in ``dim`` dimensions."""
        return dict(self.params)

    @abc.abstractmethod
    def build(self, x: np.ndarray, *, seed: int, device: torch.device) -> None:
        """Build the index over ``x`` (n × d float32, C-contiguous)."""

    @abc.abstractmethod
    def search(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """``k`` neighbours of every row of ``x``: (distances, indices, distances_are_squared)."""

    def search_queries(self, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """``k`` indexed neighbours of *other* points ``x`` (no self to drop); ``supports_queries`` says if possible."""
        return self.search(x, k)

    def run(self, x: np.ndarray, k: int, *, seed: int, device: torch.device) -> tuple[np.ndarray, np.ndarray, dict]:
        """Build, then search ``k + 1`` neighbours of the indexed points; with timings."""
        self.used_params = self.resolve_params(*x.shape)
        t0 = time.perf_counter()
        self.build(x, seed=seed, device=device)
        t1 = time.perf_counter()
        dist, idx, squared = self.search(x, k + 1)
        t2 = time.perf_counter()
        dist, idx = finish_graph(np.asarray(dist), np.asarray(idx), k, squared)
        return (
            dist,
            idx,
            {
                "backend": self.name,
                "build_s": t1 - t0,
                "search_s": t2 - t1,
                "params": {key: _plain(v) for key, v in self.used_params.items()},
            },
        )


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def finish_graph(dist: np.ndarray, idx: np.ndarray, k: int, squared: bool) -> tuple[np.ndarray, np.ndarray]:
    """Apply the contract to ``k + 1`` raw neighbours per point: drop self, true L2, ascending, int64."""
    n = idx.shape[0]
    idx = idx.astype(np.int64, copy=False)
    dist = dist.astype(np.float32, copy=True)
    dist[idx < 0] = np.inf
    is_self = idx == np.arange(n)[:, None]
    first_self = is_self & (np.cumsum(is_self, axis=1) == 1)
    keep = ~first_self
    no_self = ~first_self.any(axis=1)
    keep[no_self, -1] = False  # the query was not returned: drop the farthest
    idx = idx[keep].reshape(n, k)
    dist = dist[keep].reshape(n, k)
    if squared:
        np.sqrt(np.maximum(dist, 0, out=dist), out=dist)
    order = np.argsort(dist, axis=1, kind="stable")
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)


def register_backend(cls: type[ANNBackend]) -> type[ANNBackend]:
    """Class decorator adding a backend to the registry (validated, no duplicates)."""
    if not (isinstance(cls, type) and issubclass(cls, ANNBackend)):
        raise TypeError(f"register_backend: expected an ANNBackend subclass, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(f"register_backend: {cls.__name__} needs a non-empty name other than 'auto', got {name!r}")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"register_backend: a backend named {name!r} is already registered")
    _REGISTRY[name] = cls
    return cls


def get_backend(name: str) -> type[ANNBackend]:
    """The registered backend class ``name`` (ValueError naming the registered ones otherwise)."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise fail(
            "backend", f"'auto' or one of {backend_names()}", name, "register your own with eprmetrics.register_backend"
        )
    return _REGISTRY[name]


def backend_names() -> list[str]:
    return sorted(_REGISTRY)


def available_backends() -> list[str]:
    """Registered backends whose libraries are installed."""
    return [name for name in backend_names() if _REGISTRY[name].is_available()]
