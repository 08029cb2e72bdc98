"""The tiled distance engine: device policy, rounding bound, feature sets, tiles, reductions, ranks.

Everything above this layer computes distances only through :class:`TileEngine`;
nothing here knows about radii, hubs or P&R.
"""

from .agreement import DistributedError, call_options, fingerprint, norm_sums
from .device import default_memory_budget, matmul_precision, resolve_device
from .distributed import World, init
from .rounding import ERROR_BOUNDS, PRECISIONS, U32, down32, reach_norm, rounding_factor, up32
from .sets import FeatureSet, FeatureSubset, Prepared, read_rows
from .tiles import TileEngine, budget_for_tile, sqdist_block

__all__ = [
    "resolve_device",
    "default_memory_budget",
    "matmul_precision",
    "World",
    "init",
    "DistributedError",
    "call_options",
    "fingerprint",
    "norm_sums",
    "ERROR_BOUNDS",
    "PRECISIONS",
    "U32",
    "rounding_factor",
    "reach_norm",
    "down32",
    "up32",
    "FeatureSet",
    "FeatureSubset",
    "Prepared",
    "read_rows",
    "TileEngine",
    "budget_for_tile",
    "sqdist_block",
]
