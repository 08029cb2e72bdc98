"""eprmetrics: exact and efficient precision & recall for generative models.

The layers, lowest first (each imports only from those below it; ``docs/architecture.md``):
``defaults``/``validation``/``profiling`` → ``engine`` → ``features`` → ``neighbours`` →
``inputs`` → ``report``/``result`` → ``estimators`` → ``manifold`` → ``api`` → ``integrations``/``curves`` →
``plots`` → ``demo`` → ``cli``.
"""

from .api import compute_epr, compute_pr
from .curves import PRCurve, pr_curve
from .engine import DistributedError
from .estimators import AuditWarning
from .features import register_extractor
from .manifold import Manifold
from .neighbours import knn_graph, register_backend
from .result import Audit, HubStatistics, KResult, Plan, Result, SideSampling

__version__ = "0.1.0"
__all__ = [
    "compute_pr",
    "compute_epr",
    "Manifold",
    "pr_curve",
    "PRCurve",
    "AuditWarning",
    "DistributedError",
    "Result",
    "KResult",
    "HubStatistics",
    "SideSampling",
    "Audit",
    "Plan",
    "knn_graph",
    "register_backend",
    "register_extractor",
    "__version__",
]
