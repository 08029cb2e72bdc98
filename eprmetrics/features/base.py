"""The extractor contract and registry: uint8 RGB images in, float32 feature vectors out."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import os
import sys
from typing import Callable, Optional, Sequence, TypeVar, Union

import torch
from torch import nn

from ..engine.device import autocast_off, float32_default
from ..fileio import open_regular
from .resize import check_resize_mode, resize

__all__ = [
    "Extractor",
    "register_extractor",
    "get_extractor",
    "extractor_names",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "resize_batch",
    "imagenet_preprocess",
    "load_state_dict",
    "fit_state_dict",
    "without_init",
    "weights_fingerprint",
    "check_extractor",
    "extractor_dim",
    "extractor_revision",
    "pretrained",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_REGISTRY: dict[str, Callable[[Optional[str]], "Extractor"]] = {}
_DIMS: dict[str, int] = {}
_REVISIONS: dict[str, str] = {}

ImageBatch = Union[torch.Tensor, Sequence[torch.Tensor]]


def resize_batch(images: ImageBatch, size: int, device: torch.device, mode: str = "torch") -> torch.Tensor:
    """uint8 3×H×W images (a stacked batch or a list of different sizes) → float [0, 1] N×3×size×size.

    Bilinear, no antialiasing, in ``mode``: ``"torch"`` (``F.interpolate(align_corners=False)``) or
    ``"tf1"`` (TensorFlow 1.x, as torch-fidelity's VGG-16); see :mod:`.resize`.
    """
    check_resize_mode(mode)
    items = [images] if isinstance(images, torch.Tensor) else list(images)
    out = []
    for x in items:
        x = x.to(device)
        if x.ndim == 3:
            x = x[None]
        out.append(resize(x.float() / 255.0, (size, size), mode))
    return torch.cat(out)


def imagenet_preprocess(size: int, mode: str = "torch") -> Callable[[ImageBatch, torch.device], torch.Tensor]:
    """uint8 images → bilinear ``size``×``size`` in ``mode`` (see :func:`resize_batch`) → ImageNet mean/std."""
    check_resize_mode(mode)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)  # float32 under any default dtype
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)

    def preprocess(images: ImageBatch, device: torch.device) -> torch.Tensor:
        return (resize_batch(images, size, device, mode) - mean.to(device)) / std.to(device)

    return preprocess


class Extractor:
    """A feature network with its preprocessing.

    Args:
        name: registry name or ``"custom"``.
        module: the network (put in eval mode; its parameters are not trained).
        dim: feature dimension.
        preprocess: uint8 image batch → network input on a device.
        weights_id: what identifies the weights (for the feature cache).
    """

    def __init__(
        self,
        name: str,
        module: nn.Module,
        dim: Optional[int],
        preprocess: Callable[[ImageBatch, torch.device], torch.Tensor],
        weights_id: str,
    ) -> None:
        self.name, self.module, self.dim, self.preprocess, self.weights_id = (
            name,
            module.eval(),
            dim,
            preprocess,
            weights_id,
        )

    def to(self, device: torch.device) -> "Extractor":
        self.module.to(device)
        return self

    @torch.inference_mode()
    def __call__(self, images: ImageBatch, device: torch.device) -> torch.Tensor:
        """float32 N×D features of ``images``, computed in the network's own dtype (float32 as built).

        Autocast is switched off (a host's bf16/fp16 autocast, e.g. Lightning's ``bf16-mixed``, would
        silently change the features), the default dtype is float32 while it runs (tensors the network
        makes on the fly) and the preprocessed input is cast to the network's dtype; :func:`get_extractor`
        builds a registry network in float32 whatever the host's default dtype.
        """
        with autocast_off(), float32_default():
            x = self.preprocess(images, device)
            dtype = next((p.dtype for p in self.module.parameters() if p.is_floating_point()), torch.float32)
            feats = self.module(x.to(dtype) if x.is_floating_point() else x)
        if feats.ndim != 2:
            feats = feats.flatten(1)
        return feats.float()


def register_extractor(name: str, dim: Optional[int] = None, revision: Optional[str] = None) -> Callable:
    """Decorator registering ``factory(weights: Optional[str]) -> Extractor`` under ``name``.

    ``dim``: the feature width, when it is known without building the network (lets inputs be checked
    against features of the other set before any extraction). ``revision``: a tag to change whenever what
    the extractor computes changes under the same name and weights (its resize, say): the feature cache
    keys on it (:func:`extractor_revision`), so features made before such a change are not mixed with new ones.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_extractor: expected a non-empty name, got {name!r}")

    def deco(factory: Callable[[Optional[str]], Extractor]) -> Callable[[Optional[str]], Extractor]:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"register_extractor: an extractor named {name!r} is already registered")
        _REGISTRY[name] = factory
        if dim is not None:
            _DIMS[name] = dim
        if revision is not None:
            _REVISIONS[name] = revision
        return factory

    return deco


