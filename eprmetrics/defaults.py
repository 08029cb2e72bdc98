"""One mapping of defaults shared by the Python API and the CLI."""

from __future__ import annotations

from typing import Optional, TypedDict, Union


class _Defaults(TypedDict):
    """The type of every default, so that annotated parameters may take ``DEFAULTS[...]`` as their default."""

    k: int
    t: int
    strict: bool
    device: str
    memory_budget: Optional[int]
    density_coverage: bool
    realism: bool
    seed: int
    screen: Union[str, bool]
    error_bound: str
    precision: str
    backend: str
    radii: str
    method: str
    sample_size: float
    confidence: float
    audit: bool
    audit_size: int
    extractor: str
    batch_size: int
    num_workers: int
    on_error: str
    distributed_timeout: float


DEFAULTS: _Defaults = {
    "k": 3,
    "t": 3,
    "strict": False,
    "device": "auto",
    "memory_budget": None,
    "density_coverage": True,
    "realism": False,
    "seed": 0,
    "screen": "auto",
    "error_bound": "probabilistic",
    "precision": "fp32",
    "backend": "auto",
    "radii": "exact",
    "method": "sampled",
    "sample_size": 0.01,  # target 95% half-width of the sampled estimator's intervals
    "confidence": 0.95,
    "audit": True,
    "audit_size": 800,  # queries per set of the hub method's sampled audit: its cost stays within 15% of the run
    "extractor": "vgg16",
    "batch_size": 64,
    "num_workers": 0,
    "on_error": "raise",
    "distributed_timeout": 60.0,  # seconds a distributed call waits for every rank to join it
}

# Fraction of available host RAM a tiled pass may use when no budget is given,
# and the cap on it: large tiles buy nothing once GEMMs are a few thousand wide.
HOST_BUDGET_FRACTION = 0.125
HOST_BUDGET_CAP = 1 << 30
# Fraction of free CUDA memory a tiled pass may use when no budget is given.
CUDA_BUDGET_FRACTION = 0.5
# Both sets are uploaded to the GPU once, before the first pass, when they take at most this fraction
# of its free memory (the rest: ANN indexes and the tiles, sized per pass from what is left).
RESIDENT_FRACTION = 0.4
