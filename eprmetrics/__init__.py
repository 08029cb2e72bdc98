"""eprmetrics: exact and efficient precision & recall for generative models."""
from .api import compute_epr, compute_pr
from .result import KResult, Result

__version__ = "0.1.0"
__all__ = ["compute_pr", "compute_epr", "Result", "KResult", "__version__"]
