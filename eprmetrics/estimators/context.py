"""The run context: everything one call shares, built once and passed as one argument.

A :class:`RunContext` holds the two feature sets, the tiled engine (device,
memory budget, rounding bound, GEMM precision, ranks), the convention
(``strict``), the seed, the profiler and the progress switch. :meth:`RunContext.run`
prepares both sets (on CUDA uploaded once when they fit; shared centre, norms) and runs an estimator under the GEMM
precision mode; on a CUDA out-of-memory error the engine re-runs the failed pass
alone with smaller tiles (:meth:`~eprmetrics.engine.TileEngine.run_pass`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator, Optional, TypeVar, Union

import torch

from ..defaults import DEFAULTS
from ..engine import (
    ERROR_BOUNDS,
    PRECISIONS,
    FeatureSet,
    Prepared,
    TileEngine,
    default_memory_budget,
    matmul_precision,
    norm_sums,
    resolve_device,
)
from ..neighbours import KnownRadii, RadiiState, SetGraph, k_occurrence
from ..profiling import Profiler, progress_bar
from ..validation import check_bool, check_choice, check_memory_budget

__all__ = ["EngineOptions", "RunContext"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """The validated options every method shares (see :func:`eprmetrics.compute_pr`)."""

    strict: bool = DEFAULTS["strict"]
    device: Union[str, torch.device] = DEFAULTS["device"]
    memory_budget: Optional[int] = DEFAULTS["memory_budget"]
    error_bound: str = DEFAULTS["error_bound"]
    precision: str = DEFAULTS["precision"]
    progress: Optional[bool] = None  # None: a bar on a terminal for work longer than a few seconds

    def __post_init__(self) -> None:
        check_bool(self.strict, "strict")
        check_memory_budget(self.memory_budget)
        check_choice(self.error_bound, "error_bound", ERROR_BOUNDS)
        check_choice(self.precision, "precision", tuple(PRECISIONS), "tf32 needs CUDA; bf16 runs anywhere")
        if self.progress is not None:
            check_bool(self.progress, "progress")
        object.__setattr__(self, "device", resolve_device(self.device))

    def engine(self, dim: int) -> TileEngine:
        """The tiled engine for ``dim``-dimensional sets: this device, its budget, bound and precision."""
        dev = torch.device(self.device)
        return TileEngine(
            dim,
            dev,
            self.memory_budget or default_memory_budget(dev),
            error_bound=self.error_bound,
            precision=self.precision,
            auto_budget=self.memory_budget is None,
        )


@dataclasses.dataclass
class RunContext:
    """What one call shares: sets, engine, convention, seed, profiler, progress."""

    real: FeatureSet
    fake: FeatureSet
    engine: TileEngine
    strict: bool
    seed: int
    progress: Optional[bool]
    prof: Profiler = dataclasses.field(default_factory=Profiler)
    prepared: dict[str, Prepared] = dataclasses.field(default_factory=dict)
    # Radii computed before this call (a reference manifold), per set name: no self pass for these sets.
    known: dict[str, RadiiState] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(
        cls,
        real: FeatureSet,
        fake: FeatureSet,
        options: EngineOptions,
        seed: int = 0,
        known: Optional[dict[str, RadiiState]] = None,
        prof: Optional[Profiler] = None,
    ) -> "RunContext":
        """A context for two validated sets: the engine sized for their dimension and the device's budget
        (``known``: radii computed before the call, see :attr:`known`; ``prof``: the call's profiler, when
        it already timed the inputs)."""
        engine = options.engine(real.dim)
        prof = prof or Profiler(engine.device)
        return cls(real, fake, engine, options.strict, seed, options.progress, prof, known=known or {})

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def sets(self) -> dict[str, FeatureSet]:
        return {"real": self.real, "fake": self.fake}

    def run(self, estimator: Callable[["RunContext"], T]) -> T:
        """``estimator(self)`` with both sets prepared, at the engine's GEMM precision, without autograd."""

        with matmul_precision(self.engine.precision), torch.inference_mode():
            try:
                with self.prof.stage("prepare (centre, norms)"):
                    sources = self.engine.resident(self.sets)  # on CUDA, uploaded once when they fit
                    center = self.engine.center_of(sources["real"])
                    self.prepared = {name: self.engine.prepare(fs, center) for name, fs in sources.items()}
                    if self.engine.world:  # sharing ranks compare their whole data: every row's norm, summed
                        self.engine.world.agree(norm_sums(self.prepared))
                return estimator(self)
            finally:
                self.engine.release()

    def known_radii(self, name: str) -> Optional[KnownRadii]:
        """The radii of set ``name`` restored from :attr:`known` (on this run's prepared set), if any."""
        state = self.known.get(name)
        return None if state is None else KnownRadii(self.engine, self.prepared[name], state)

    def known_graph(self, name: str, k: int) -> Optional[SetGraph]:
        """The exact k-NN graph of set ``name`` from :attr:`known` (every radius exact), if any."""
        radii = self.known_radii(name)
        if radii is None:
            return None
        occurrence = k_occurrence(radii.neighbours(k).cpu().numpy(), radii.p.n)
        return SetGraph("exact", "reference manifold: the exact graph fitted once", {}, occurrence, full=radii)

    def stage(self, name: str) -> Any:
        """A timed stage of this run (wall time, peak memory)."""
        return self.prof.stage(name)

    @contextlib.contextmanager
    def bar(self, total: int, desc: str) -> Iterator[Optional[Callable[[int], Any]]]:
        """A progress callback over ``total`` rows (None when progress is off)."""
        with progress_bar(self.progress, total, desc) as b:
            yield None if b is None else b.update
