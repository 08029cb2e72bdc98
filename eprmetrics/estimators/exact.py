"""Exact P&R (Kynkäänniemi et al., 2019), density & coverage and realism: radii of both sets, one cross pass.

Stages (thesis Sec. 4.5.3): real↔real and fake↔fake distances with a streaming
top-k give the radii; one real↔fake pass decides every membership for every k.
Decisions equal a float64 brute force (``docs/exactness.md``).
"""

from __future__ import annotations

import dataclasses
from typing import cast

from ..neighbours import Radii
from ..result import KResult
from .context import RunContext
from .membership import MembershipResult, exact_membership
from .pipeline import Outcome, hit_rate

__all__ = ["ExactSpec", "run_exact"]


@dataclasses.dataclass(frozen=True)
class ExactSpec:
    """What exact P&R computes: the k values (first is the headline) and the optional scores."""

    ks: tuple[int, ...]
    density_coverage: bool = True
    realism: bool = False


def _values(m: MembershipResult, k: int, n_fake: int) -> KResult:
    # prdc's order of operations, (1/k)·mean(counts), so the value equals its to the last bit
    density = None if m.density_counts is None else (1.0 / k) * (float(m.density_counts.sum()) / n_fake)
    coverage = None if m.coverage_hits is None else hit_rate(m.coverage_hits)
    return KResult(
        k=k, precision=hit_rate(m.precision_hits), recall=hit_rate(m.recall_hits), density=density, coverage=coverage
    )


def run_exact(ctx: RunContext, spec: ExactSpec) -> Outcome:
    """Exact values for every k of ``spec`` (run inside :meth:`RunContext.run`)."""
    radii: dict[str, Radii] = {}
    for name, p in ctx.prepared.items():
        if name in ctx.known:  # a reference manifold: its radii were computed once, before this call
            with ctx.stage(f"{name}: radii from the reference manifold (no {name}↔{name} pass)"):
                radii[name] = cast(Radii, ctx.known_radii(name))
            continue
        with ctx.stage(f"{name}↔{name} distances + top-k → radii"), ctx.bar(p.n, f"radii {name}") as update:
            radii[name] = Radii(ctx.engine, p, max(spec.ks), progress=update)
    with ctx.stage("real↔fake distances + ratios"), ctx.bar(ctx.real.n, "real↔fake") as update:
        member, realism = exact_membership(
            ctx.engine,
            radii["real"],
            radii["fake"],
            spec.ks,
            strict=ctx.strict,
            density_coverage=spec.density_coverage,
            realism_k=spec.ks[0] if spec.realism else None,
            progress=update,
        )
    per_k = {k: _values(member[k], k, ctx.fake.n) for k in spec.ks}
    n_redecided = sum(r.n_redecided for r in radii.values()) + sum(m.n_redecided for m in member.values())
    return Outcome("exact", per_k, n_redecided, realism=None if realism is None else realism.cpu().numpy())
