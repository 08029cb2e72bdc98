"""The one path from a feature set to its k-NN graph: exact tiled pass or an ANN backend.

Both yield the k-occurrence of every point (hubness); the exact pass also gives
every radius exactly, an ANN backend the k points it found (upper bounds of the
radii) and an index that can search foreign points.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Optional

import numpy as np
import torch

from ..engine import DistributedError, FeatureSet, Prepared, TileEngine
from ..profiling import Profiler, progress_bar
from .ann import ANNBackend, get_backend, resolve_backend
from .ann.base import finish_graph
from .hubs import k_occurrence
from .radii import Radii
from .upper import UpperRadii

__all__ = ["GraphRequest", "SetGraph", "build_graph", "hub_positions"]


@dataclasses.dataclass(frozen=True)
class GraphRequest:
    """Which k-NN graph to build: backend (``"auto"`` or a name), what its radii serve, k, seed, options."""

    backend: str
    mode: str  # "exact" | "ann" (hub method's radii) | "sampled"
    k: int
    seed: int
    options: Optional[dict[str, Any]] = None
    reason: str = ""  # why a planner chose ``backend`` (then it is not resolved again)


@dataclasses.dataclass
class SetGraph:
    """What the k-NN graph of one set yields."""

    backend: str
    reason: str
    params: dict[str, Any]
    occurrence: np.ndarray
    full: Optional[Radii] = None  # exact backend: every radius, exactly
    dist: Optional[np.ndarray] = None  # ANN backend: distances and indices of the k found
    idx: Optional[np.ndarray] = None
    index: Optional[ANNBackend] = None
    measured: bool = False  # ``dist`` measured by direct fp32 differences of the set's own values
    _upper: Optional[UpperRadii] = None

    def upper(self, engine: TileEngine, p: Prepared, k: int) -> UpperRadii:
        """Upper bounds of every radius (the true ones with the exact backend), built once."""
        if self._upper is None:
            nb = None if self.idx is None else torch.from_numpy(self.idx)
            got = torch.from_numpy(self.dist) if self.measured and self.dist is not None else None
            self._upper = UpperRadii(engine, p, k, neighbours=nb, exact=self.full, measured=got)
            refine = getattr(self.index, "refine", None)
            if self.measured and refine is not None:  # the index measures on the set's own values
                self._upper.refiner = lambda ids, level: refine(ids, k, level)
        return self._upper


def build_graph(
    engine: TileEngine, fs: FeatureSet, p: Prepared, request: GraphRequest, prof: Profiler, progress: Optional[bool]
) -> SetGraph:
    """The k-NN graph of ``fs`` (prepared as ``p``), each step timed as a stage of ``prof``."""
    name, k = fs.name, request.k
    if request.reason and request.backend != "auto":
        get_backend(request.backend).check_available()
        chosen, reason = request.backend, request.reason
    else:
        chosen, reason = resolve_backend(request.backend, fs.n, fs.dim, engine.device, request.mode)
    if chosen == "exact":
        # One symmetric pass gives the exact graph and every radius at once.
        with (
            prof.stage(f"{name}: exact k-NN graph (distances + top-k → radii, hubs)"),
            progress_bar(progress, fs.n, f"k-NN {name}") as bar,
        ):
            full = Radii(engine, p, k, progress=bar.update if bar else None)
            return SetGraph(chosen, reason, {}, k_occurrence(full.neighbours(k), fs.n), full=full)
    impl = get_backend(chosen)(**(request.options or {}))
    x = fs.numpy_rows(keep_float16=impl.accepts_float16)
    impl.used_params = impl.resolve_params(*x.shape)
    with prof.stage(f"{name}: subspace construction ({chosen} build)"):
        impl.build(x, seed=request.seed, device=engine.device)
    with prof.stage(f"{name}: approximate k-NN graph ({chosen} search, k-occurrence)"):
        dist, idx, squared = impl.search(x, k + 1)
        dist, idx = finish_graph(np.asarray(dist), np.asarray(idx), k, squared)
    if engine.world:  # sharing ranks go on from this graph: one a backend did not reproduce must not blend
        _agree_on_graph(engine, name, chosen, idx)
    # Distances the backend measured on values exact in fp32 bound the radii without a float64 pass.
    measured = impl.measures_distances and not fs.is_float64
    return SetGraph(
        chosen, reason, impl.used_params, k_occurrence(idx, fs.n), dist=dist, idx=idx, index=impl, measured=measured
    )


def _agree_on_graph(engine: TileEngine, name: str, backend: str, idx: np.ndarray) -> None:
    """Every rank built the same graph of set ``name`` (their data were checked equal): else one error, on all."""
    digest = hashlib.blake2b(np.ascontiguousarray(idx).tobytes(), digest_size=8).hexdigest()
    try:
        engine.world.agree({f"{name}.graph": f"{backend} graph {digest}"})
    except DistributedError as exc:
        raise DistributedError(
            f"{exc} — the data were equal, so the {backend} backend built different graphs on the ranks; use "
            f"'ivf-pca', 'ivf-gemm' or 'exact' for a distributed call"
        ) from None


def hub_positions(name: str, occurrence: np.ndarray, t: int) -> torch.Tensor:
    """Positions of the hubs ``N_k ≥ t`` of set ``name`` (ValueError when there are none)."""
    hubs = np.flatnonzero(occurrence >= t)
    if hubs.size == 0:
        top = int(occurrence.max())
        raise ValueError(
            f"t: {name} has no hubs at t={t} (its largest k-occurrence is {top}); expected t ≤ {top}, use a lower t"
        )
    return torch.from_numpy(hubs)
