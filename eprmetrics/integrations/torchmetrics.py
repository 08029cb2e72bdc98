"""torchmetrics: :class:`PrecisionRecall`, a ``Metric`` that keeps features and computes exact P&R on ``compute()``.

Shaped like torchmetrics' ``KernelInceptionDistance``: ``update(imgs, real=True/False)`` runs the
images through the feature network and appends the features to the list states ``real_features``
/ ``fake_features`` (gathered across processes with ``dist_reduce_fx="cat"``, so it works under DDP);
``compute()`` hands every gathered feature to :func:`eprmetrics.compute_pr` (``method="exact"``) or
:func:`eprmetrics.compute_epr` (``method="sampled"``) and returns a dict of tensors.

torchmetrics is imported when ``PrecisionRecall`` is first looked up (``pip install 'eprmetrics[torchmetrics]'``):
the class is built then, on top of ``torchmetrics.Metric``, from :class:`PrecisionRecallMixin` below.

Example (a tiny custom network, so it runs offline; with ``feature="vgg16"`` pass uint8 images)::

    import torch
    from eprmetrics.integrations.torchmetrics import PrecisionRecall

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16))
    metric = PrecisionRecall(feature=net, k=3)
    imgs = torch.rand(40, 3, 8, 8)
    metric.update(imgs, real=True)
    metric.update(imgs[:20], real=False)
    metric.compute()["precision"]          # tensor(1.): every fake is a real image
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

import torch
from torch import nn

from ..defaults import DEFAULTS
from ..features import extractor_names, get_extractor
from ..features.base import Extractor, fit_state_dict
from ..validation import check_bool, check_choice, fail, require
from .common import METHODS, check_method, check_options, evaluate, flat_values

if TYPE_CHECKING:
    from torchmetrics import Metric as _MetricBase
else:
    _MetricBase = object

__all__ = ["PrecisionRecall", "PrecisionRecallMixin", "METHODS"]


class FrozenExtractor(nn.Module):
    """A registry extractor as a sub-module: moved by ``.to()``, always in eval mode, never trained."""

    def __init__(self, extractor: Extractor) -> None:
        super().__init__()
        self.net = extractor.module.requires_grad_(False)
        self.extractor = extractor

    def train(self, mode: bool = True) -> "FrozenExtractor":
        return super().train(False)  # a Lightning ``model.train()`` must not switch dropout on

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        param = next(self.net.parameters(), None)
        return self.extractor(imgs, imgs.device if param is None else param.device).clone()


def _check_images(imgs: Any) -> torch.Tensor:
    if not isinstance(imgs, torch.Tensor) or imgs.dtype != torch.uint8 or imgs.ndim != 4 or imgs.shape[1] not in (1, 3):
        got = (
            f"{imgs.dtype} tensor of shape {tuple(imgs.shape)}"
            if isinstance(imgs, torch.Tensor)
            else type(imgs).__name__
        )
        raise fail(
            "imgs",
            "uint8 images N×3×H×W with values 0–255",
            got,
            "convert floats in [0, 1] with (imgs * 255).round().to(torch.uint8), or pass feature=nn.Module",
            show=False,
        )
    return imgs.expand(-1, 3, -1, -1) if imgs.shape[1] == 1 else imgs


def _as_tensor_dict(res: Any, ks: Sequence[int], dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """A :class:`~eprmetrics.Result` as the dict ``compute()`` returns: one tensor per value computed, the
    intervals as two-element tensors ``precision_ci`` / ``recall_ci``."""
    flat = flat_values(res, ks)
    out = {key: torch.tensor(value, dtype=dtype, device=device) for key, value in flat.items() if "_ci_" not in key}
    for side in ("precision", "recall"):
        if f"{side}_ci_low" in flat:
            bounds = [flat[f"{side}_ci_low"], flat[f"{side}_ci_high"]]
            out[f"{side}_ci"] = torch.tensor(bounds, dtype=dtype, device=device)
    return out


def _scalars(val: Any) -> Any:
    """What torchmetrics' plot helper draws: the scalar entries of one result dict (or of each in a list)."""
    if isinstance(val, Mapping):
        return {k: v for k, v in val.items() if v.numel() == 1}
    if isinstance(val, Sequence) and val and isinstance(val[0], Mapping):
        return [_scalars(v) for v in val]
    return val


