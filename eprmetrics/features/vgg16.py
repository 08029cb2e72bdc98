"""VGG-16 fc2 features (4096-d, after ReLU): the feature space of the P&R paper and StyleGAN2-ADA."""

from __future__ import annotations

from typing import Optional, cast

import torch
from torch import nn

from ..validation import require
from .base import Extractor, fit_state_dict, imagenet_preprocess, pretrained, register_extractor, weights_fingerprint

__all__ = ["vgg16_extractor"]


class _VGGFc2(nn.Module):
    def __init__(self, vgg: nn.Module) -> None:
        super().__init__()
        self.features, self.avgpool = cast(nn.Module, vgg.features), cast(nn.Module, vgg.avgpool)
        self.fc = cast(nn.Sequential, vgg.classifier)[:5]  # Linear, ReLU, Dropout, Linear, ReLU → fc2 after ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


FC2_DIM = 4096
# The preprocessing below; part of the feature cache's key, so features made with the earlier
# PyTorch-style resize (eprmetrics < this revision) are not mixed with these.
REVISION = "resize=tf1"


@register_extractor("vgg16", dim=FC2_DIM, revision=REVISION)
def vgg16_extractor(weights: Optional[str] = None) -> Extractor:
    """torchvision VGG-16; ``weights`` = a state-dict file, else torchvision's IMAGENET1K_V1 (cache/download;
    without network, a one-line ValueError saying how to pass a file).

    Preprocessing: uint8 RGB → [0, 1] → bilinear resize to 224×224 the TensorFlow 1.x way (``"tf1"`` in
    :mod:`.resize`; not PyTorch's ``align_corners=False``) → ImageNet mean/std. With the same weights the
    features equal torch-fidelity's ``vgg16`` ``fc2_relu`` at every input size (tested to 1e-5). NVIDIA's
    ``vgg16.pt`` (StyleGAN2-ADA) resizes the same way as a port of it describes, with NVIDIA's weights
    (not compared: it cannot be run offline).
    """
    models = require("torchvision.models", "vision", "vgg16", kind="extractor")
    if weights is None:
        vgg = pretrained("vgg16", lambda: models.vgg16(weights=models.VGG16_Weights.IMAGENET1K_V1), "vgg16")
    else:
        vgg = fit_state_dict(models.vgg16(weights=None), weights, "vgg16")
    return Extractor(
        "vgg16",
        _VGGFc2(vgg),
        FC2_DIM,
        imagenet_preprocess(224, mode="tf1"),
        weights_fingerprint(weights, "torchvision:VGG16_Weights.IMAGENET1K_V1"),
    )
