"""torchmetrics: :class:`PrecisionRecall`, a ``Metric`` that keeps features and computes exact P&R on ``compute()``.

Shaped like torchmetrics' ``KernelInceptionDistance``: ``update(imgs, real=True/False)`` runs the
images through the feature network and appends the float32 features to the list states
``real_features`` / ``fake_features`` (gathered across processes with ``dist_reduce_fx="cat"``, so it
works under DDP); ``compute()`` puts each gathered set in a canonical row order, hands it to
:func:`eprmetrics.compute_pr` (``method="exact"``) or :func:`eprmetrics.compute_epr`
(``method="sampled"``) and returns a dict of 0-d tensors (what ``LightningModule.log_dict`` takes).

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
from typing import TYPE_CHECKING, Any, Callable, Optional, Union, cast

import torch
from torch import nn

from ..defaults import DEFAULTS
from ..engine.device import autocast_off
from ..features import extractor_names, get_extractor
from ..features.base import extractor_dim, fit_state_dict
from ..manifold import Manifold, extractor_record
from ..validation import check_bool, check_choice, fail, require
from .common import METHODS, canonical_order, check_method, check_options, evaluate, flat_values
from .host import FrozenExtractor, check_images, device_only, restore_dtypes, run_custom, tensor_dtypes

if TYPE_CHECKING:
    from torchmetrics import Metric as _MetricBase
else:
    _MetricBase = object

__all__ = ["PrecisionRecall", "PrecisionRecallMixin", "METHODS"]

FEATURE_STATES = ("real_features", "fake_features")
# Set by the metric itself from torchmetrics' sync_on_compute / process_group.
_OWN_OPTIONS = frozenset({"distributed", "process_group"})


def _as_tensor_dict(res: Any, ks: Sequence[int], dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """A :class:`~eprmetrics.Result` as the dict ``compute()`` returns: one 0-d tensor per value of
    :func:`~eprmetrics.integrations.common.flat_values` (interval bounds as ``*_ci_low`` / ``*_ci_high``)."""
    return {key: torch.tensor(value, dtype=dtype, device=device) for key, value in flat_values(res, ks).items()}


def _plotted(val: Any) -> Any:
    """What the plot draws: the values of one result dict (or of each in a list), interval bounds left out."""
    if isinstance(val, Mapping):
        return {k: v for k, v in val.items() if "_ci_" not in k}
    if isinstance(val, Sequence) and val and isinstance(val[0], Mapping):
        return [_plotted(v) for v in val]
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


def _check_reference(
    reference: Any, ks: Sequence[int], feature: Union[str, nn.Module], weights: Any
) -> Optional[Manifold]:
    """``reference``: None, or a Manifold holding ``k``, of this network's width and (where it recorded one) made
    by this network with these weights."""
    if reference is None:
        return None
    if not isinstance(reference, Manifold):
        raise fail("reference", "an eprmetrics.Manifold fitted on the real features", type(reference).__name__,
                   "build one with eprmetrics.Manifold.fit(real_features, k=...)", show=False)  # fmt: skip
    reference.check_k(max(ks))
    dim = None if isinstance(feature, nn.Module) else extractor_dim(feature)
    if dim is not None and dim != reference.dim:
        raise ValueError(
            f"reference: the manifold holds {reference.dim}-dimensional features, but feature={feature!r} makes "
            f"{dim}-dimensional ones; fit the manifold on features of the same network"
        )
    made_by = reference.extractor  # recorded when the manifold was fitted on images
    if made_by is not None and made_by.identity is not None:
        ours = extractor_record(feature, weights)
        if ours.identity is not None and ours.identity != made_by.identity:
            which = "with other weights" if ours.name == made_by.name else ours.name
            raise ValueError(
                f"reference: the manifold's features were made by {made_by.name}, but this metric's feature network "
                f"is {which}; build the metric with the manifold's network and weights, or fit the manifold with "
                f"this one"
            )
    return reference


class PrecisionRecallMixin(_MetricBase):
    """Precision, recall, density and coverage of fake images against real ones, as a torchmetrics ``Metric``.

    The class users instantiate is ``PrecisionRecall`` (this mixin on top of ``torchmetrics.Metric``).

    Args:
        feature: ``"vgg16"`` (fc2, the feature space of the P&R paper; default), another registry
            name (``"inception"``, or one added with :func:`eprmetrics.register_extractor`), or an
            ``nn.Module``. A registry network takes uint8 images N×3×H×W (values 0–255; grayscale
            N×1×H×W is repeated), is kept in eval mode and in float32; an ``nn.Module`` gets whatever
            ``update`` is given (a floating input cast to its dtype) and must return N×D features (put
            it in eval mode yourself). Either network keeps the dtype it had when the metric was built
            (``set_dtype``, Lightning's ``64-true``/``16-true`` leave it alone) and runs with autocast
            off (Lightning's ``bf16-mixed``); features are stored as float32.
        k: neighbourhood size, or several for ``method="exact"`` (e.g. ``(3, 5, 10)``: ``compute()``
            then adds ``precision_k5``, ``recall_k5``, … next to the headline values of the first).
        method: ``"exact"`` (:func:`eprmetrics.compute_pr`) or ``"sampled"``
            (:func:`eprmetrics.compute_epr`: estimates with confidence intervals).
        reset_real_features: ``False`` keeps the real features across ``reset()`` (a fixed real
            set is extracted once).
        weights: a state-dict file for the feature network (offline use).
        sample_size: ``method="sampled"``: queries per set (int) or target half-width (float).
        options: more keyword arguments for ``compute_pr`` / ``compute_epr`` (e.g.
            ``{"strict": True, "seed": 1, "density_coverage": False}``). The device defaults to the
            metric's; distribution is set by the metric (below).
        normalize: ``True``: a registry network takes float images in [0, 1], scaled to uint8 as
            torchmetrics' FID/KID do (``(imgs * 255)`` truncated); ``False`` (default): uint8 only.
        reference: an :class:`eprmetrics.Manifold` fitted once on the real features (of the same
            network): the real side is never extracted nor recomputed, and ``update(real=True)`` is refused.
        kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ``process_group``, …).

    ``compute()`` returns a dict of 0-d tensors: ``precision``, ``recall``, ``f_score`` (torch-fidelity's
    ``2PR / (P + R)``), ``density`` and ``coverage`` (exact method), or ``precision_ci_low``,
    ``precision_ci_high``, ``recall_ci_low``, ``recall_ci_high`` (sampled method). Under DDP the features
    of every process are gathered (``sync_on_compute=True``, the default) and the processes of
    ``process_group`` share the computation; with ``sync_on_compute=False`` each computes on its own
    features. Each set is put in a canonical row order first, so a sampled estimate does not depend on
    how the data were sharded.

    ``forward`` (``metric(imgs, real=...)``, a Lightning habit) is ``update``: it adds the batch to the
    accumulated features and returns ``None``, as P&R of one batch has no meaning (it needs both sets).

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
        normalize: bool = False,
        reference: Optional[Manifold] = None,
        **kwargs: Any,
    ) -> None:
        from torchmetrics.utilities import rank_zero_warn

        method, ks, sample_size = check_method(method, k, sample_size)
        check_bool(reset_real_features, "reset_real_features")
        check_bool(normalize, "normalize")
        options = check_options(options, method, own=_OWN_OPTIONS)
        if isinstance(feature, nn.Module):
            if normalize:
                raise ValueError(
                    "normalize: True scales float images to uint8 for a registry network, but feature is an "
                    "nn.Module, which receives the images update() is given; drop normalize=True"
                )
        else:
            check_choice(feature, "feature", extractor_names(), "or pass an nn.Module")
        reference = _check_reference(reference, ks, feature, weights)
        super().__init__(**kwargs)
        rank_zero_warn(
            "Metric `PrecisionRecall` will save all extracted features in buffer."
            " For large datasets this may lead to large memory footprint.",
            UserWarning,
        )
        self.method, self.k, self.sample_size, self.options = method, ks, sample_size, options
        self.reset_real_features, self.normalize, self.reference = reset_real_features, normalize, reference
        self.custom = isinstance(feature, nn.Module)
        if isinstance(feature, nn.Module):
            self.feature_net: nn.Module = (
                feature if weights is None else fit_state_dict(feature, weights, type(feature).__name__)
            )
        else:
            self.feature_net = FrozenExtractor(get_extractor(feature, weights))
        self.net_dtypes = tensor_dtypes(self.feature_net)
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def update(self, imgs: Any, real: bool) -> None:
        """Extract the features of ``imgs`` and keep them (float32) as real (``real=True``) or fake ones."""
        check_bool(real, "real")
        if real and self.reference is not None:
            raise ValueError(
                "real: this metric's real side is the Manifold given as reference= (fitted once, never "
                "recomputed); update it with fake images only (real=False)"
            )
        with torch.no_grad():
            feats = (
                run_custom(self.feature_net, imgs)
                if self.custom
                else self.feature_net(check_images(imgs, self.normalize))
            )
        if not isinstance(feats, torch.Tensor) or feats.ndim < 2:
            got = f"shape {tuple(feats.shape)}" if isinstance(feats, torch.Tensor) else type(feats).__name__
            raise fail("feature", "a network returning N×D features", got, show=False)
        feats = feats.detach().flatten(1).float()
        self._check_width(feats.shape[1])
        (self.real_features if real else self.fake_features).append(feats)

    def _check_width(self, dim: int) -> None:
        """The same feature width as the reference and the features kept so far (one line, not a cat error)."""
        kept = [t.shape[1] for name in FEATURE_STATES for t in getattr(self, name) if t.ndim == 2]
        widths = kept[:1] + ([self.reference.dim] if self.reference is not None else [])
        for width in widths:
            if width != dim:
                raise ValueError(
                    f"feature: the network returned {dim} features per image, but the features kept so far (or the "
                    f"reference manifold) have {width}; use one network for every update"
                )

    def forward(self, *args: Any, **kwargs: Any) -> None:
        """``metric(imgs, real=...)`` is :meth:`update`: the batch joins the accumulated features; returns None.

        torchmetrics' default ``forward`` computes the metric on the batch alone (resetting the state to do
        so and merging it back): for P&R that means a k-NN pass per step, values with no meaning (a batch
        holds one side), and it would lose or duplicate the kept real features. Call ``compute()`` for
        the value.
        """
        if self._is_synced:
            from torchmetrics.utilities.exceptions import TorchMetricsUserError

            raise TorchMetricsUserError(
                "PrecisionRecall: forward() on synced states; call unsync() first (or update() after compute())"
            )
        self.update(*args, **kwargs)
        self._forward_cache = None

    def _gathered(self, name: str) -> torch.Tensor:
        """Every feature of one side (all processes', once synced), float32, in canonical row order."""
        state = getattr(self, name)
        if isinstance(state, list):
            state = torch.cat(state) if state else None
        if state is None or state.shape[0] == 0:
            side = name.split("_")[0]
            raise ValueError(
                f"PrecisionRecall: no {side} features to compute on; call update(imgs, real={side == 'real'}) first"
            )
        state = state.float()  # exact: every feature was stored as float32
        return state[canonical_order(state)]

    def _distribution(self) -> dict[str, Any]:
        """Distributed only when torchmetrics gathered the states (``sync_on_compute``) over several processes."""
        group = self.process_group or None
        if not self._is_synced or torch.distributed.get_world_size(group) < 2:
            return {"distributed": False}
        return {"distributed": True, "process_group": group}

    def compute(self) -> dict[str, torch.Tensor]:
        """P&R of every fake feature against every real one (every process's features, under DDP)."""
        fake = self._gathered("fake_features")
        real = self.reference if self.reference is not None else self._gathered("real_features")
        opts = {"device": self.device, **self.options, **self._distribution()}
        with autocast_off():
            res = evaluate(real, fake, method=self.method, ks=self.k, sample_size=self.sample_size, options=opts)
        # the metric's dtype (set_dtype), but never below float32: a half would round 0.5775 to 0.5776
        return _as_tensor_dict(res, self.k, torch.promote_types(self.dtype, torch.float32), self.device)

    def reset(self) -> None:
        """Clear the features; the real ones stay when ``reset_real_features=False``."""
        kept = list(self.real_features) if isinstance(self.real_features, list) else self.real_features
        super().reset()  # empties the lists in place
        if not self.reset_real_features:
            self.real_features = kept

    def _apply(self, fn: Callable, exclude_state: Sequence[str] = ()) -> nn.Module:
        """Device moves reach the features; dtype casts (``set_dtype``, a precision plugin) reach neither the
        features (float32: a cast to half would round them) nor the feature network (built dtype). The network
        is never cast and cast back: Lightning's ``bf16-true`` would leave float32 weights rounded to bfloat16."""
        net = cast(nn.Module, self._modules.pop("feature_net"))
        try:
            this = super()._apply(fn, exclude_state=(*exclude_state, *FEATURE_STATES))
            net._apply(device_only(fn))
        finally:
            self._modules["feature_net"] = net
        for name in FEATURE_STATES:
            value = getattr(this, name)
            device = this.device
            setattr(this, name, [t.to(device) for t in value] if isinstance(value, list) else value.to(device))
        restore_dtypes(self.feature_net, self.net_dtypes)
        return this

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """torchmetrics' plot of the values (one result dict, or a list of them); returns ``(fig, ax)``.

        Without ``val`` the metric is computed first.
        """
        val = _plotted(self.compute() if val is None else val)
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
