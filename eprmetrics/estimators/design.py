"""Stratified sampling of a finite population of 0/1 values: design, estimate, interval.

Precision and recall are means of a 0/1 membership over a finite set of
queries. The sampled estimator draws a simple random sample *without
replacement* inside each stratum (proportional allocation), observes the exact
membership of the drawn queries and reports the stratified mean with its
finite-population-corrected variance

``V = Σ_h W_h² (1 − s_h/N_h) S_h² / s_h``, ``W_h = N_h / N``,

and the normal interval ``estimate ± z·√V``. Drawing everything (``s_h = N_h``)
gives the exact mean and a zero-width interval.

**Two phases** (double sampling for stratification). Stratifying needs a label for every
unit, and on large sets labelling every query (an ANN search of each against the other set's
index) costs more than deciding the sample. A *phase one* of ``n′`` units drawn at random
from the ``N`` is labelled instead; the strata, their weights ``w_h = n′_h / n′`` and the
sample all come from it. The estimate stays unbiased and its variance gains the phase-one
term, the variance of a simple random mean of ``n′`` units:

``V = Σ_h w_h² (1 − s_h/n′_h) S_h² / s_h + (1/n′ − 1/N) S²``,
``S² ≈ Σ_h w_h S_h² + Σ_h w_h (ȳ_h − ȳ)²``

(within plus between strata). :func:`phase_one_size` sizes ``n′`` so that the second term
stays below :data:`PHASE_ONE_SHARE` of the targeted variance even for ``S² = 1/4``, the largest
a 0/1 population has; with ``n′ = N`` it vanishes and the design is the one-phase design above.

``S_h²`` is the sample variance of the stratum's 0/1 values computed from the
"plus-two" proportion ``(x_h + 1)/(s_h + 2)``: a stratum whose drawn values all
agree (common when strata are predictive) still contributes some variance
instead of none, which keeps the interval honest for rare disagreements.

Example:
    >>> import numpy as np
    >>> from eprmetrics.estimators.design import StratifiedSample
    >>> y = np.r_[np.ones(300), np.zeros(700)]            # true mean 0.3
    >>> strata = np.r_[np.zeros(400, int), np.ones(600, int)]
    >>> design = StratifiedSample(strata, seed=0)
    >>> idx = design.draw(1000)                              # everything: exact, zero width
    >>> est = design.estimate(idx, y[idx])
    >>> est.value, est.interval
    (0.3, (0.3, 0.3))
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["Estimate", "StratifiedSample", "z_value", "hubness_bins", "phase_one_size", "PILOT", "PHASE_ONE_SHARE"]

# Units per set of the pilot sample that sizes a half-width-targeted sample.
PILOT = 1000
# The largest share of a targeted variance that the phase one of a two-phase design may add.
PHASE_ONE_SHARE = 0.05
# Phase-one units per sampled unit when the sample size is given as a count (no target variance).
PHASE_ONE_PER_UNIT = 40


def z_value(confidence: float) -> float:
    """Two-sided normal quantile for a confidence level in (0, 1)."""
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def hubness_bins(occurrence: np.ndarray, k: int) -> np.ndarray:
    """Stratum label from a k-occurrence ``N_k``: 0 (anti-hubs), 1..k−1, k..2k−1, ≥ 2k (hubs)."""
    occ = np.asarray(occurrence)
    return np.digitize(occ, [1, k, 2 * k]).astype(np.int64)


def phase_one_size(size: Union[int, float], confidence: float, population: int) -> int:
    """Units to label in phase one (``population``: one phase).

    A target half-width ``h`` (a float) gives ``n′ = ⌈(1/4) / (PHASE_ONE_SHARE · (h/z)²)⌉``: the phase-one
    term of the variance is then at most that share of the target's (192,073 units at ``h = 0.01``, 95%).
    A count ``s`` gives ``n′ = PHASE_ONE_PER_UNIT · s``. A phase one that would leave out less than half of
    the population saves less than it adds to the variance: then every unit is labelled.

    Example:
        >>> phase_one_size(0.01, 0.95, 1_500_000), phase_one_size(0.01, 0.95, 300_000)
        (192073, 300000)
    """
    if isinstance(size, float):
        n1 = math.ceil(0.25 / (PHASE_ONE_SHARE * (size / z_value(confidence)) ** 2))
    else:
        n1 = PHASE_ONE_PER_UNIT * int(size)
    return n1 if 2 * n1 <= population else population


@dataclasses.dataclass
class Estimate:
    """A stratified estimate of a population mean and its confidence interval."""

    value: float
    half_width: float
    interval: tuple[float, float]
    std_error: float
    sample_size: int
    population: int
    confidence: float
    phase_one: Optional[int] = None  # units labelled in phase one (None: one phase, all of ``population``)

    def contains(self, x: float) -> bool:
        return bool(self.interval[0] <= x <= self.interval[1])


class StratifiedSample:
    """Proportional-allocation stratified sampling without replacement.

    Every stratum is shuffled once (seeded); a draw of size ``s`` takes the first
    ``s_h`` of each shuffled stratum, so a larger draw extends a smaller one
    (a pilot sample can be grown without re-sampling).

    Args:
        strata: (N,) integer stratum label of every unit; in a two-phase design, of every phase-one unit
            (indices returned by :meth:`draw` are then positions in the phase one).
        seed: seed of the shuffles (an int, or a sequence of ints as :func:`numpy.random.default_rng` takes).
        population: the population the phase one was drawn from at random (default: ``strata`` is all of it).

    Example (two phases):
        >>> rng = np.random.default_rng(1)
        >>> y = (rng.random(100_000) < 0.3).astype(float)      # the population (mean ≈ 0.3)
        >>> phase = np.sort(rng.choice(y.size, 20_000, replace=False))
        >>> design = StratifiedSample((y[phase] > 0).astype(int), seed=0, population=y.size)
        >>> idx = design.draw(400)                               # positions in the phase one
        >>> est = design.estimate(idx, y[phase][idx])
        >>> est.population, est.phase_one, est.contains(y.mean())
        (100000, 20000, True)
    """

    def __init__(self, strata: np.ndarray, seed: Union[int, Sequence[int]], population: Optional[int] = None) -> None:
        labels = np.asarray(strata)
        if labels.ndim != 1 or labels.size == 0:
            raise ValueError(f"strata: expected a non-empty 1-d array of labels, got shape {labels.shape}")
        self.N = labels.size
        self.population = self.N if population is None else int(population)
        if self.population < self.N:
            raise ValueError(f"population: expected at least the {self.N} labelled units, got {population}")
        uniq, inverse = np.unique(labels, return_inverse=True)
        rng = np.random.default_rng(seed)
        self.label = inverse.reshape(-1)  # stratum number of every unit
        self.units = [rng.permutation(np.flatnonzero(self.label == h)) for h in range(uniq.size)]
        self.sizes = np.array([u.size for u in self.units])
        self.weights = self.sizes / self.N

    def allocation(self, s: int) -> np.ndarray:
        """Units per stratum for a total of ``s``: proportional, largest remainders,
        at least 2 per stratum that has 2 (so every stratum's variance is estimable)."""
        s = int(min(max(s, 0), self.N))
        exact = self.weights * s
        alloc = np.floor(exact).astype(np.int64)
        order = np.argsort(-(exact - alloc), kind="stable")
        alloc[order[: s - alloc.sum()]] += 1
        alloc = np.maximum(alloc, np.minimum(2, self.sizes)) if s >= 2 * len(self.units) else alloc
        return np.minimum(alloc, self.sizes)

    def draw(self, s: int) -> np.ndarray:
        """Indices of a stratified sample of (about) ``s`` units, sorted."""
        alloc = self.allocation(s)
        return np.sort(np.concatenate([u[:a] for u, a in zip(self.units, alloc)]))

    def _tallies(self, index: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per stratum: units sampled and the sum of their 0/1 values."""
        h = self.label[np.asarray(index)]
        n_h = np.bincount(h, minlength=len(self.units)).astype(np.float64)
        x_h = np.bincount(h, weights=np.asarray(values, dtype=np.float64), minlength=len(self.units))
        return n_h, x_h

    def estimate(self, index: np.ndarray, values: np.ndarray, confidence: float = 0.95) -> Estimate:
        """Stratified estimate of the mean of a 0/1 population from the sampled ``values`` at ``index``."""
        n_h, x_h = self._tallies(index, values)
        if np.any(n_h == 0):
            raise ValueError("estimate: every stratum needs at least one sampled unit")
        value = float(np.sum(self.sizes / n_h * x_h) / self.N)  # Σ W_h·mean_h; exact when all are drawn
        var_h = self._var_h(x_h, n_h)
        var = float(np.sum(self.weights**2 * (1 - n_h / self.sizes) * var_h / n_h))
        var += self._phase_one_factor() * self._total_var(var_h, x_h / n_h, value)
        se = math.sqrt(max(var, 0.0))
        hw = z_value(confidence) * se
        lo, hi = max(0.0, value - hw), min(1.0, value + hw)
        phase_one = None if self.population == self.N else self.N
        return Estimate(value, hw, (lo, hi), se, int(n_h.sum()), self.population, confidence, phase_one)

    def _phase_one_factor(self) -> float:
        """``1/n′ − 1/N``: the weight of the population variance in a two-phase variance (0: one phase)."""
        return 1.0 / self.N - 1.0 / self.population

    def _total_var(self, var_h: np.ndarray, mean_h: np.ndarray, mean: float) -> float:
        """The population variance from the strata: within (``Σ w_h S_h²``) plus between (``Σ w_h (ȳ_h − ȳ)²``)."""
        return float(np.sum(self.weights * var_h) + np.sum(self.weights * (mean_h - mean) ** 2))

    @staticmethod
    def _var_h(x_h: np.ndarray, n_h: np.ndarray) -> np.ndarray:
        p = (x_h + 1) / (n_h + 2)  # plus-two proportion: never a zero variance from agreeing draws
        return p * (1 - p) * n_h / np.maximum(n_h - 1, 1)

    def size_for(self, half_width: float, index: np.ndarray, values: np.ndarray, confidence: float) -> int:
        """Total sample size whose interval is expected to have ``half_width``, from a pilot sample.

        With proportional allocation ``V(s) = A/s − A/n′ + (1/n′ − 1/N) S²``, ``A = Σ w_h S_h²``
        (one phase: ``n′ = N``). A target the phase one alone exceeds draws every phase-one unit.
        """
        n_h, x_h = self._tallies(index, values)
        seen = np.maximum(n_h, 1)
        var_h = self._var_h(x_h, seen)
        A = float(np.sum(self.weights * var_h))
        mean = float(np.sum(self.weights * x_h / seen))
        phase_one = self._phase_one_factor() * self._total_var(var_h, x_h / seen, mean)
        left = (half_width / z_value(confidence)) ** 2 - phase_one
        if left <= 0:
            return self.N
        return int(min(self.N, math.ceil(A / (left + A / self.N))))
