"""Images → features: VGG-16 fc2 (default), Inception-v3 pool3, DINOv2, CLIP, or any ``nn.Module``.

Example (a tiny custom module, so it runs offline):
    >>> import torch
    >>> from eprmetrics.features import extract_features
    >>> imgs = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    >>> extract_features(imgs, extractor=net, progress=False).shape
    (6, 5)
"""

from __future__ import annotations

import hashlib
import inspect
import os
import warnings
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from ..engine import resolve_device
from ..fileio import probe_writable
from ..profiling import tqdm_options
from ..validation import check_int
from . import clip, dinov2, inception, vgg16  # noqa: F401  (registration)
from .base import (
    Extractor,
    check_extractor,
    extractor_dim,
    extractor_names,
    extractor_revision,
    get_extractor,
    register_extractor,
    weights_fingerprint,
)
from .cache import cache_path, load_cached, save_atomic
from .images import IMAGE_EXTENSIONS, ImageSource, as_image_source, is_image_input
from .loader import LoadedImages, LoadReport, collate_loaded
from .reading import ImageError, ImageLimits

__all__ = [
    "extractor_identity",
    "extract_features",
    "get_extractor",
    "register_extractor",
    "extractor_names",
    "Extractor",
    "is_image_input",
    "as_image_source",
    "ImageSource",
    "IMAGE_EXTENSIONS",
    "ImageLimits",
    "ImageError",
]


# Module attributes torch keeps for itself; everything else a module holds may change what it computes.
_TORCH_STATE = {"_parameters", "_buffers", "_modules", "training", "_non_persistent_buffers_set"}


