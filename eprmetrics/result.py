"""The :class:`Result` of a P&R computation: values, counts, stage timings, memory."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Optional

import numpy as np

from .profiling import Stage

__all__ = ["KResult", "Result", "format_bytes"]


def format_bytes(n: Optional[int]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@dataclasses.dataclass
class KResult:
    """Metric values for one neighbourhood size ``k``."""

    k: int
    precision: float
    recall: float
    density: Optional[float] = None
    coverage: Optional[float] = None


@dataclasses.dataclass
class Result:
    """Outcome of :func:`eprmetrics.compute_pr` (and later ``compute_epr``).

    ``precision``/``recall``/``density``/``coverage`` are those of the first
    ``k`` requested; ``per_k`` holds every ``k`` computed in the same pass.
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
    # eP&R only: hub threshold, backend (and why it was chosen), radii source, hub counts
    t: Optional[int] = None
    backend: Optional[str] = None
    backend_reason: Optional[str] = None
    backend_params: Optional[dict[str, Any]] = None
    radii: Optional[str] = None
    hubs: Optional[dict[str, dict[str, Any]]] = None
    # sampled estimator: intervals at ``confidence`` and per-side sampling details;
    # hub method: ``audit`` holds its sampled check (same layout as ``sampling``)
    precision_ci: Optional[tuple[float, float]] = None
    recall_ci: Optional[tuple[float, float]] = None
    confidence: Optional[float] = None
    sampling: Optional[dict[str, Any]] = None
    audit: Optional[dict[str, Any]] = None
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
        out["realism"] = None if self.realism is None else self.realism.tolist()
        out["seconds"] = self.seconds
        out["peak_rss"] = self.peak_rss
        out["peak_device_memory"] = self.peak_device_memory
        return out

    def to_json(self, path: Optional[str] = None, **kwargs: Any) -> str:
        text = json.dumps(self.to_dict(), indent=2, **kwargs)
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text + "\n")
        return text

    def metrics_table(self) -> str:
        rows = ["    k  precision  recall   density  coverage"]
        for k, r in self.per_k.items():
            dens = "-" if r.density is None else f"{r.density:8.4f}"
            cov = "-" if r.coverage is None else f"{r.coverage:8.4f}"
            rows.append(f"{k:5d}  {r.precision:9.4f}  {r.recall:6.4f}  {dens:>8}  {cov:>8}")
        return "\n".join(rows)

    def stage_table(self) -> str:
        width = max([len(s.name) for s in self.stages] + [5])
        rows = [f"{'stage':<{width}}  {'time (s)':>9}  {'peak RSS':>10}  {'RSS growth':>10}  {'device peak':>11}"]
        for s in self.stages:
            rows.append(f"{s.name:<{width}}  {s.seconds:9.3f}  {format_bytes(s.rss_peak):>10}  "
                        f"{format_bytes(s.rss_growth):>10}  {format_bytes(s.device_peak):>11}")
        rows.append(f"{'total':<{width}}  {self.seconds:9.3f}")
        return "\n".join(rows)

    def __str__(self) -> str:
        conv = "strict (<)" if self.strict else "inclusive (≤)"
        head = (f"eprmetrics {self.method} P&R — n_real={self.n_real}, n_fake={self.n_fake}, dim={self.dim}, "
                f"{conv}, device={self.device}, tile={self.tile}, float64 re-checks={self.n_redecided}")
        lines = [head]
        if self.method == "epr":
            hubs = ", ".join(f"{name} {h['n_hubs']} ({100 * h['fraction']:.1f}%)" for name, h in (self.hubs or {}).items())
            lines.append(f"hubs at t={self.t}: {hubs}; backend={self.backend} ({self.backend_reason}); radii={self.radii}")
            if self.audit:
                a = self.audit
                lines.append("audit (sampled, {:.0f}%): ".format(100 * a["confidence"]) + "; ".join(
                    f"{side} {a[side]['estimate']:.4f} [{a[side]['interval'][0]:.4f}, {a[side]['interval'][1]:.4f}]"
                    f" from {a[side]['sample_size']} queries" for side in ("precision", "recall"))
                    + ("" if a["consistent"] else "  ← eP&R lies OUTSIDE: prefer method='sampled' or exact"))
        if self.method == "sampled":
            s = self.sampling or {}
            lines.append(f"sampled estimate, {100 * (self.confidence or 0):.0f}% intervals: precision "
                         f"[{self.precision_ci[0]:.4f}, {self.precision_ci[1]:.4f}] from "
                         f"{s['precision']['sample_size']} of {s['precision']['population']} fakes, recall "
                         f"[{self.recall_ci[0]:.4f}, {self.recall_ci[1]:.4f}] from "
                         f"{s['recall']['sample_size']} of {s['recall']['population']} reals; backend={self.backend}")
        return "\n".join(lines + [self.metrics_table(), "", self.stage_table()])