def extractor_dim(name: str) -> Optional[int]:
    """The registered feature width of extractor ``name``, or None when it was not declared."""
    return _DIMS.get(name)


def extractor_revision(name: str) -> Optional[str]:
    """The registered revision tag of extractor ``name`` (see :func:`register_extractor`), or None."""
    return _REVISIONS.get(name)


def extractor_names() -> list[str]:
    return sorted(_REGISTRY)


def _custom_preprocess(images: ImageBatch, device: torch.device) -> torch.Tensor:
    items = [images] if isinstance(images, torch.Tensor) else list(images)
    shapes = {tuple(x.shape[-2:]) for x in items}
    if len(shapes) > 1:
        raise ValueError(f"extractor: a custom module needs images of one size, got sizes {sorted(shapes)}")
    return torch.cat([(x[None] if x.ndim == 3 else x).to(device).float() / 255.0 for x in items])


def check_extractor(extractor: Union[str, nn.Module], weights: Optional[Union[str, os.PathLike]] = None) -> None:
    """The cheap checks of :func:`get_extractor` (name, weights file), without building a network."""
    if isinstance(extractor, (Extractor, nn.Module)):
        return
    if not isinstance(extractor, str) or extractor not in _REGISTRY:
        raise ValueError(f"extractor: expected one of {extractor_names()} or an nn.Module, got {extractor!r}")
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights: no such file: {os.fspath(weights)!r}")


def get_extractor(extractor: Union[str, nn.Module], weights: Optional[Union[str, os.PathLike]] = None) -> Extractor:
    """An :class:`Extractor` by registry name, or wrapping a user ``nn.Module``.

    A user module receives float images in [0, 1], N×3×H×W at their stored size,
    and must return N×D features.
    """
    if isinstance(extractor, Extractor):
        return extractor
    if isinstance(extractor, nn.Module):
        if weights is not None:
            fit_state_dict(extractor, weights, type(extractor).__name__)
        return Extractor(
            "custom", extractor, None, _custom_preprocess, f"custom:{type(extractor).__name__}:{id(extractor)}"
        )
    check_extractor(extractor, weights)
    with float32_default():  # a registry network is float32 whatever the host's default dtype
        ext = _REGISTRY[extractor](None if weights is None else os.fspath(weights))
    ext.module.float()
    return ext


Net = TypeVar("Net", bound=nn.Module)


