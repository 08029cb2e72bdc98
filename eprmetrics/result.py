"""The :class:`Result` of a P&R computation, and the typed parts only some methods fill.

``Result`` is data only; its text rendering lives in :mod:`eprmetrics.report`.
The method-specific parts are small dataclasses: :class:`HubStatistics` (hub
method, per set), :class:`SideSampling` (sampled estimator and audit, per
side), :class:`Audit` and :class:`Plan`. They also read like the dictionaries
they replace (``res.hubs["real"]["fraction"]`` equals ``res.hubs["real"].fraction``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import Any, Optional

import numpy as np

from .fileio import atomic_write
from .profiling import Stage
from .report import metrics_table, render, stage_table

__all__ = ["KResult", "HubStatistics", "SideSampling", "Audit", "Plan", "Result", "METHODS"]

# Values of ``Result.method``: the argument that produced it.
METHODS = ("exact", "hubness", "sampled")


class _Fields(Mapping):
    """Read access by field name, so older ``part["name"]`` code keeps working."""

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self))  # type: ignore[arg-type]


@dataclasses.dataclass
class KResult:
    """Metric values for one neighbourhood size ``k``."""

    k: int
    precision: float
    recall: float
    density: Optional[float] = None
    coverage: Optional[float] = None


@dataclasses.dataclass(eq=False)
class HubStatistics(_Fields):
    """Hubs of one set (hub method): how many, which backend found the graph and why."""

    n_hubs: int
    fraction: float
    backend: str
    reason: str
    params: dict[str, Any]
    max_k_occurrence: int


@dataclasses.dataclass(eq=False)
class SideSampling(_Fields):
    """One side's sampled estimate (precision: fakes against real balls; recall: reals against fake balls)."""

    estimate: float
    interval: tuple[float, float]
    half_width: float
    sample_size: int
    population: int
    strata: int
    approximate_membership: Optional[float]  # mean of the ANN-based stratifier, when one was used
    true_radii_computed: int  # reference radii computed exactly on demand
    # queries stratified in phase one of a two-phase design (None: one phase, every query was stratified)
    phase_one: Optional[int] = None
    # The projection screen of the exact decisions: {"dims", "pilot_share", "used", "share"} (share: of the pairs
    # screened during the decisions, those that needed a float64 distance); None where it was not tried.
    screen: Optional[dict] = None
    # What the exact decisions cost: (query, ball) pairs inside an upper bound examined, and query scans over
    # every ball (a query counts once per round it took part in); None where not recorded (the exact path).
    candidates: Optional[int] = None
    scans: Optional[int] = None
    # The pilot that sized the sample (a target half-width): {"queries", "seconds"} of its exact decisions; None
    # where the sample size was a count.
    pilot: Optional[dict] = None


@dataclasses.dataclass(eq=False)
class Audit(_Fields):
    """The hub method's sampled check: both sides' estimates and whether the hub value lies inside."""

    confidence: float
    precision: SideSampling
    recall: SideSampling
    consistent: bool


@dataclasses.dataclass(eq=False)
class Plan(_Fields):
    """How a call was computed: the path taken and why, with the planner's predicted and the measured cost.

    ``path`` is what ran: ``"exact"``, ``"sampled"`` or ``"hubness"`` (``compute_epr(method="sampled")`` takes
    the exact path when the planner predicts it cheaper). ``predicted`` and ``actual`` are seconds per stage
    of the cost model; ``alternative`` the predicted total of the path not taken; ``revised`` the prediction
    made again once each side's pilot had run (its exact decisions extrapolated from the pilot's own time to
    the sample it sized: the up-front model cannot know how many true radii a query of these data needs).
    For memory-mapped inputs,
    ``read`` is the bytes asked for from each set's file during the call and ``passes`` those bytes ÷ the
    set's size (full passes over it; page-cache hits included, see :func:`eprmetrics.profiling.note_read`).
    """

    method: str
    backend: Optional[str]
    reason: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    path: str = ""
    backends: dict[str, str] = dataclasses.field(default_factory=dict)
    predicted: dict[str, float] = dataclasses.field(default_factory=dict)
    actual: dict[str, float] = dataclasses.field(default_factory=dict)
    alternative: dict[str, float] = dataclasses.field(default_factory=dict)
    revised: dict[str, float] = dataclasses.field(default_factory=dict)
    read: dict[str, int] = dataclasses.field(default_factory=dict)
    passes: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def predicted_total(self) -> Optional[float]:
        return sum(self.predicted.values()) if self.predicted else None

    @property
    def revised_total(self) -> Optional[float]:
        return sum(self.revised.values()) if self.revised else None

    @property
    def actual_total(self) -> float:
        return sum(self.actual.values())