def _bars(values: Mapping[str, torch.Tensor], ax: Any, title: str) -> Any:
    """Matplotlib bars of the scalar values (for a torchmetrics without a plot helper)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots() if ax is None else (None, ax)
    names = list(values)
    ax.bar(names, [float(values[n]) for n in names])
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    return fig, ax


class PrecisionRecallMixin(_MetricBase):
    """Precision, recall, density and coverage of fake images against real ones, as a torchmetrics ``Metric``.

    The class users instantiate is ``PrecisionRecall`` (this mixin on top of ``torchmetrics.Metric``).

    Args:
        feature: ``"vgg16"`` (fc2, the feature space of the P&R paper; default), another registry
            name (``"inception"``, or one added with :func:`eprmetrics.register_extractor`), or an
            ``nn.Module``. A registry network takes uint8 images N×3×H×W (values 0–255; grayscale
            N×1×H×W is repeated) and is kept in eval mode; an ``nn.Module`` gets whatever ``update``
            is given and must return N×D features (put it in eval mode yourself).
        k: neighbourhood size, or several for ``method="exact"`` (e.g. ``(3, 5, 10)``: ``compute()``
            then adds ``precision_k5``, ``recall_k5``, … next to the headline values of the first).
        method: ``"exact"`` (:func:`eprmetrics.compute_pr`) or ``"sampled"``
            (:func:`eprmetrics.compute_epr`: estimates with ``precision_ci`` / ``recall_ci``).
        reset_real_features: ``False`` keeps the real features across ``reset()`` (a fixed real
            set is extracted once).
        weights: a state-dict file for the feature network (offline use).
        sample_size: ``method="sampled"``: queries per set (int) or target half-width (float).
        options: more keyword arguments for ``compute_pr`` / ``compute_epr`` (e.g.
            ``{"strict": True, "seed": 1, "density_coverage": False}``). The device defaults to the
            metric's.
        kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, …).

    ``compute()`` returns a dict of 0-d tensors ``precision``, ``recall``, ``density``,
    ``coverage`` (exact method), or ``precision``, ``recall`` and the two-element
    ``precision_ci``, ``recall_ci`` (sampled method).

    Every feature is kept until ``reset()`` (N × 4096 floats per set with VGG-16): the metric
    warns about it, as torchmetrics' KID does.
    """

    higher_is_better: bool = True
    is_differentiable: bool = False
    full_state_update: bool = False
    plot_lower_bound: float = 0.0

    real_features: list[torch.Tensor]
    fake_features: list[torch.Tensor]

    def __init__(
        self,
        feature: Union[str, nn.Module] = "vgg16",
        k: Union[int, Sequence[int]] = DEFAULTS["k"],
        method: str = "exact",
        reset_real_features: bool = True,
        weights: Optional[Union[str, os.PathLike]] = None,
        sample_size: Union[int, float] = DEFAULTS["sample_size"],
        options: Optional[Mapping[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        from torchmetrics.utilities import rank_zero_warn

        method, ks, sample_size = check_method(method, k, sample_size)
        check_bool(reset_real_features, "reset_real_features")
        options = check_options(options, method)
        if not isinstance(feature, nn.Module):
            check_choice(feature, "feature", extractor_names(), "or pass an nn.Module")
        super().__init__(**kwargs)
        rank_zero_warn(
            "Metric `PrecisionRecall` will save all extracted features in buffer."
            " For large datasets this may lead to large memory footprint.",
            UserWarning,
        )
        self.method, self.k, self.sample_size, self.options = method, ks, sample_size, options
        self.reset_real_features = reset_real_features
        self.custom = isinstance(feature, nn.Module)
        if isinstance(feature, nn.Module):
            self.feature_net: nn.Module = (
                feature if weights is None else fit_state_dict(feature, weights, type(feature).__name__)
            )
        else:
            self.feature_net = FrozenExtractor(get_extractor(feature, weights))
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, imgs: Any, real: bool) -> None:
        """Extract the features of ``imgs`` and keep them as real (``real=True``) or fake ones."""
        check_bool(real, "real")
        with torch.no_grad():
            feats = self.feature_net(imgs if self.custom else _check_images(imgs))
        if not isinstance(feats, torch.Tensor) or feats.ndim < 2:
            got = f"shape {tuple(feats.shape)}" if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise fail("feature", "a network returning N×D features", got, show=False)
        feats = feats.detach().flatten(1)
        (self.real_features if real else self.fake_features).append(feats)

    def _gathered(self, name: str) -> torch.Tensor:
        state = getattr(self, name)
        if isinstance(state, list):
            state = torch.cat(state) if state else None
        if state is None or state.shape[0] == 0:
            side = name.split("_")[0]
            raise ValueError(
                f"PrecisionRecall: no {side} features to compute on; call update(imgs, real={side == 'real'}) first"
            )
        return state

    def compute(self) -> dict[str, torch.Tensor]:
        """P&R of every fake feature against every real one (all processes' features, under DDP)."""
        real, fake = self._gathered("real_features"), self._gathered("fake_features")
        opts = {"device": self.device, **self.options}
        res = evaluate(real, fake, method=self.method, ks=self.k, sample_size=self.sample_size, options=opts)
        return _as_tensor_dict(res, self.k, self.dtype, self.device)

    def reset(self) -> None:
        """Clear the features; the real ones stay when ``reset_real_features=False``."""
        kept = list(self.real_features) if isinstance(self.real_features, list) else self.real_features
        super().reset()  # empties the lists in place
        if not self.reset_real_features:
            self.real_features = kept

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """torchmetrics' plot of the scalar values (one result dict, or a list of them); returns ``(fig, ax)``.

        Without ``val`` the metric is computed first.
        """
        val = _scalars(self.compute() if val is None else val)
        if hasattr(super(), "_plot"):
            return super()._plot(val, ax)
        return _bars(val if isinstance(val, Mapping) else val[-1], ax, type(self).__name__)


_CLASS: Optional[type] = None


def _build() -> type:
    """``PrecisionRecall``: the mixin on top of ``torchmetrics.Metric`` (imported now)."""
    global _CLASS
    if _CLASS is None:
        metric = require("torchmetrics", "torchmetrics", "torchmetrics", kind="integration").Metric
        doc = PrecisionRecallMixin.__doc__
        namespace = {"__module__": __name__, "__qualname__": "PrecisionRecall", "__doc__": doc}
        _CLASS = type(metric)("PrecisionRecall", (PrecisionRecallMixin, metric), namespace)
    return _CLASS


def __getattr__(name: str) -> Any:
    if name == "PrecisionRecall":
        return _build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:

    class PrecisionRecall(PrecisionRecallMixin, _MetricBase):  # what _build makes, for type checkers
        pass