def module_identity(module: nn.Module, values: bool = True) -> Optional[str]:
    """What identifies a custom extractor for the feature cache, or None when it cannot be identified.

    The class (module and qualified name) and its source code, every sub-module's class and plain
    attributes (e.g. a slice width kept as an int), the state dict's names, shapes and dtypes, its bytes
    (``values=False``: not them — a weights file loaded strictly replaces every one, so the file's content
    identifies them, and another instance of the module given the same file gets the same key), and the
    bytes of buffers kept outside the state dict (``persistent=False``), which no weights file sets. Two
    instances that compute differently get different keys; an attribute without a stable ``repr`` (one
    showing a memory address) or a class whose source is not available gives None: do not cache.
    """
    h = hashlib.blake2b(digest_size=16)
    for name, sub in module.named_modules():
        cls = type(sub)
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            return None
        attrs = {k: v for k, v in vars(sub).items() if k not in _TORCH_STATE and not k.endswith("hooks")}
        text = repr(sorted(attrs.items()))
        if " at 0x" in text:
            return None
        h.update(f"{name}|{cls.__module__}.{cls.__qualname__}|{source}|{text}".encode())
    state = module.state_dict()
    for key, value in state.items():
        h.update(f"{key}|{tuple(value.shape)}|{value.dtype}|".encode())
        if values:
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    for key, value in module.named_buffers():
        if key not in state:
            h.update(f"buffer:{key}|{tuple(value.shape)}|{value.dtype}|".encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return "custom:" + h.hexdigest()


def extractor_identity(extractor: Union[str, nn.Module], weights: Optional[Union[str, os.PathLike]]) -> Optional[str]:
    """What identifies the network that makes features: registry name + weights identity, or a custom module's
    identity (None: it cannot be identified). The feature cache keys on it; a manifold records it."""
    if isinstance(extractor, nn.Module):
        ident = module_identity(extractor, values=weights is None)
        if ident is not None and weights is not None:
            ident += "|" + weights_fingerprint(os.fspath(weights), "")
        return ident
    ident = f"{extractor}|{weights_fingerprint(None if weights is None else os.fspath(weights), 'default')}"
    revision = extractor_revision(extractor)  # e.g. vgg16's resize: features of another revision never match
    return ident if revision is None else f"{ident}|{revision}"


def _cache_key(
    cache_dir: Optional[Union[str, os.PathLike]],
    extractor: Union[str, nn.Module],
    weights: Optional[Union[str, os.PathLike]],
) -> Optional[tuple[str, str, str]]:
    """The cache folder, the extractor's label and identity; None: no cache, or an extractor that cannot be
    identified (its features are not cached)."""
    if cache_dir is None:
        return None
    ident = extractor_identity(extractor, weights)
    if ident is None:
        warnings.warn(
            f"extractor: cannot identify {type(extractor).__name__} for the feature cache (its class source is not "
            f"available, or an attribute has no stable repr); its features are not cached",
            stacklevel=4,
        )
        return None
    label = extractor if isinstance(extractor, str) else "custom"
    return os.path.expanduser(os.fspath(cache_dir)), label, ident


def _entry(key: Optional[tuple[str, str, str]], images_fp: Optional[str]) -> Optional[str]:
    """The cache entry of images with fingerprint ``images_fp``; None without a key or a fingerprint (under
    ``on_error="skip"`` an image that cannot be read: such runs are not cached)."""
    if key is None or images_fp is None:
        return None
    return cache_path(key[0], images_fp, key[1], key[2])


def _extract(
    src: ImageSource, ext: Extractor, dev: torch.device, batch_size: int, num_workers: int, progress: Optional[bool]
) -> tuple[np.ndarray, LoadReport]:
    """The features of every readable image in ``src`` and what the workers reported (skipped images, the
    fingerprint of the bytes decoded); one warning for all skipped images, whatever the number of workers."""
    loader = torch.utils.data.DataLoader(
        LoadedImages(src),
        batch_size=batch_size,
        num_workers=num_workers,
        shuffle=False,
        collate_fn=collate_loaded,
        pin_memory=dev.type == "cuda",
    )
    from tqdm.auto import tqdm

    report = LoadReport(src)
    feats = []
    for batch in tqdm(loader, desc=f"features {src.name}", unit="batch", **tqdm_options(progress)):
        report.add(batch)
        if batch.images is not None:
            feats.append(ext(batch.images, dev).cpu())
    report.warn()
    if not feats:
        raise ValueError(f"{src.name}: none of the {len(src)} images could be read")
    return torch.cat(feats).numpy().astype(np.float32, copy=False), report


def _decoded_entry(
    key: Optional[tuple[str, str, str]], looked_up: Optional[str], report: LoadReport, name: str
) -> Optional[str]:
    """Where the features go in the cache: the entry of the bytes the workers decoded, which is the one looked
    up unless a file changed between the fingerprint's read and the decoding's (then a warning says so)."""
    decoded = _entry(key, report.fingerprint())
    if looked_up is None or decoded is None or decoded == looked_up:
        return looked_up
    warnings.warn(
        f"{name}: images changed while they were read (between the cache's fingerprint and decoding); the "
        f"features are those of the bytes decoded, and are cached under their content",
        stacklevel=4,
    )
    return decoded


def _keep(path: str, features: np.ndarray, skipped: int, name: str) -> None:
    """Write the cache entry — unless images were skipped (rows would not match images); a failed write of the
    cache warns (the features are still returned)."""
    if skipped:
        warnings.warn(f"cache_dir: the features of {name} are not cached: {skipped} images were skipped", stacklevel=3)
        return
    try:
        save_atomic(path, features, "cache_dir")
    except OSError as exc:
        warnings.warn(f"{exc}; the features are not cached", stacklevel=3)


def extract_features(
    images: Any,
    *,
    name: str = "images",
    extractor: Union[str, nn.Module] = "vgg16",
    weights: Optional[Union[str, os.PathLike]] = None,
    device: Union[str, torch.device] = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    cache_dir: Optional[str] = None,
    save_to: Optional[str] = None,
    on_error: str = "raise",
    progress: Optional[bool] = None,
    limits: Optional[ImageLimits] = None,
) -> np.ndarray:
    """Features of every image, in input order, as an N×D float32 array.

    Args:
        images: a folder (recursive), a ``.zip``, a list of image files, or a uint8
            tensor/array N×3×H×W or N×H×W×3. Grayscale and RGBA become RGB.
        name: used in messages (``"real"``/``"fake"``).
        extractor: ``"vgg16"`` (fc2 after ReLU, 4096-d), ``"inception"`` (pool3,
            2048-d), ``"dinov2"`` (ViT-L/14 CLS token, 1024-d; ``"dinov2-vits14"`` 384,
            ``"dinov2-vitb14"`` 768, ``"dinov2-vitl14"`` 1024, ``"dinov2-vitg14"`` 1536; needs
            ``eprmetrics[dinov2]``), ``"clip"`` (OpenAI CLIP ViT-B/32 image embedding, 512-d;
            ``"clip-vitb32"`` 512, ``"clip-vitl14"`` 768; needs ``eprmetrics[clip]``) or an
            ``nn.Module`` receiving float [0, 1] N×3×H×W.
        weights: a state-dict file for the extractor (offline use); default: the network's
            published weights via its library's cache/download (torchvision's IMAGENET1K_V1,
            timm's DINOv2 ``lvd142m``, open_clip's ``openai``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        batch_size, num_workers: DataLoader settings.
        cache_dir: reuse/keep features keyed by the images' content, the extractor and its weights' content;
            an entry is used only if it holds one finite float32 row per image (of the extractor's width);
            runs that skipped images are not cached.
        save_to: also write the features to this ``.npy`` path.
        on_error: ``"raise"`` (default) or ``"skip"`` unreadable images (one warning for all of them).
        progress: tqdm progress bar; None (default): on a terminal, for work longer than a few seconds.
        limits: bounds on each image file (:class:`ImageLimits`: bytes, pixels, side reduced to);
            default: ``ImageLimits.from_env()`` (``EPRMETRICS_MAX_IMAGE_BYTES`` / ``_PIXELS`` / ``_SIDE``).
            An :class:`ImageSource` passed as ``images`` keeps its own.

    Raises:
        ValueError: unreadable or refused image (naming it), empty folder, bad options.
        FileNotFoundError: missing path or weights file.
    """
    check_int(batch_size, "batch_size")
    check_int(num_workers, "num_workers", minimum=0)
    src = as_image_source(images, name, on_error, limits)
    check_extractor(extractor, weights)
    dev = resolve_device(device)
    if cache_dir is not None:  # a read-only or full place is one line now, not after the extraction
        probe_writable(os.path.expanduser(os.fspath(cache_dir)), "cache_dir", folder=True)
    if save_to:
        probe_writable(save_to, "save_features")
    key = _cache_key(cache_dir, extractor, weights)
    try:
        # under on_error="raise", the fingerprint's first read gives the one-line error of an unreadable image
        path = _entry(key, src.fingerprint() if key is not None else None)
        dim = extractor_dim(extractor) if isinstance(extractor, str) else None
        cached = None if path is None else load_cached(path, len(src), dim)
        if cached is not None:  # a hit builds no network and loads no weights
            if save_to:
                save_atomic(save_to, cached, "save_features")
            return cached
        ext = get_extractor(extractor, weights).to(dev)
        out, report = _extract(src, ext, dev, batch_size, num_workers, progress)
    finally:
        src.close()  # this process's zip handle, if any
    skipped = len(report.problems)
    if cache_dir is not None and (path is not None or skipped):
        path = _decoded_entry(key, path, report, name)
        _keep(path or "", out, skipped, name)
    if save_to:
        save_atomic(save_to, out, "save_features")
    return out