def _download_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError, HTTPException or RuntimeError) is a failed download, not a bug to show.

    A RuntimeError counts when it is a failed hash check (a truncated download) or was raised while
    handling a network error (open_clip wraps the hub's error in one).
    """
    if not isinstance(exc, RuntimeError):
        return True
    return "hash" in str(exc) or isinstance(exc.__cause__ or exc.__context__, (OSError, http.client.HTTPException))


def _innermost(exc: BaseException) -> BaseException:
    """The first error of the chain ``exc`` ends (``__cause__`` / ``__context__``): what the network said."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or exc.__context__) is not None and id(inner) not in seen:
        seen.add(id(inner))
        exc = inner
    return exc


def pretrained(
    name: str, build: Callable[[], Net], builder: str, tag: str = "IMAGENET1K_V1", source: Optional[str] = None
) -> Net:
    """``build()`` — a constructor fetching its ``tag`` weights — with a failed download as one line.

    Without network torchvision ends in a ``urllib.error.URLError`` traceback (timm and open_clip in
    the Hugging Face hub's errors); this says which extractor, what failed and how to pass a local
    file instead (a ValueError: exit status 2 on the command line). ``source``: the call that builds
    the network with its weights, to save its state dict from (default: the torchvision builder
    ``builder`` with ``weights=tag``). What the download prints on stdout goes to stderr (after a
    successful download) or nowhere (before the error): stdout stays the report's.
    """
    said = io.StringIO()  # torch.hub prints "Downloading: ..." on stdout, which may be a --json - report
    try:
        with contextlib.redirect_stdout(said):
            net = build()
    except (OSError, http.client.HTTPException, RuntimeError) as exc:
        if not _download_failure(exc):
            raise
        reason = getattr(exc, "reason", None) or _innermost(exc)  # URLError keeps the cause in .reason
        reason_text = " ".join(str(reason).split()) or "no reason given"
        source = source or f'torchvision.models.{builder}(weights="{tag}")'
        raise ValueError(
            f"{name}: cannot download the {tag} weights ({type(exc).__name__}: {reason_text}); on a machine "
            f"without network pass weights=PATH (--weights PATH on the command line), a state dict saved with "
            f"torch.save({source}.state_dict(), PATH)"
        ) from exc
    if said.getvalue():  # a download that worked: its note goes where progress goes
        sys.stderr.write(said.getvalue())
    return net


def load_state_dict(path: Union[str, os.PathLike]) -> dict:
    """The state dict in ``path`` (a bare one, or under a ``"state_dict"`` key), loaded on the CPU."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights: no such file: {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise ValueError(f"weights: cannot load a state dict from {path!r}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights: {path!r} does not hold a state dict")
    return state


def fit_state_dict(
    model: nn.Module,
    path: Union[str, os.PathLike],
    name: str,
    origin: Optional[str] = None,
    adapt: Optional[Callable[[dict], dict]] = None,
) -> nn.Module:
    """Load the state dict in ``path`` into ``model``; a ValueError naming the file when it does not fit.

    ``origin``: what the message says to save the state dict from (default: torchvision's ``name``);
    ``adapt``: applied to the loaded state dict first (other key names, another input size).
    """
    state = load_state_dict(path)
    if adapt is not None:
        state = adapt(state)
    origin = origin or f"torchvision's {name}"
    try:
        model.load_state_dict(state)
    except RuntimeError:
        expected, got = set(model.state_dict()), set(state)
        missing, unexpected = sorted(expected - got), sorted(got - expected)
        detail = (
            f"missing {len(missing)} keys such as {missing[:3]}, unexpected {len(unexpected)} such as {unexpected[:3]}"
        )
        if not missing and not unexpected:
            detail = "same keys, but some tensors have other shapes"
        raise ValueError(
            f"weights: {os.fspath(path)!r} does not fit {name} ({detail}); expected keys like "
            f"{sorted(expected)[:3]}: pass a state dict saved from {origin}"
        ) from None
    return model


def without_init(build: Callable[[], Net]) -> Net:
    """``build()`` without its random initialisation, for a network a strict ``load_state_dict`` then fills.

    Built on the meta device and given uninitialised CPU memory (random init of a ViT-L costs more
    than loading its weights). Built as usual instead when that fails (a constructor reading its
    tensors' values, as older timm releases do) or the network has buffers, which a state dict need
    not hold. A tensor kept outside parameters and buffers would stay on the meta device and fail loudly.
    """
    try:
        with torch.device("meta"):
            net = build()
    except (RuntimeError, NotImplementedError):  # e.g. Tensor.item() cannot be called on meta tensors
        return build()
    if any(True for _ in net.buffers()):
        return build()
    return net.to_empty(device="cpu")


# Content hashes of weights files, by what identifies one version of a file: device, inode, size, mtime and
# ctime (which no user command can set back). Each file is hashed once per process.
_WEIGHTS_HASHES: dict[tuple[int, ...], str] = {}


def weights_fingerprint(path: Optional[str], default: str) -> str:
    """Identify weights for the cache: a hash of the file's content (so weights replaced with ``cp -p``, same
    size and mtime, are new weights), or the default weights' name."""
    if path is None:
        return default
    with open_regular(path, "weights") as fh:
        st = os.fstat(fh.fileno())
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key not in _WEIGHTS_HASHES:
            h = hashlib.blake2b(digest_size=20)
            while chunk := fh.read(1 << 20):
                h.update(chunk)
            _WEIGHTS_HASHES[key] = h.hexdigest()
    return f"blake2b:{_WEIGHTS_HASHES[key]}"
