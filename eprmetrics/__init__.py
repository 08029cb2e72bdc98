"""eprmetrics: exact and efficient precision & recall for generative models."""
from .api import compute_pr
from .epr import AuditWarning, compute_epr
from .result import KResult, Result

__version__ = "0.1.0"
__all__ = ["compute_pr", "compute_epr", "AuditWarning", "Result", "KResult", "__version__"]
