"""Image grids: generated images ranked by realism score, and each closest fake beside its nearest real."""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Union

import numpy as np
import torch

from ..features import ImageSource, as_image_source
from ..inputs import as_feature_set
from ..validation import check_int, fail
from .figure import check_png_path, format_score, pyplot, save_figure
from .search import NearestPairs, nearest_real_pairs

__all__ = ["realism_extremes", "realism_grid", "nearest_pairs"]

THUMBNAIL = 128  # longest side of a thumbnail, pixels
COLUMNS = 4  # thumbnails per row of a realism panel
PAIR_COLUMNS = 8  # pairs per row of the nearest-pairs figure


def _scores(realism: Any, count: Optional[int] = None) -> np.ndarray:
    if isinstance(realism, torch.Tensor):
        realism = realism.detach().cpu().numpy()
    try:
        scores = np.asarray(realism, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail("realism", "a 1-D array of scores (Result.realism)", type(realism).__name__, show=False) from None
    if scores.ndim != 1 or (count is not None and scores.size != count):
        expected = "a 1-D array of scores" if count is None else f"one score per image ({count} images)"
        raise fail("realism", expected, f"shape {scores.shape}", show=False)
    if np.isnan(scores).any():
        raise fail("realism", "scores that are not NaN", f"NaN at index {int(np.flatnonzero(np.isnan(scores))[0])}")
    return scores


def realism_extremes(realism: Any, n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``n`` highest realism scores (highest first) and of the ``n`` lowest (lowest first).

    ``n`` is capped at half the number of scores so that no image is in both; ties keep index order.
    """
    n = check_int(n, "n", fix="e.g. n=8")
    scores = _scores(realism)
    if scores.size < 2:
        raise fail("realism", "at least 2 scores (one per generated image)", scores.size)
    n = min(n, scores.size // 2)
    most = np.argsort(-scores, kind="stable")[:n]
    rest = np.setdiff1d(np.arange(scores.size), most)
    least = rest[np.argsort(scores[rest], kind="stable")][:n]
    return most, least


def _thumbnail(src: ImageSource, i: int) -> np.ndarray:
    """Image ``i`` as H×W×3 uint8, its longest side at most :data:`THUMBNAIL` pixels."""
    img = src[int(i)]
    if img is None:  # unreadable and skipped: a grey tile
        return np.full((32, 32, 3), 128, np.uint8)
    h, w = img.shape[-2:]
    if max(h, w) > THUMBNAIL:
        size = (max(1, round(h * THUMBNAIL / max(h, w))), max(1, round(w * THUMBNAIL / max(h, w))))
        img = torch.nn.functional.interpolate(img[None].float(), size=size, mode="area")[0].round().to(torch.uint8)
    return img.permute(1, 2, 0).cpu().numpy()


def _show(ax: Any, image: np.ndarray, caption: str) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(caption, fontsize=8)


def realism_grid(
    images: Any,
    realism: Any,
    path: Union[str, os.PathLike] = "realism_grid.png",
    n: int = 8,
    *,
    title: str = "",
) -> Union[str, bool]:
    """A PNG of the ``n`` most and the ``n`` least realistic generated images, in two labelled panels, the
    realism score (Kynkäänniemi et al., 2019; > 1: inside some real sample's k-NN ball) under each.

    Args:
        images: the generated images, in the order of the scores: a folder, ``.zip``, list of image
            files, or uint8 array/tensor (N×3×H×W, N×H×W×3, N×H×W) — what ``compute_pr`` accepts.
        realism: one score per image, e.g. ``compute_pr(real, fake, realism=True).realism``.
        path: the PNG to write; n: images per panel (at most half of them).

    Returns the path written, or False (and one message) when matplotlib is missing.
    """
    out = check_png_path(path)
    src = as_image_source(images, "images")
    scores = _scores(realism, len(src))
    most, least = realism_extremes(scores, n)
    plt = pyplot()
    if plt is None:
        return False
    cols = min(COLUMNS, len(most))
    rows = math.ceil(len(most) / cols)
    fig = plt.figure(figsize=(2 * 1.55 * cols + 0.4, 1.75 * rows + 1.0), constrained_layout=True)
    panels = fig.subfigures(1, 2, wspace=0.04)
    names = ("Most realistic: highest scores", "Least realistic: lowest scores")
    for panel, chosen, name in zip(panels, (most, least), names):
        panel.suptitle(name, fontsize=10, fontweight="bold")
        axes = np.atleast_1d(panel.subplots(rows, cols)).reshape(-1)
        for ax, i in zip(axes, chosen):
            _show(ax, _thumbnail(src, i), f"{format_score(float(scores[i]))}  (#{int(i)})")
        for ax in axes[len(chosen) :]:
            ax.axis("off")
    default = "Generated images by realism score (under each: score, #index; ≥ 1: inside a real sample's k-NN ball)"
    fig.suptitle(title or default, fontsize=11)
    return save_figure(fig, out)


def nearest_pairs(
    real_images: Any,
    fake_images: Any,
    real_features: Any,
    fake_features: Any,
    path: Union[str, os.PathLike] = "nearest_pairs.png",
    n: int = 8,
    *,
    k: int = 3,
    device: Any = "auto",
) -> Union[str, bool]:
    """A PNG of the ``n`` generated images closest to a real one, each above its nearest real: a memorisation
    check. Ranked by ``d / r_k``, the distance to the nearest real over that real's distance to its k-th
    nearest other real (see :func:`eprmetrics.plots.nearest_real_pairs`); ``d/r_k ≪ 1`` suggests a copy.

    Images as for :func:`realism_grid`; features (n × d arrays, ``.npy`` paths) in the images' order.
    Returns the path written, or False (and one message) when matplotlib is missing.
    """
    out = check_png_path(path)
    n, k = check_int(n, "n", fix="e.g. n=8"), check_int(k, "k", fix="e.g. k=3")
    sources = [as_image_source(v, name) for v, name in ((real_images, "real_images"), (fake_images, "fake_images"))]
    sets = [as_feature_set(v, name) for v, name in ((real_features, "real_features"), (fake_features, "fake_features"))]
    for src, fs in zip(sources, sets):
        if len(src) != fs.n:
            raise fail(fs.name, f"one row per image of {src.name} ({len(src)})", f"{fs.n} rows", show=False)
    plt = pyplot()
    if plt is None:
        return False
    pairs = nearest_real_pairs(sets[0], sets[1], n, k=k, device=device)
    fig = _pairs_figure(plt, sources, pairs)
    return save_figure(fig, out)


def _pairs_figure(plt: Any, sources: list[ImageSource], pairs: NearestPairs) -> Any:
    count = len(pairs.fake)
    cols = min(PAIR_COLUMNS, count)
    blocks = math.ceil(count / cols)
    size = (1.75 * cols + 0.5, 2 * 1.9 * blocks + 0.8)
    fig, axes = plt.subplots(2 * blocks, cols, figsize=size, squeeze=False, constrained_layout=True)
    for j in range(blocks * cols):
        top, bottom = axes[2 * (j // cols), j % cols], axes[2 * (j // cols) + 1, j % cols]
        if j >= count:
            top.axis("off"), bottom.axis("off")
            continue
        f, r = int(pairs.fake[j]), int(pairs.real[j])
        _show(top, _thumbnail(sources[1], f), f"fake #{f}")
        ratio = format_score(float(pairs.ratio[j]))
        _show(
            bottom, _thumbnail(sources[0], r), f"real #{r}\nd = {format_score(float(pairs.distance[j]))}, d/r = {ratio}"
        )
        if j % cols == 0:
            top.set_ylabel("generated", fontsize=9)
            bottom.set_ylabel("nearest real", fontsize=9)
    fig.suptitle(
        f"Memorisation check: the {count} generated images closest to a real one\n"
        f"ranked by d / r: distance to the nearest real ÷ that real's k-NN radius r (k = {pairs.k}); "
        f"d / r ≪ 1: a possible copy",
        fontsize=9.5,
    )
    return fig
