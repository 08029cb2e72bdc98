"""Bilinear resizes of image batches, in the two conventions feature networks were published with.

* ``"tf1"`` — TensorFlow 1.x ``tf.image.resize_bilinear(align_corners=False)``: output pixel ``j`` reads
  the input at coordinate ``j · n_in / n_out`` (pixel corners, no half-pixel offset), interpolating
  between ``floor`` of it and the next pixel (the last pixel repeated past the edge). The resize of
  NVIDIA's VGG-16 for P&R (``vgg16.pt``, StyleGAN2-ADA) and of torch-fidelity's ``vgg16``
  (``interpolate_bilinear_2d_like_tensorflow1x``); the whole image shifts by up to half an input
  pixel against ``"torch"``, which moves VGG-16 fc2 features of 32–256 px images by up to ~13%.
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


def _tf1_axis(x: torch.Tensor, dim: int, n_out: int) -> torch.Tensor:
    """``x`` resized along ``dim`` to ``n_out`` the TF1 way (one axis: bilinear is separable)."""
    n_in = x.shape[dim]
    # Source coordinates as TensorFlow computes them: float32 index times the float32 scale. Exact
    # coordinates would move the weights by up to 1e-5 at 256 px, above the parity we test.
    pos = torch.arange(n_out, dtype=torch.float32) * torch.tensor(n_in / n_out, dtype=torch.float32)
    lo = pos.floor().to(torch.long).clamp_max(n_in - 1)
    hi = (lo + 1).clamp_max(n_in - 1)
    shape = [1] * x.ndim
    shape[dim] = n_out
    weight = (pos - lo.to(torch.float32)).to(device=x.device, dtype=x.dtype).view(shape)
    below = x.index_select(dim, lo.to(x.device))
    above = x.index_select(dim, hi.to(x.device))
    return below + (above - below) * weight


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Float N×C×H×W ``x`` resized bilinearly to ``size`` = (height, width) in ``mode`` (see the module)."""
    check_resize_mode(mode)
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "torch":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    if x.shape[-2] != size[0]:
        x = _tf1_axis(x, x.ndim - 2, size[0])
    if x.shape[-1] != size[1]:
        x = _tf1_axis(x, x.ndim - 1, size[1])
    return x
