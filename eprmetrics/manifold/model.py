"""A reference manifold: the real side of P&R computed once and reused against many fake sets.

Precision asks whether each fake lies inside some real k-NN ball, so every evaluation of a new
generator (a checkpoint, a truncation ψ, a sampler setting) against the same real set repeats the
real set's self pass — a third of exact P&R's cost, all of it at 1:1 sizes. :class:`Manifold` keeps
what that pass found: the exact float64 k-NN radii and neighbours of every real point (for each
``k`` up to the largest fitted), the k-occurrence behind the hub statistics, and the features (or the
path of the ``.npy`` file holding them). Passed as ``real`` to :func:`~eprmetrics.compute_pr` or
:func:`~eprmetrics.compute_epr`, it replaces the real self pass; every decision still equals a float64
brute force, so the numbers are identical to a fresh computation (``docs/manifold.md``).

Example:
    >>> import numpy as np, tempfile
    >>> from eprmetrics import Manifold, compute_pr
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(400, 8)).astype("float32")
    >>> fake = rng.normal(size=(300, 8)).astype("float32")
    >>> manifold = Manifold.fit(real, k=(3, 5))
    >>> path = manifold.save(tempfile.mkdtemp() + "/real")
    >>> again = compute_pr(Manifold.load(path), fake, k=5)
    >>> again.precision == compute_pr(real, fake, k=5).precision
    True
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..defaults import DEFAULTS
from ..engine import FeatureSet, World, call_options, matmul_precision, norm_sums
from ..engine import fingerprint as rows_fingerprint
from ..estimators import EngineOptions, hub_statistics
from ..features import Extractor, extractor_identity, get_extractor, is_image_input
from ..inputs import ImageOptions, resolve_one, resolve_pair
from ..neighbours import Radii, RadiiState, SetGraph, k_occurrence
from ..profiling import Profiler, Stage, progress_bar
from ..result import HubStatistics
from ..validation import check_k, check_path_like
from .storage import (
    FEATURES_FILE,
    RADII_DTYPES,
    ExtractorRecord,
    build_meta,
    check_destination,
    fingerprint,
    read_folder,
    write_folder,
)

__all__ = ["Manifold", "extractor_record"]


def extractor_record(extractor: Any, weights: Optional[Union[str, os.PathLike]]) -> ExtractorRecord:
    """What a manifold records of the network that made its features from images. A module given with
    ``weights`` gets them loaded first (as the extraction does), so that its identity is the network's
    after loading, whichever instance of its class carried them in."""
    if isinstance(extractor, Extractor):  # a built extractor: identified by its network (class, code, state)
        return ExtractorRecord(extractor.name, extractor_identity(extractor.module, None))
    if isinstance(extractor, torch.nn.Module) and weights is not None:
        get_extractor(extractor, weights)
    name = extractor if isinstance(extractor, str) else f"custom ({type(extractor).__name__})"
    return ExtractorRecord(name, extractor_identity(extractor, weights))


class Manifold:
    """The real side of P&R, fitted once: exact k-NN radii, neighbours, k-occurrence and the features.

    Build with :meth:`fit`, keep with :meth:`save`, reopen with :meth:`load`; pass it wherever ``real``
    is accepted by :func:`~eprmetrics.compute_pr` and :func:`~eprmetrics.compute_epr` (any ``k`` up to
    :attr:`k_max`), and to :func:`~eprmetrics.pr_curve` for sweeps.
    """

    def __init__(
        self,
        features: Union[np.ndarray, torch.Tensor],
        state: RadiiState,
        k: tuple[int, ...],
        scale: float,
        largest: float,
        stages: Optional[list[Stage]] = None,
        extractor: Optional[ExtractorRecord] = None,
    ) -> None:
        self.features, self.k, self.stages = features, k, stages or []
        self._state, self._scale, self._largest = state, scale, largest
        self.extractor = extractor  # the network that made the features from images (None: given as features)

    @classmethod
    def fit(
        cls,
        real: Any,
        k: Union[int, Sequence[int]] = DEFAULTS["k"],
        *,
        device: Union[str, torch.device] = DEFAULTS["device"],
        memory_budget: Optional[int] = DEFAULTS["memory_budget"],
        error_bound: str = DEFAULTS["error_bound"],
        precision: str = DEFAULTS["precision"],
        extractor: Any = DEFAULTS["extractor"],
        weights: Optional[str] = None,
        batch_size: int = DEFAULTS["batch_size"],
        num_workers: int = DEFAULTS["num_workers"],
        cache_dir: Optional[str] = None,
        on_error: str = DEFAULTS["on_error"],
        progress: Optional[bool] = None,
        distributed: bool = False,
        process_group: Any = None,
        distributed_timeout: float = DEFAULTS["distributed_timeout"],
    ) -> "Manifold":
        """Fit the manifold of ``real``: features as for :func:`~eprmetrics.compute_pr` (arrays, ``.npy``
        memmaps, ``.npz``) or images (a folder, ``.zip``, files, uint8 tensors, with the extractor options).

        ``k``: one value or several (e.g. ``(3, 5, 10)``); the manifold then serves every ``k ≤ max(k)``.
        The cost is one exact real↔real pass (the one each call would otherwise repeat).
        ``distributed``, ``process_group``, ``distributed_timeout``: share that pass over ``torch.distributed``
        ranks, as for :func:`~eprmetrics.compute_pr` (by default this process computes alone).
        """
        params = dict(locals())  # the call's arguments, which sharing ranks compare
        world = World.of(distributed, process_group, distributed_timeout)
        ks = check_k(k)
        options = EngineOptions(False, device, memory_budget, error_bound, precision, progress)
        images = ImageOptions(extractor, weights, batch_size, num_workers, cache_dir, None, on_error)
        dev = torch.device(options.device)
        record = extractor_record(extractor, weights) if is_image_input(real) else None
        with world.joined(call_options("Manifold.fit", params)):
            fs, largest = world.settle(
                lambda: resolve_one(real, "real", max(ks), images, dev, progress), lambda r: rows_fingerprint(r[0])
            )
            engine = options.engine(fs.dim)
            prof = Profiler(dev)
            with matmul_precision(engine.precision), torch.inference_mode():
                with prof.stage("prepare (centre, norms)"):
                    p = engine.prepare(fs, engine.center_of(fs))
                    if world:  # sharing ranks compare their whole data: every row's norm, summed
                        world.agree(norm_sums({"real": p}))
                with prof.stage("real↔real distances + top-k → radii"), progress_bar(progress, fs.n, "radii real") as b:
                    state = Radii(engine, p, max(ks), progress=b.update if b else None).state()
        return cls(fs.data, state, ks, fs.scale, largest, prof.stages, record)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def k_max(self) -> int:
        return self._state.k_max

    def _k(self, k: Optional[int]) -> int:
        k = self.k[0] if k is None else k
        self.check_k(k)
        return k

    def check_k(self, k: int) -> None:
        """ValueError unless this manifold holds the radii of ``k``."""
        if not 1 <= k <= self.k_max:
            raise ValueError(
                f"k: this manifold holds radii for k ≤ {self.k_max}, got k={k}; fit it with "
                f"Manifold.fit(real, k=({', '.join(map(str, sorted({*self.k, k})))})) to serve k={k}"
            )

    def radii(self, k: Optional[int] = None) -> np.ndarray:
        """The exact k-NN radius of every real point (float64, in the features' units; default: first k)."""
        k = self._k(k)
        return np.sqrt(self._state.sqdist[:, k - 1].numpy()) / self._scale

    def k_occurrence(self, k: Optional[int] = None) -> np.ndarray:
        """How often each real point is among the k nearest neighbours of the others (hubness)."""
        return k_occurrence(self._state.idx[:, : self._k(k)].numpy(), self.n)

    def hubs(self, t: int = DEFAULTS["t"], k: Optional[int] = None) -> HubStatistics:
        """Hub statistics of the real set at threshold ``t`` (the hub method's ``H(R)``), from the exact graph."""
        graph = SetGraph("exact", "reference manifold: the exact graph", {}, self.k_occurrence(k))
        return hub_statistics(graph, t)

    def pair_with(
        self, fake: Any, k_max: int, images: ImageOptions, device: torch.device, progress: Optional[bool]
    ) -> tuple[FeatureSet, FeatureSet, dict[str, RadiiState]]:
        """The real and fake sets of one call, and the real radii at that call's scale (only ``fake`` is read)."""
        self.check_k(k_max)
        self.check_extractor(fake, images)
        real_fs, fake_fs = resolve_pair(
            FeatureSet(self.features, "real"), fake, k_max, images, device, progress, self._largest
        )
        factor = (real_fs.scale / self._scale) ** 2  # both powers of two: the radii rescale exactly
        return real_fs, fake_fs, {"real": self._state.scaled(factor)}

    def check_extractor(self, fake: Any, images: ImageOptions) -> None:
        """ValueError when ``fake`` holds images that ``images.extractor`` would turn into features of another
        network than the one that made this manifold's (features given as arrays cannot be checked: the
        caller's responsibility, as is a manifold fitted on features)."""
        if self.extractor is None or self.extractor.identity is None or not is_image_input(fake):
            return
        theirs = extractor_record(images.extractor, images.weights)
        if theirs.identity == self.extractor.identity:
            return
        which = "with other weights" if theirs.name == self.extractor.name else f"by {theirs.name}"
        raise ValueError(
            f"extractor: this manifold's features were made by {self.extractor.name}, but the fake images would be "
            f"turned into features {which}; pass the manifold's extractor (and weights) for the fake images, or fit "
            f"a manifold with {theirs.name}"
        )

    def save(self, path: Union[str, os.PathLike], *, features: bool = True, overwrite: bool = False) -> str:
        """Write the manifold into folder ``path`` (created); returns it.

        ``features=False`` records the path of the ``.npy`` file the features were memory-mapped from
        instead of copying them (checked by a fingerprint when loaded). The folder is written whole or not
        at all (a temporary sibling, then renamed); an existing manifold is replaced only with
        ``overwrite=True``, and a non-empty folder that is not a manifold never.

        Raises:
            DestinationError: ``path`` exists (without ``overwrite``), is a link, a file, or a folder that
                is not a manifold; OutputError: the folder could not be written (the old one is kept).
        """
        source = getattr(self.features, "filename", None)
        if not features and source is None:
            raise ValueError(
                "features: False keeps only the path of the features' .npy file, but these features are in memory; "
                "save with features=True, or fit the manifold on a .npy path"
            )
        keep = None if features else os.path.abspath(str(source))
        target, exists = check_destination(path, overwrite, keep)
        s = self._state
        arrays = {"vals": s.vals, "idx": s.idx, "sqdist": s.sqdist, "index": s.index}
        arrays_np = {key: v.numpy() for key, v in arrays.items()}
        data = self.features.cpu().numpy() if isinstance(self.features, torch.Tensor) else np.asarray(self.features)
        fields = {
            "n": self.n,
            "dim": self.dim,
            "k": list(self.k),
            "scale": self._scale,
            "largest": self._largest,
            "features": {
                "file": FEATURES_FILE if keep is None else keep,
                "copied": keep is None,
                "dtype": data.dtype.str,
                "fingerprint": fingerprint(self.features),
            },
        }
        meta = build_meta(fields, arrays_np, self.extractor)
        write_folder(target, exists, meta, arrays_np, data if keep is None else None)
        return target

    @classmethod
    def load(cls, path: Union[str, os.PathLike], *, features: Optional[Union[str, os.PathLike]] = None) -> "Manifold":
        """Open a manifold written by :meth:`save` (features memory-mapped); ``features``: where the
        features' ``.npy`` file is now, if it moved.

        Everything is checked before use: the content hash over ``manifold.json``'s values and the radii,
        the ``.npz``/``.npy`` headers against the files' sizes, the radii's values, the features' place
        (inside the folder), shape, dtype and fingerprint.

        Raises:
            FileNotFoundError: no ``manifold.json`` or no features file there.
            ManifoldError: (a ``ValueError``) a file that is not the one saved — truncated, edited, swapped,
                of format version 1, or not a manifold's; one line naming it.
        """
        path, features = check_path_like(path, "path", optional=False) or "", check_path_like(features, "features")
        stored = read_folder(path, features)
        state = RadiiState(*(torch.from_numpy(stored.arrays[key]) for key in RADII_DTYPES))
        meta = stored.meta
        k, scale, largest = tuple(meta["k"]), float(meta["scale"]), float(meta["largest"])
        return cls(stored.features, state, k, scale, largest, None, stored.extractor)

    def __repr__(self) -> str:
        return f"Manifold(n={self.n}, dim={self.dim}, k={self.k}, dtype={self.features.dtype})"
