"""How far an fp32 squared distance can be from the float64 value, and float32 rounding helpers.

Every fp32 squared distance ``D`` from the norm expansion is within
``δ = c·(‖a‖ + ‖b‖)²`` of the float64 ``Σ (a_i − b_i)²`` of the centred data
(:func:`rounding_factor` gives ``c``). A ball test against ``r²`` is certain
when ``D < r² − δ`` or ``D > r² + δ``; in between, the engine re-decides in
float64 (``docs/exactness.md`` gives the whole argument).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "ERROR_BOUNDS",
    "PRECISIONS",
    "PROBABILISTIC_LAMBDA",
    "U32",
    "dot_gamma",
    "rounding_factor",
    "down32",
    "up32",
    "reach_norm",
]

U32 = 2.0**-24  # unit round-off of float32
_U64 = 2.0**-53

ERROR_BOUNDS = ("probabilistic", "worst-case")
# GEMM input precisions and their unit round-off: TF32 keeps 10 mantissa bits, bf16 7.
PRECISIONS = {"fp32": 0.0, "tf32": 2.0**-11, "bf16": 2.0**-8}
# λ of the probabilistic bound: a single dot product of length n exceeds it with
# probability ≤ 2n·exp(−λ²(1−u)²/2) < 1e-32 for n ≤ 1e5 (λ = 13).
PROBABILISTIC_LAMBDA = 13.0


def rounding_factor(dim: int, error_bound: str = "probabilistic", precision: str = "fp32") -> float:
    """``c`` with ``|D_fp32 − d²_fp64| ≤ c·(‖a‖ + ‖b‖)²`` for centred fp32 data.

    The dot product of length ``dim`` (plus the norm bias folded into the GEMM)
    contributes ``γ·(‖a‖+‖b‖)²``; rounding the norms and the two additions adds
    ``3u``, rounding the centred inputs to fp32 ``≈2u``, and the float64
    reference's own rounding a little more; a 5% margin goes on top.

    ``error_bound="worst-case"`` uses the deterministic ``γ_n = nu/(1−nu)``
    (Higham, *Accuracy and Stability*, Sec. 3.1), which holds for any summation
    order. It is ~√n/λ looser than needed in practice: at d = 4096 measured GEMM
    errors are below 2e-7·(‖a‖+‖b‖)², the worst-case bound is 2.6e-4.
    ``"probabilistic"`` (default) uses ``γ̃_n(λ) = exp(λ√n·u + nu²/(1−u)) − 1``
    (Higham & Mary, SIAM J. Sci. Comput. 2019, Thm. 3.1), which holds unless
    rounding errors conspire: with λ = 13 the chance that any one distance of a
    run with 1e15 pairs escapes it is below 1e-16.

    ``precision="tf32"|"bf16"``: the GEMM rounds its inputs to ``u_in`` (2⁻¹¹,
    2⁻⁸). Each product then errs by at most ``(2u_in + u_in²)|a_i b_i|``, so the
    cross term ``2a·b`` by ``(4u_in + 2u_in²)‖a‖‖b‖ ≤ (u_in + u_in²/2)(‖a‖+‖b‖)²``
    (Cauchy–Schwarz, ``4‖a‖‖b‖ ≤ (‖a‖+‖b‖)²``); a bf16 *output* adds
    ``2u_in·|a·b| ≤ u_in/2·(‖a‖+‖b‖)²``. Both are added in full (worst case):
    decisions stay exact, more of them go to the float64 re-check.
    """
    if error_bound not in ERROR_BOUNDS:
        raise ValueError(f"error_bound: expected one of {ERROR_BOUNDS}, got {error_bound!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {tuple(PRECISIONS)}, got {precision!r}")
    n = dim + 2
    gamma = dot_gamma(n, error_bound)
    gamma64 = n * _U64 / (1 - n * _U64)
    u_in = PRECISIONS[precision]
    reduced = u_in * (1 + u_in / 2) + (u_in / 2 if precision == "bf16" else 0.0)
    return (gamma + 8 * U32 + 4 * gamma64 + reduced) * 1.05


def dot_gamma(n: int, error_bound: str = "probabilistic") -> float:
    """``γ`` with ``|fl(a·b) − a·b| ≤ γ·Σ|a_i b_i|`` for an fp32 dot product of length ``n``, any summation
    order: Higham's deterministic ``γ_n`` (``"worst-case"``) or the probabilistic ``γ̃_n(λ)`` (default; see
    :func:`rounding_factor`)."""
    if error_bound not in ERROR_BOUNDS:
        raise ValueError(f"error_bound: expected one of {ERROR_BOUNDS}, got {error_bound!r}")
    if n * U32 >= 0.5:
        raise ValueError(f"dim={n - 2} is too large for a float32 error bound")
    if error_bound == "worst-case":
        return n * U32 / (1 - n * U32)
    return math.expm1(PROBABILISTIC_LAMBDA * math.sqrt(n) * U32 + n * U32**2 / (1 - U32))


def down32(x: torch.Tensor) -> torch.Tensor:
    """Largest float32 ≤ each float64 value."""
    y = x.float()
    return torch.where(y.double() > x, torch.nextafter(y, torch.full_like(y, -math.inf)), y)


def up32(x: torch.Tensor) -> torch.Tensor:
    """Smallest float32 ≥ each float64 value."""
    y = x.float()
    return torch.where(y.double() < x, torch.nextafter(y, torch.full_like(y, math.inf)), y)


def reach_norm(norm: torch.Tensor, r2: torch.Tensor, cap: float) -> torch.Tensor:
    """The largest centred norm of a point within ``√r2`` of a point of centred norm ``norm``, at most ``cap``
    (the other set's largest norm; also where ``r2`` is not a number).

    A point farther in norm than ``‖a‖ + r`` is farther than ``r`` from ``a`` (triangle inequality; ``1e-6``
    covers the norms' fp32 centring, relative ``~u``), so a ball test against ``r`` only meets points up to this
    norm, and their tile values err by at most ``c·(‖a‖ + reach)²``: on heavy-tailed sets, whose largest norm is
    tens of times the typical one (issue 31: 28×), far below the bound against ``cap``."""
    return torch.clamp_max((norm + r2.clamp_min(0).sqrt()) * (1 + 1e-6), cap).nan_to_num_(nan=cap)
