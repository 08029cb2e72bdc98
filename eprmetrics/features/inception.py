"""Inception-v3 pool3 features (2048-d), torchvision architecture.

Differences from the TensorFlow FID network (``pt_inception-2015-12-05``): torchvision's
ImageNet weights (not the 2015 TF graph's), 1000 classes instead of 1008, and torchvision's
resize; features are therefore not interchangeable with FID statistics computed by
clean-fid or torch-fidelity's ``inception-v3-compat``.
"""

from __future__ import annotations

from typing import Optional

from torch import nn

from ..validation import require
from .base import (
    Extractor,
    fit_state_dict,
    imagenet_preprocess,
    load_state_dict,
    pretrained,
    register_extractor,
    weights_fingerprint,
)

__all__ = ["inception_extractor"]


POOL3_DIM = 2048


@register_extractor("inception", dim=POOL3_DIM)
def inception_extractor(weights: Optional[str] = None) -> Extractor:
    """torchvision Inception-v3 with ``fc`` removed: the 2048-d average-pooled (pool3) features.

    ``weights`` = a state-dict file, else torchvision's IMAGENET1K_V1 (cache/download; without
    network, a one-line ValueError saying how to pass a file).
    """
    models = require("torchvision.models", "vision", "inception", kind="extractor")
    if weights is None:
        default = models.Inception_V3_Weights.IMAGENET1K_V1
        net = pretrained("inception", lambda: models.inception_v3(weights=default), "inception_v3")
    else:
        state = load_state_dict(weights)
        aux = any(key.startswith("AuxLogits.") for key in state)
        net = models.inception_v3(weights=None, aux_logits=aux, init_weights=False)
        fit_state_dict(net, weights, "inception")
    net.aux_logits, net.AuxLogits = False, None
    net.fc = nn.Identity()
    return Extractor(
        "inception",
        net,
        POOL3_DIM,
        imagenet_preprocess(299),
        weights_fingerprint(weights, "torchvision:Inception_V3_Weights.IMAGENET1K_V1"),
    )
