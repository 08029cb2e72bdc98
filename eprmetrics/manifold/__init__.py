"""The reference manifold: the real side of P&R fitted once, saved to a folder that cannot lie, reused.

``model``: :class:`Manifold` (fit, radii, hubs, the pairing with a fake set); ``storage``: the folder
format (content hash, atomic save, checked load); ``npyfile``: ``.npy``/``.npz`` read only as far as
their headers are true.
"""

from .model import Manifold, extractor_record
from .storage import (
    MANIFOLD_FILE,
    MANIFOLD_VERSION,
    DestinationError,
    ExtractorRecord,
    ManifoldError,
    check_destination,
)

__all__ = [
    "Manifold",
    "MANIFOLD_VERSION",
    "MANIFOLD_FILE",
    "ManifoldError",
    "DestinationError",
    "ExtractorRecord",
    "extractor_record",
    "check_destination",
]
