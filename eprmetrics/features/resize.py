"""Bilinear resizes of image batches, in the two conventions feature networks were published with.

* ``"tf1"`` — TensorFlow 1.x ``tf.image.resize_bilinear(align_corners=False)``: output pixel ``j`` reads
  the input at coordinate ``j · n_in / n_out`` (pixel corners, no half-pixel offset), interpolating
  between ``floor`` of it and the next pixel (the last pixel repeated past the edge). The resize of
  torch-fidelity's ``vgg16`` (``interpolate_bilinear_2d_like_tensorflow1x``, tested equal) and, as a
  third-party port of it describes, of NVIDIA's ``vgg16.pt`` (StyleGAN2-ADA's P&R). The image shifts
  by up to half an input pixel against ``"torch"``, which moves VGG-16 fc2 features of 32–256 px
  images by up to ~13%.
* ``"torch"`` — PyTorch's ``F.interpolate(mode="bilinear", align_corners=False)`` (pixel centres at
  ``(j + ½) · n_in / n_out − ½``), no antialiasing: torchvision's own resize of tensors.

Neither antialiases a downscale. An axis already at the target size is left as it is.

Example:
    >>> import torch
    >>> from eprmetrics.features.resize import resize
    >>> resize(torch.tensor([[[[0.0, 4.0]]]]), (1, 4), "tf1")   # reads x at 0, 0.5, 1, 1.5
    tensor([[[[0., 2., 4., 4.]]]])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..validation import check_choice

__all__ = ["RESIZE_MODES", "check_resize_mode", "resize"]

RESIZE_MODES = ("tf1", "torch")


def check_resize_mode(mode: Any) -> str:
    """``mode`` if it is one of :data:`RESIZE_MODES`."""
    return check_choice(
        mode, "resize", RESIZE_MODES, "'tf1' as TensorFlow 1.x / torch-fidelity / NVIDIA, 'torch' as F.interpolate"
    )


def _tf1_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of ``n_out`` outputs along an axis of ``n_in`` pixels: lower and upper input pixel, upper's weight."""
    # Source coordinates as TensorFlow computes them: float32 index times the float32 scale. Exact
    # coordinates would move the weights by up to 1e-5 at 256 px, above the parity we test.
    pos = torch.arange(n_out, dtype=torch.float32) * torch.tensor(n_in / n_out, dtype=torch.float32)
    lo = pos.floor().to(torch.long).clamp_max(n_in - 1)
    return lo, (lo + 1).clamp_max(n_in - 1), pos - lo.to(torch.float32)


def _tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` resized the TF1 way, one axis after the other (bilinear is separable). Advanced indexing, not
    ``index_select``: the latter is ~10x slower along rows on the CPU."""
    if x.shape[-2] != size[0]:
        lo, hi, weight = (t.to(x.device) for t in _tf1_taps(x.shape[-2], size[0]))
        x = torch.lerp(x[..., lo, :], x[..., hi, :], weight.to(x.dtype)[:, None])
    if x.shape[-1] != size[1]:
        lo, hi, weight = (t.to(x.device) for t in _tf1_taps(x.shape[-1], size[1]))
        x = torch.lerp(x[..., lo], x[..., hi], weight.to(x.dtype))
    return x


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Float N×C×H×W ``x`` resized bilinearly to ``size`` = (height, width) in ``mode`` (see the module)."""
    check_resize_mode(mode)
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "torch":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    return _tf1(x, size)
