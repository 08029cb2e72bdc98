"""The thesis's hub method (eP&R, Eqs. 4.4–4.5), with its sampled audit.

``precision_hub = mean_{g ∈ H(G)} 1[∃ r ∈ H(R): ‖g − r‖ ≤ r_k(r; R)]`` and
symmetrically for recall, where ``H(S) = {x : N_k(x) ≥ t}`` are the hubs of
``S`` found from a (possibly approximate) k-NN graph and each hub's radius is
measured against the *full* set (hub-vs-all). Fast, but its error is
data-dependent and unknown, so a small sampled estimate with its interval rides
along (the audit) and an :class:`AuditWarning` fires when the hub value lies
outside it.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Optional, Union

import torch

from ..neighbours import GivenRadii, GraphRequest, Radii, SetGraph, build_graph, hub_positions, hub_stats
from ..result import Audit, HubStatistics, KResult
from .context import RunContext
from .membership import exact_membership
from .pipeline import Outcome, hit_rate
from .sampled import SampleRequest, SideEstimate, graph_plan, sample_both, side_sampling

__all__ = ["HubSpec", "run_hubness", "hub_statistics", "AuditWarning", "RADII_MODES"]

RADII_MODES = ("exact", "ann")
# Frames from the warning up to the user's call:
# _audit ← run_hubness ← lambda ← RunContext.run ← compute_epr ← caller.
_WARN_STACKLEVEL = 6


class AuditWarning(UserWarning):
    """The hub-method value lies outside the interval of its sampled audit."""


@dataclasses.dataclass(frozen=True)
class HubSpec:
    """The hub method's options (see :func:`eprmetrics.compute_epr`); ``audit`` = queries per set, 0 for none."""

    k: int
    t: int
    backend: str
    radii: str
    backend_options: Optional[dict[str, Any]]
    audit: int
    confidence: float
    screen: object = "auto"  # the audit's decisions: see SampleRequest.screen


def _hub_radii(ctx: RunContext, name: str, g: SetGraph, hubs: torch.Tensor, spec: HubSpec) -> Union[Radii, GivenRadii]:
    """Radii of the hubs of one set against the full set: from the exact pass, a hub-vs-all pass, or the graph."""
    p, engine = ctx.prepared[name], ctx.engine
    if g.full is not None:
        return g.full.restrict(hubs)
    if spec.radii == "exact":
        with (
            ctx.stage(f"{name}: hub-vs-all distances + top-k → radii"),
            ctx.bar(hubs.numel(), f"hub radii {name}") as update,
        ):
            return Radii(engine, p, spec.k, progress=update, owners=engine.subset(p, hubs), owner_ids=hubs)
    assert g.dist is not None  # an ANN graph keeps the distances of the k found
    r2 = torch.from_numpy(g.dist[hubs.cpu().numpy(), spec.k - 1]).to(engine.device, torch.float64) ** 2
    return GivenRadii(engine.subset(p, hubs), {spec.k: r2})


def _share_hub_radii(
    ctx: RunContext,
    graphs: dict[str, SetGraph],
    hubs: dict[str, torch.Tensor],
    hub_radii: dict[str, Union[Radii, GivenRadii]],
    k: int,
) -> None:
    """The audit reuses the hub-vs-all pass: the hubs' true radii need no second row each."""
    for name, g in graphs.items():
        radii = hub_radii[name]
        if g.full is None and isinstance(radii, Radii):
            true2 = radii.exact2(k, torch.arange(hubs[name].numel(), device=ctx.device))
            g.upper(ctx.engine, ctx.prepared[name], k).set_true(hubs[name], true2)


def hub_statistics(g: SetGraph, t: int) -> HubStatistics:
    """The hubs ``N_k ≥ t`` of one set's graph, with the backend that found it and why."""
    stats = hub_stats(g.occurrence, t)
    return HubStatistics(
        n_hubs=stats.n_hubs,
        fraction=stats.fraction,
        backend=g.backend,
        reason=g.reason,
        params=g.params,
        max_k_occurrence=int(g.occurrence.max()),
    )


def _audit(kr: KResult, est: dict[str, SideEstimate], confidence: float) -> Audit:
    outside = [
        (side, getattr(kr, side), e.estimate) for side, e in est.items() if not e.estimate.contains(getattr(kr, side))
    ]
    if outside:
        detail = "; ".join(
            f"{side} {v:.4f} vs sampled {e.value:.4f} [{e.interval[0]:.4f}, {e.interval[1]:.4f}]"
            for side, v, e in outside
        )
        warnings.warn(
            f"eP&R (hubness) lies outside the {100 * confidence:.0f}% interval of its sampled audit: "
            f"{detail}. Use compute_epr(method='sampled') for an estimate with an interval, "
            f"or compute_pr for exact values.",
            AuditWarning,
            stacklevel=_WARN_STACKLEVEL,
        )
    return Audit(
        confidence=confidence,
        precision=side_sampling(est["precision"]),
        recall=side_sampling(est["recall"]),
        consistent=not outside,
    )


def run_hubness(ctx: RunContext, spec: HubSpec) -> Outcome:
    """eP&R over the hubs of both sets, audited (run inside :meth:`RunContext.run`)."""
    request = GraphRequest(spec.backend, spec.radii, spec.k, ctx.seed, spec.backend_options)
    graphs = {
        name: ctx.known_graph(name, spec.k)
        or build_graph(ctx.engine, fs, ctx.prepared[name], request, ctx.prof, ctx.progress)
        for name, fs in ctx.sets.items()
    }
    hubs = {name: hub_positions(name, g.occurrence, spec.t).to(ctx.device) for name, g in graphs.items()}
    hub_radii = {name: _hub_radii(ctx, name, g, hubs[name], spec) for name, g in graphs.items()}
    with ctx.stage("hub↔hub distances + ratios"), ctx.bar(hub_radii["real"].p.n, "hub↔hub") as update:
        member, _ = exact_membership(
            ctx.engine,
            hub_radii["real"],
            hub_radii["fake"],
            (spec.k,),
            strict=ctx.strict,
            density_coverage=False,
            progress=update,
        )
    m = member[spec.k]
    kr = KResult(k=spec.k, precision=hit_rate(m.precision_hits), recall=hit_rate(m.recall_hits))
    audit = None
    if spec.audit:
        _share_hub_radii(ctx, graphs, hubs, hub_radii, spec.k)
        est = sample_both(
            ctx,
            graphs,
            spec.k,
            SampleRequest(spec.audit, spec.confidence, False, "audit: ", option="audit", screen=spec.screen),
        )
        audit = _audit(kr, est, spec.confidence)
    all_exact = all(g.backend == "exact" for g in graphs.values())
    if all_exact and spec.radii == "ann":
        warnings.warn(
            f"radii: 'ann' has no effect here: the exact backend was used ({graphs['real'].reason}), so every "
            f"radius is exact; pass backend='ivf-gemm' (or another ANN backend) for radii from an ANN graph",
            UserWarning,
            stacklevel=_WARN_STACKLEVEL - 1,
        )
    return Outcome(
        "hubness",
        {spec.k: kr},
        sum(r.n_redecided for r in hub_radii.values()) + m.n_redecided,
        plan=graph_plan("hubness", graphs),
        t=spec.t,
        radii="exact" if all_exact else spec.radii,
        hubs={name: hub_statistics(g, spec.t) for name, g in graphs.items()},
        audit=audit,
    )
