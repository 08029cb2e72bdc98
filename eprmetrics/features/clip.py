"""CLIP image embeddings (open_clip, OpenAI's weights), as clean-fid's and torch-fidelity's CLIP features.

``"clip"`` is ViT-B/32 (512-d), clean-fid's CLIP network (``clip_vit_b_32``; torch-fidelity's
``clip-vit-b-32``); ``"clip-vitb32"`` (512-d) and ``"clip-vitl14"`` (768-d) name each. The
feature is ``encode_image``: the projected image embedding, not L2-normalised.
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.nn.functional as F

from ..validation import require
from .base import (
    Extractor,
    ImageBatch,
    fit_state_dict,
    pretrained,
    register_extractor,
    weights_fingerprint,
    without_init,
)

__all__ = ["clip_extractor", "clip_preprocess", "clip_visual_state", "CLIP_MEAN", "CLIP_STD", "VARIANTS"]

SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# variant → (open_clip architecture, embedding width)
VARIANTS = {"vitb32": ("ViT-B-32", 512), "vitl14": ("ViT-L-14", 768)}


def _resize_crop(x: torch.Tensor) -> torch.Tensor:
    """N×3×H×W in [0, 1] → shorter side 224 (bicubic, antialiased, clamped) → centre 224×224."""
    h, w = x.shape[-2:]
    if (h, w) == (SIZE, SIZE):
        return x
    long = int(SIZE * max(h, w) / min(h, w))  # torchvision's Resize(224): the longer side truncated
    nh, nw = (SIZE, long) if h <= w else (long, SIZE)
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    top, left = int(round((nh - SIZE) / 2.0)), int(round((nw - SIZE) / 2.0))
    return x[..., top : top + SIZE, left : left + SIZE]


def clip_preprocess(images: ImageBatch, device: torch.device) -> torch.Tensor:
    """uint8 images → [0, 1] → CLIP's resize (shorter side to 224, bicubic) and centre crop → CLIP mean/std."""
    mean = torch.tensor(CLIP_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    out = []
    for x in [images] if isinstance(images, torch.Tensor) else list(images):
        x = x.to(device)
        out.append((_resize_crop((x[None] if x.ndim == 3 else x).float() / 255.0) - mean) / std)
    return torch.cat(out)


def clip_visual_state(state: dict) -> dict:
    """A whole CLIP state dict → its image tower's (``visual.*``, prefix removed); a tower's own is kept."""
    if any(key.startswith("visual.") for key in state):
        return {key[len("visual.") :]: value for key, value in state.items() if key.startswith("visual.")}
    return state


def clip_extractor(weights: Optional[str] = None, variant: str = "vitb32", name: Optional[str] = None) -> Extractor:
    """open_clip's ``variant`` (``"vitb32"``, ``"vitl14"``) image tower with QuickGELU (OpenAI's weights).

    ``weights`` = a state-dict file: the whole model's or its ``.visual``'s, saved from
    ``open_clip.create_model(ARCH, pretrained="openai")``; else open_clip's ``openai`` weights
    (cache/download; without network, a one-line ValueError saying how to pass a file).
    """
    if variant not in VARIANTS:
        raise ValueError(f"clip: expected a variant in {sorted(VARIANTS)}, got {variant!r}")
    arch, dim = VARIANTS[variant]
    name = name or f"clip-{variant}"
    open_clip = require("open_clip", "clip", name, kind="extractor")
    source = f'open_clip.create_model("{arch}", pretrained="openai")'
    if weights is None:
        build = functools.partial(open_clip.create_model, arch, pretrained="openai", force_quick_gelu=True)
        visual = pretrained(name, build, arch, f"{arch} openai", source).visual
    else:
        cfg = open_clip.get_model_config(arch)  # the architecture create_model builds, without its log lines
        cfg.pop("custom_text", None)
        visual = without_init(lambda: open_clip.CLIP(**dict(cfg, quick_gelu=True)).visual)
        fit_state_dict(visual, weights, name, origin=f"{source} (or its .visual)", adapt=clip_visual_state)
    return Extractor(name, visual, dim, clip_preprocess, weights_fingerprint(weights, f"open_clip:{arch}:openai"))


for _variant, (_, _dim) in VARIANTS.items():
    _name = f"clip-{_variant}"
    register_extractor(_name, dim=_dim)(functools.partial(clip_extractor, variant=_variant, name=_name))
register_extractor("clip", dim=VARIANTS["vitb32"][1])(functools.partial(clip_extractor, name="clip"))