@dataclasses.dataclass
class Result:
    """Outcome of :func:`eprmetrics.compute_pr` and :func:`eprmetrics.compute_epr`.

    ``precision``/``recall``/``density``/``coverage`` are those of the first
    ``k`` requested; ``per_k`` holds every ``k`` computed in the same pass.
    ``method`` is the method argument: ``"exact"``, ``"hubness"`` or ``"sampled"``.
    """

    precision: float
    recall: float
    k: int
    n_real: int
    n_fake: int
    dim: int
    per_k: dict[int, KResult]
    method: str = "exact"
    strict: bool = False
    density: Optional[float] = None
    coverage: Optional[float] = None
    realism: Optional[np.ndarray] = None
    device: str = "cpu"
    memory_budget: Optional[int] = None
    tile: Optional[int] = None
    n_redecided: int = 0
    error_bound: str = "probabilistic"
    gemm_precision: str = "fp32"  # the tiles' GEMM precision (decisions are exact at every one)
    # fast methods: hub threshold, backend (and why it was chosen), radii source, hub counts
    t: Optional[int] = None
    backend: Optional[str] = None
    backend_reason: Optional[str] = None
    backend_params: Optional[dict[str, Any]] = None
    radii: Optional[str] = None
    hubs: Optional[dict[str, HubStatistics]] = None
    # sampled estimator: intervals at ``confidence`` and per-side sampling details;
    # hub method: ``audit`` holds its sampled check
    precision_ci: Optional[tuple[float, float]] = None
    recall_ci: Optional[tuple[float, float]] = None
    confidence: Optional[float] = None
    sampling: Optional[dict[str, SideSampling]] = None
    audit: Optional[Audit] = None
    plan: Optional[Plan] = None
    stages: list[Stage] = dataclasses.field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Total wall time over all stages."""
        return sum(s.seconds for s in self.stages)

    @property
    def peak_rss(self) -> Optional[int]:
        return max((s.rss_peak for s in self.stages), default=None)

    @property
    def peak_device_memory(self) -> Optional[int]:
        peaks = [s.device_peak for s in self.stages if s.device_peak is not None]
        return max(peaks) if peaks else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (realism scores as a list)."""
        out = dataclasses.asdict(self)
        out["per_k"] = {str(k): dataclasses.asdict(v) for k, v in self.per_k.items()}
        out["stages"] = [s.to_dict() for s in self.stages]
        if self.realism is not None:  # JSON has no Infinity: a fake on a real point scores null, flagged
            finite = np.isfinite(self.realism)
            out["realism"] = [float(v) if ok else None for v, ok in zip(self.realism.tolist(), finite.tolist())]
            out["realism_infinite"] = np.flatnonzero(~finite).tolist()
        out["seconds"] = self.seconds
        out["peak_rss"] = self.peak_rss
        out["peak_device_memory"] = self.peak_device_memory
        return out

    def to_json(self, path: Optional[str] = None, *, indent: Optional[int] = 2, **kwargs: Any) -> str:
        """The result as strict JSON text (``json.dumps`` options pass through); also written to ``path`` if given.

        Realism scores that are infinite (a fake sample equal to a real one) are written as ``null`` and
        their indices listed in ``realism_infinite``. The file is written whole or not at all (a temporary file
        renamed over ``path``): a full disk or a read-only folder is an :class:`~eprmetrics.fileio.OutputError`
        naming ``path``, and leaves no partial file.
        """
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False, **kwargs)
        if path is not None:
            with atomic_write(path, "to_json path", "w") as fh:
                fh.write(text + "\n")
        return text

    def metrics_table(self) -> str:
        """Precision, recall, density and coverage per k, as a text table."""
        return metrics_table(self)

    def stage_table(self) -> str:
        """Wall time and peak memory per stage, as a text table."""
        return stage_table(self)

    def __str__(self) -> str:
        return render(self)
