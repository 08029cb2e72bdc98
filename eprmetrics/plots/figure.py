"""What every figure shares: matplotlib loaded lazily (one message when it is missing), output paths, saving."""

from __future__ import annotations

import math
import os
import textwrap
from typing import Any, Optional

from ..fileio import atomic_write, probe_writable
from ..validation import fail

__all__ = ["MISSING", "MISSING_LIBRARY", "pyplot", "check_png_path", "save_figure", "format_score", "wrap"]

MISSING_LIBRARY = "matplotlib is missing (pip install 'eprmetrics[bench]')"
MISSING = f"no plot: {MISSING_LIBRARY}"


def pyplot(quiet: bool = False) -> Optional[Any]:
    """``matplotlib.pyplot`` on the file-only Agg backend, or None (and :data:`MISSING` printed) without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        if not quiet:
            print(MISSING)
        return None
    return plt


def check_png_path(path: Any, name: str = "path") -> str:
    """An output image file: a path with an extension matplotlib knows (``.png``), not a folder, in a place
    that can be written to (probed, its folder created)."""
    if not isinstance(path, (str, os.PathLike)):
        raise fail(name, "a file path such as 'plots/hubness.png'", type(path).__name__, error=TypeError, show=False)
    text = os.path.expanduser(os.fspath(path))
    if os.path.isdir(text):
        raise fail(name, "a file path", text, "it is a folder: name a file in it, e.g. hubness.png")
    if not os.path.splitext(text)[1]:
        raise fail(name, "a file name with an extension such as .png", text)
    probe_writable(text, name)  # before the graphs are built: a read-only or full place is one line now
    return text


def save_figure(fig: Any, path: str, dpi: int = 120) -> str:
    """Write ``fig`` to ``path`` (its folder created if missing) whole or not at all (a temporary file renamed
    over it: a full disk leaves no partial image), close it, return the path."""
    import matplotlib.pyplot as plt

    kind = os.path.splitext(path)[1][1:].lower() or None
    try:
        with atomic_write(path, "plot", "wb") as fh:
            fig.savefig(fh, dpi=dpi, format=kind)
    finally:
        plt.close(fig)
    return path


def format_score(value: float) -> str:
    """A realism score or distance for a caption: three significant digits, ∞ for infinity."""
    return "∞" if math.isinf(value) else f"{value:.3g}"


def wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters, its own line breaks kept."""
    return "\n".join(textwrap.fill(line, width) for line in text.splitlines())
