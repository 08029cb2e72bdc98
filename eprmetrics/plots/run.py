"""The figures of one command-line run (``eprmetrics REAL FAKE --plot DIR``)."""

from __future__ import annotations

import os
import warnings
from typing import Any, Optional

import numpy as np

from ..defaults import DEFAULTS
from ..features import as_image_source, is_image_input
from ..fileio import probe_writable
from ..result import Result
from ..validation import check_folder, fail
from .figure import MISSING_LIBRARY, pyplot
from .grids import nearest_pairs, realism_grid
from .hubness import hubness_histogram

__all__ = ["PLOT_HELP", "plot_features_dir", "plot_run"]

PLOT_HELP = (
    "write figures of the run to DIR (created if missing) and print their paths: the k-occurrence (hubness) "
    "histogram; with image inputs and --exact the closest fakes beside their nearest reals (memorisation "
    "check), with --realism also the most and least realistic fakes (image features are kept in DIR as "
    "real.npy/fake.npy unless --save-features). Without matplotlib: a warning and no figures"
)


def _usable_folder(value: Any, name: str) -> str:
    """The figures' folder, created and probed (a temporary file written and removed there): a read-only or
    full place is refused before the run, not after it."""
    folder = check_folder(value, name)
    assert folder is not None
    probe_writable(folder, name, folder=True)
    return folder


def plot_features_dir(plot_dir: Optional[str], save_features: Optional[str], name: str = "plot_dir") -> Optional[str]:
    """Check (and create) the figures' folder before any work; the folder image features go to.

    That is ``save_features`` when given, else ``plot_dir`` (the figures need the features of image
    inputs), else None. Without matplotlib ``plot_dir`` is still checked, a warning says that no figure
    will be written, and only ``save_features`` is returned.
    """
    if plot_dir is None:
        return save_features
    folder = _usable_folder(plot_dir, name)
    if pyplot(quiet=True) is None:
        warnings.warn(f"{name}: {MISSING_LIBRARY}; the run goes on without figures", stacklevel=2)
        return save_features
    return save_features or folder


def plot_run(
    plot_dir: Optional[str], real: Any, fake: Any, result: Result, features_dir: Optional[str], device: Any = "auto"
) -> list[str]:
    """Write the figures that apply to a finished run into ``plot_dir``, print and return their paths.

    ``real``/``fake``: the run's inputs (feature files, or images whose features are in ``features_dir``
    as ``real.npy``/``fake.npy``). Always the hubness histogram; with image inputs and an exact run the
    nearest pairs; with realism scores also the realism grid. Nothing when ``plot_dir`` is None or
    matplotlib is missing.
    """
    if plot_dir is None or pyplot(quiet=True) is None:
        return []
    images = is_image_input(real) and is_image_input(fake)
    if images and features_dir is None:
        raise fail("features_dir", "the folder the image features were saved to", None, "see plot_features_dir")
    feats = [os.path.join(features_dir or "", f"{n}.npy") for n in ("real", "fake")] if images else [real, fake]
    # Under torchrun rank 0 draws alone, on this process: a plot never asks to share (distributed=False).
    backend = result.hubs["real"].backend if result.hubs else "auto"
    t = DEFAULTS["t"] if result.t is None else result.t
    hub_png = os.path.join(plot_dir, "hubness.png")
    written = [hubness_histogram(feats[0], feats[1], result.k, hub_png, t=t, backend=backend, device=device)]
    note = _image_plots_note(images, result, feats, real, fake)
    if note:
        print(f"plot: {note}")
    else:
        written.append(
            nearest_pairs(
                real, fake, feats[0], feats[1], os.path.join(plot_dir, "nearest_pairs.png"), k=result.k, device=device
            )
        )
        if result.realism is not None:
            written.append(realism_grid(fake, result.realism, os.path.join(plot_dir, "realism_grid.png")))
        else:
            print("plot: no realism grid: it needs --realism")
    paths = [str(p) for p in written if p]
    for p in paths:
        print(f"plot: {p}")
    return paths


def _image_plots_note(images: bool, result: Result, feats: list[Any], real: Any, fake: Any) -> str:
    """Why the image figures cannot be drawn for this run ("" when they can)."""
    if not images or result.method != "exact":
        return "no nearest pairs or realism grid: they need image inputs and --exact (the grid also --realism)"
    rows = [np.load(f, mmap_mode="r").shape[0] for f in feats]
    counts = [len(as_image_source(v, name)) for v, name in ((real, "real"), (fake, "fake"))]
    if rows != counts:
        return "no nearest pairs or realism grid: some images were skipped, so features and images differ in number"
    return ""
