"""DINOv2 features (CLS token after the final norm; timm ViTs): the feature space of dgm-eval and EDM2's FD_DINOv2.

``"dinov2"`` is ViT-L/14 (1024-d), the network of dgm-eval and EDM2; ``"dinov2-vits14"`` (384-d),
``"dinov2-vitb14"`` (768-d), ``"dinov2-vitl14"`` (1024-d) and ``"dinov2-vitg14"`` (1536-d) name
each size. The released weights are trained at 518×518; at 224×224 the position embedding is
resampled once, the way DINOv2 itself resamples it for a smaller input.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch
import torch.nn.functional as F

from ..validation import require
from .base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Extractor,
    ImageBatch,
    fit_state_dict,
    pretrained,
    register_extractor,
    weights_fingerprint,
    without_init,
)

__all__ = ["dinov2_extractor", "dinov2_preprocess", "dinov2_state_at_224", "VARIANTS"]

SIZE, PATCH, TAG = 224, 14, "lvd142m"
# variant → (timm architecture, feature width)
VARIANTS = {
    "vits14": ("vit_small_patch14_dinov2", 384),
    "vitb14": ("vit_base_patch14_dinov2", 768),
    "vitl14": ("vit_large_patch14_dinov2", 1024),
    "vitg14": ("vit_giant_patch14_dinov2", 1536),
}


def dinov2_preprocess(images: ImageBatch, device: torch.device) -> torch.Tensor:
    """uint8 images → [0, 1] → bicubic 224×224 (antialiased, PIL's kernel, clamped) → ImageNet mean/std.

    The aspect ratio is not kept (dgm-eval's ``Resize((224, 224))``).
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    out = []
    for x in [images] if isinstance(images, torch.Tensor) else list(images):
        x = x.to(device)
        x = (x[None] if x.ndim == 3 else x).float() / 255.0
        if x.shape[-2:] != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        out.append((x - mean) / std)
    return torch.cat(out)


def dinov2_state_at_224(state: dict) -> dict:
    """A DINOv2 state dict (timm's, or Meta's ``dinov2_vit*14_pretrain.pth``) for 224×224 inputs.

    Meta's ``mask_token`` (unused for features) is dropped and its ViT-g SwiGLU names become timm's;
    a position embedding for another grid (37×37 for the 518 px weights) is resampled to 16×16 as
    DINOv2 does at that input: bicubic, no antialiasing, scale factor (16 + 0.1) / 37.
    """
    state = {k.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2."): v for k, v in state.items()}
    state.pop("mask_token", None)
    pos, grid = state.get("pos_embed"), SIZE // PATCH
    if isinstance(pos, torch.Tensor) and pos.ndim == 3 and pos.shape[1] > 1:
        side = math.isqrt(pos.shape[1] - 1)
        if side * side == pos.shape[1] - 1 and side != grid:
            patches = pos[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
            scale = (grid + 0.1) / side
            patches = F.interpolate(patches, scale_factor=scale, mode="bicubic", align_corners=False, antialias=False)
            patches = patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)
            state["pos_embed"] = torch.cat([pos[:, :1], patches], dim=1)
    return state


def dinov2_extractor(weights: Optional[str] = None, variant: str = "vitl14", name: Optional[str] = None) -> Extractor:
    """timm's DINOv2 ``variant`` (``"vits14"``, ``"vitb14"``, ``"vitl14"``, ``"vitg14"``) at 224×224.

    ``weights`` = a state-dict file (timm's ``vit_*_patch14_dinov2.lvd142m`` or Meta's original
    checkpoint; see :func:`dinov2_state_at_224`), else timm's ``lvd142m`` weights from the Hugging
    Face hub (cache/download; without network, a one-line ValueError saying how to pass a file).
    Features: the CLS token of the final normed output, as ``torch.hub``'s DINOv2 returns it.
    """
    if variant not in VARIANTS:
        raise ValueError(f"dinov2: expected a variant in {sorted(VARIANTS)}, got {variant!r}")
    arch, dim = VARIANTS[variant]
    name = name or f"dinov2-{variant}"
    timm = require("timm", "dinov2", name, kind="extractor")
    source = f'timm.create_model("{arch}.{TAG}", pretrained=True)'
    net = without_init(lambda: timm.create_model(arch, pretrained=False, num_classes=0, img_size=SIZE))
    if weights is None:  # the 518 px network, its position embedding resampled for 224 px
        full = pretrained(
            name, lambda: timm.create_model(f"{arch}.{TAG}", pretrained=True), arch, f"{arch}.{TAG}", source
        )
        net.load_state_dict(dinov2_state_at_224(full.state_dict()))
    else:
        fit_state_dict(net, weights, name, origin=source, adapt=dinov2_state_at_224)
    return Extractor(name, net, dim, dinov2_preprocess, weights_fingerprint(weights, f"timm:{arch}.{TAG}@{SIZE}"))


for _variant, (_, _dim) in VARIANTS.items():
    _name = f"dinov2-{_variant}"
    register_extractor(_name, dim=_dim)(functools.partial(dinov2_extractor, variant=_variant, name=_name))
register_extractor("dinov2", dim=VARIANTS["vitl14"][1])(functools.partial(dinov2_extractor, name="dinov2"))
