"""Neighbours: k-NN radii, upper-bound radii, hubness, ANN backends and the one graph-building path.

Built on :mod:`eprmetrics.engine`; knows nothing of P&R estimators.
"""

from .ann import ANNBackend, available_backends, backend_names, get_backend, knn_graph, register_backend
from .graph import GraphRequest, SetGraph, build_graph, hub_positions
from .hubs import HubStats, hub_mask, hub_stats, k_occurrence
from .radii import KNN, GivenRadii, KnownRadii, Radii, RadiiState, exact_knn
from .upper import UpperRadii

__all__ = [
    "ANNBackend",
    "available_backends",
    "backend_names",
    "get_backend",
    "knn_graph",
    "register_backend",
    "GraphRequest",
    "SetGraph",
    "build_graph",
    "hub_positions",
    "HubStats",
    "hub_mask",
    "hub_stats",
    "k_occurrence",
    "KNN",
    "GivenRadii",
    "KnownRadii",
    "RadiiState",
    "Radii",
    "exact_knn",
    "UpperRadii",
]
