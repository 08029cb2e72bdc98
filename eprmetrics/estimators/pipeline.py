"""What every estimator hands back (:class:`Outcome`) and how it becomes a :class:`~eprmetrics.result.Result`.

An estimator fills only what is its own (values per k, re-check count, its
typed parts); :func:`assemble` adds what the run context knows (sizes, device,
tiles, bound, precision, stages), so every method reports those alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
import torch

from ..profiling import passes_over
from ..result import Audit, HubStatistics, KResult, Plan, Result, SideSampling
from .context import RunContext
from .planner import actual_costs

__all__ = ["Outcome", "assemble", "hit_rate"]


@dataclasses.dataclass
class Outcome:
    """An estimator's own part of the result."""

    method: str
    per_k: dict[int, KResult]
    n_redecided: int
    realism: Optional[np.ndarray] = None
    plan: Optional[Plan] = None
    t: Optional[int] = None
    radii: Optional[str] = None
    hubs: Optional[dict[str, HubStatistics]] = None
    sampling: Optional[dict[str, SideSampling]] = None
    confidence: Optional[float] = None
    audit: Optional[Audit] = None


def hit_rate(hits: torch.Tensor) -> float:
    """Share of True in a 0/1 tensor, in float64."""
    return float(hits.double().mean())


def _backend_fields(plan: Optional[Plan]) -> dict[str, Any]:
    if plan is None or plan.backend is None:
        return {}
    return {"backend": plan.backend, "backend_reason": plan.reason, "backend_params": plan.params}


def assemble(ctx: RunContext, out: Outcome) -> Result:
    """The :class:`Result` of one call: the estimator's outcome plus the run's common facts."""
    head = next(iter(out.per_k.values()))
    if out.plan is not None:
        out.plan.actual = actual_costs(ctx.prof.stages)
        for name, fs in ctx.sets.items():  # memory-mapped inputs: bytes read and full passes over each
            got = passes_over(ctx.prof.stages, fs.data)
            if got is not None:
                out.plan.read[name], out.plan.passes[name] = got
    sampling = out.sampling or {}
    engine = ctx.engine
    return Result(
        precision=head.precision,
        recall=head.recall,
        k=head.k,
        n_real=ctx.real.n,
        n_fake=ctx.fake.n,
        dim=ctx.real.dim,
        per_k=out.per_k,
        method=out.method,
        strict=ctx.strict,
        density=head.density,
        coverage=head.coverage,
        realism=out.realism,
        device=str(ctx.device),
        memory_budget=engine.memory_budget,
        tile=engine.tile,
        n_redecided=out.n_redecided,
        error_bound=engine.error_bound,
        gemm_precision=engine.precision,
        t=out.t,
        radii=out.radii,
        hubs=out.hubs,
        precision_ci=sampling["precision"].interval if sampling else None,
        recall_ci=sampling["recall"].interval if sampling else None,
        confidence=out.confidence,
        sampling=out.sampling,
        audit=out.audit,
        plan=out.plan,
        stages=ctx.prof.stages,
        **_backend_fields(out.plan),
    )
