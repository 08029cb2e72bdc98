"""Text rendering of a :class:`~eprmetrics.result.Result`: headline, method lines, metric and stage tables.

Reads results by attribute only and imports nothing from :mod:`eprmetrics.result` (not even for
annotations), so the data classes can use it for ``str(result)`` without an import circle.
"""

from __future__ import annotations

from typing import Any, Optional

# A Result, read by attribute (annotated loosely: the result module imports this one).
ResultLike = Any

__all__ = ["format_bytes", "metrics_table", "stage_table", "render"]


def format_bytes(n: Optional[float]) -> str:
    """``1536`` → ``"1.5 KiB"``; None → ``"-"``."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def metrics_table(res: ResultLike) -> str:
    rows = ["    k  precision  recall   density  coverage"]
    for k, r in res.per_k.items():
        dens = "-" if r.density is None else f"{r.density:8.4f}"
        cov = "-" if r.coverage is None else f"{r.coverage:8.4f}"
        rows.append(f"{k:5d}  {r.precision:9.4f}  {r.recall:6.4f}  {dens:>8}  {cov:>8}")
    return "\n".join(rows)


def stage_table(res: ResultLike) -> str:
    width = max([len(s.name) for s in res.stages] + [5])
    rows = [f"{'stage':<{width}}  {'time (s)':>9}  {'peak RSS':>10}  {'RSS growth':>10}  {'device peak':>11}"]
    for s in res.stages:
        rows.append(
            f"{s.name:<{width}}  {s.seconds:9.3f}  {format_bytes(s.rss_peak):>10}  "
            f"{format_bytes(s.rss_growth):>10}  {format_bytes(s.device_peak):>11}"
        )
    rows.append(f"{'total':<{width}}  {res.seconds:9.3f}")
    return "\n".join(rows)


def _hub_lines(res: ResultLike) -> list[str]:
    hubs = ", ".join(f"{name} {h.n_hubs} ({100 * h.fraction:.1f}%)" for name, h in (res.hubs or {}).items())
    lines = [f"hubs at t={res.t}: {hubs}; backend={res.backend} ({res.backend_reason}); radii={res.radii}"]
    a = res.audit
    if a is not None:
        sides = "; ".join(
            f"{side} {s.estimate:.4f} [{s.interval[0]:.4f}, {s.interval[1]:.4f}] from {s.sample_size} queries"
            for side, s in (("precision", a.precision), ("recall", a.recall))
        )
        verdict = "" if a.consistent else "  ← eP&R lies OUTSIDE: prefer method='sampled' or exact"
        lines.append(f"audit (sampled, {100 * a.confidence:.0f}%): {sides}{verdict}")
    return lines


def _plan_line(res: ResultLike) -> str:
    plan = res.plan
    if plan is None or not plan.path or plan.path == res.method == "hubness":
        return ""
    predicted = "-" if plan.predicted_total is None else f"{plan.predicted_total:.3g} s"
    revised = "" if plan.revised_total is None else f", {plan.revised_total:.3g} s after the pilots"
    return f"plan: {plan.path} ({plan.reason}); predicted {predicted}{revised}, measured {plan.actual_total:.3g} s"


def _sampled_line(res: ResultLike) -> str:
    s = res.sampling or {}
    p, r = s["precision"], s["recall"]
    if res.plan is not None and res.plan.path == "exact":
        return (
            f"exact answer instead of a sample (cheaper here), zero-width intervals: precision "
            f"{p.estimate:.4f} over all {p.population} fakes, recall {r.estimate:.4f} over all "
            f"{r.population} reals"
        )
    return (
        f"sampled estimate, {100 * (res.confidence or 0):.0f}% intervals: precision "
        f"[{p.interval[0]:.4f}, {p.interval[1]:.4f}] from {p.sample_size} of {p.population} fakes, recall "
        f"[{r.interval[0]:.4f}, {r.interval[1]:.4f}] from {r.sample_size} of {r.population} reals; "
        f"backend={res.backend}{_phase_note(p.phase_one, r.phase_one)}{_screen_note(p.screen, r.screen)}"
    )


def _phase_note(fakes: Optional[int], reals: Optional[int]) -> str:
    """Where the strata came from a phase one of the queries (two-phase design), how many were stratified
    (``all``: that side's set was too small for a phase one)."""
    if fakes is None and reals is None:
        return ""
    counts = ["all" if n is None else f"{n:,}" for n in (fakes, reals)]
    return f"; strata from a phase one of {counts[0]} fakes / {counts[1]} reals"


def _screen_note(*sides: Optional[dict]) -> str:
    """How the exact decisions were made: through the projection screen (and what share of pairs it let
    through), or full rows because its pilot let too many pairs through."""
    used = [s for s in sides if s and s["used"]]
    if used:
        share = max(s["share"] or 0.0 for s in used)
        return f"; decisions screened by {used[0]['dims']} principal directions ({100 * share:.3f}% of pairs measured)"
    tried = [s for s in sides if s]
    if tried:
        return (
            f"; full rows (the screen's pilot let {100 * min(s['pilot_share'] for s in tried):.2f}% of pairs through)"
        )
    return ""


def render(res: ResultLike) -> str:
    """The whole text report (what ``str(result)`` and the CLI print)."""
    conv = "strict (<)" if res.strict else "inclusive (≤)"
    label = {"hubness": "eP&R (hubness)"}.get(res.method, res.method)
    lines = [
        f"eprmetrics {label} P&R — n_real={res.n_real}, n_fake={res.n_fake}, dim={res.dim}, {conv}, "
        f"device={res.device}, tile={res.tile}, float64 re-checks={res.n_redecided}"
    ]
    if res.method == "hubness":
        lines += _hub_lines(res)
    if res.method == "sampled":
        lines.append(_sampled_line(res))
    if _plan_line(res):
        lines.append(_plan_line(res))
    return "\n".join(lines + [metrics_table(res), "", stage_table(res)])
