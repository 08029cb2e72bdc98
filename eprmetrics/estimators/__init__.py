"""Estimators: exact P&R, the thesis's hub method (audited) and the sampled estimator, on one run context.

Each takes a :class:`RunContext` and its own small spec and returns an
:class:`Outcome`; :func:`assemble` turns that into a :class:`~eprmetrics.result.Result`.
"""

from .context import EngineOptions, RunContext
from .design import Estimate, StratifiedSample, hubness_bins
from .exact import ExactSpec, run_exact
from .hubness import RADII_MODES, AuditWarning, HubSpec, hub_statistics, run_hubness
from .pipeline import Outcome, assemble
from .sampled import SampledSpec, SampleRequest, run_sampled

__all__ = [
    "EngineOptions",
    "RunContext",
    "Estimate",
    "StratifiedSample",
    "hubness_bins",
    "ExactSpec",
    "run_exact",
    "RADII_MODES",
    "AuditWarning",
    "HubSpec",
    "run_hubness",
    "hub_statistics",
    "Outcome",
    "assemble",
    "SampledSpec",
    "SampleRequest",
    "run_sampled",
    "FAST_METHODS",
]

# ``compute_epr``'s methods.
FAST_METHODS = ("hubness", "sampled")
