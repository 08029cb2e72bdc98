"""The reference manifold: the real side of P&R fitted once, saved to a folder that cannot lie, reused.

``model``: :class:`Manifold` (fit, radii, hubs, the pairing with a fake set); ``storage``: the folder
(atomic save, checked load of radii and features); ``meta``: ``manifold.json`` (format version, keys,
types, content hash). ``.npy``/``.npz`` files are read through :mod:`eprmetrics.npyfile`, only as far as
their headers are true.
"""

from .meta import MANIFOLD_FILE, MANIFOLD_VERSION, ManifoldError
from .model import Manifold, extractor_record
from .storage import DestinationError, ExtractorRecord, check_destination

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
