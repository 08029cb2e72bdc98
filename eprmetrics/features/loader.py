"""Images through a DataLoader: each item says what it is (an image, or why it could not be read), so the
parent process alone decides what happens — raise the one-line error, or skip with one summary warning —
however many worker processes read the images."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Optional

import torch

from .images import ImageSource
from .reading import ENV, ImageError

__all__ = ["Loaded", "Batch", "LoadedImages", "collate_loaded", "LoadReport"]


class Loaded(NamedTuple):
    """One image as a worker read it: the image, or why it could not be read; the label if it was reduced."""

    image: Optional[torch.Tensor]
    problem: Optional[str]
    reduced: Optional[str]
    digest: Optional[bytes]  # of the bytes decoded (see ImageSource.digest); None for a tensor or a problem


class Batch(NamedTuple):
    """A batch of what :class:`Loaded` items held: the images (stacked when of one size), problems, reductions."""

    images: Any
    problems: list[str]
    reduced: list[str]
    digests: list[Optional[bytes]]


class LoadedImages(torch.utils.data.Dataset):
    """``src`` as :class:`Loaded` items: a worker never warns or raises for an unreadable image."""

    def __init__(self, src: ImageSource) -> None:
        self.src = src

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> Loaded:
        try:
            image, reduced, digest = self.src.load(i)
        except ImageError as exc:
            return Loaded(None, str(exc), None, None)
        return Loaded(image, None, self.src.label(i) if reduced else None, digest)


def collate_loaded(items: list[Loaded]) -> Batch:
    images = [x.image for x in items if x.image is not None]
    problems = [x.problem for x in items if x.problem is not None]
    reduced = [x.reduced for x in items if x.reduced is not None]
    digests = [x.digest for x in items]
    if not images:
        return Batch(None, problems, reduced, digests)
    if len({tuple(x.shape) for x in images}) == 1:
        return Batch(torch.stack(images), problems, reduced, digests)
    return Batch(images, problems, reduced, digests)  # mixed sizes: each image is resized on its own


class LoadReport:
    """What the batches said, gathered in the parent: raises at the first problem under ``on_error="raise"``;
    :meth:`warn` gives one warning for all skipped images and one for all reduced ones."""

    def __init__(self, src: ImageSource) -> None:
        self.src = src
        self.problems: list[str] = []
        self.reduced: list[str] = []
        self.digests: list[Optional[bytes]] = []

    def add(self, batch: Batch) -> None:
        if batch.problems and self.src.on_error == "raise":
            raise ImageError(batch.problems[0])
        self.problems += batch.problems
        self.reduced += batch.reduced
        self.digests += batch.digests

    def fingerprint(self) -> Optional[str]:
        """The fingerprint of the bytes the batches decoded (:meth:`ImageSource.combine`); None when an image was
        not read or the source is a tensor (whose lookup key is already what was decoded)."""
        if len(self.digests) != len(self.src) or any(d is None for d in self.digests):
            return None
        return self.src.combine([d for d in self.digests if d is not None])

    def warn(self) -> None:
        name, n = self.src.name, len(self.src)
        if self.problems:
            first = self.problems[0].removeprefix(f"{name}: ")
            warnings.warn(
                f"{name}: {len(self.problems)} of {n} images could not be read and were skipped "
                f"(on_error='skip'); the first: {first}",
                stacklevel=3,
            )
        if self.reduced:
            side = self.src.limits.max_side
            warnings.warn(
                f"{name}: {len(self.reduced)} of {n} images longer than {side} pixels on a side were reduced to at "
                f"most {side} before feature extraction (the first: {self.reduced[0]}), so their features differ "
                f"slightly from a full-size resize; {ENV['max_side']}=N changes the bound",
                stacklevel=3,
            )
