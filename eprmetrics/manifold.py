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

import hashlib
import json
import os
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from .defaults import DEFAULTS
from .engine import FeatureSet, matmul_precision
from .estimators import EngineOptions, hub_statistics
from .inputs import ImageOptions, resolve_one, resolve_pair
from .neighbours import Radii, RadiiState, SetGraph, k_occurrence
from .profiling import Profiler, Stage, progress_bar
from .result import HubStatistics
from .validation import check_k

__all__ = ["Manifold", "MANIFOLD_VERSION", "MANIFOLD_FILE"]

MANIFOLD_VERSION = 1
MANIFOLD_FILE = "manifold.json"  # the file that makes a folder a manifold
_META, _RADII, _FEATURES = MANIFOLD_FILE, "radii.npz", "features.npy"
_FINGERPRINT_ROWS = 64


def _fingerprint(data: Union[np.ndarray, torch.Tensor]) -> str:
    """Shape, dtype and the bytes of 64 evenly spaced rows (the first and last included): enough to tell
    a moved or rewritten feature file from the one the radii were fitted on, without reading it whole."""
    n = int(data.shape[0])
    rows = np.unique(np.linspace(0, n - 1, min(n, _FINGERPRINT_ROWS)).round().astype(np.int64))
    sample = data[torch.from_numpy(rows)] if isinstance(data, torch.Tensor) else data[rows]
    values = sample.detach().cpu().numpy() if isinstance(sample, torch.Tensor) else np.asarray(sample)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{tuple(data.shape)}|{str(data.dtype).replace('torch.', '')}".encode())
    h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


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
    ) -> None:
        self.features, self.k, self.stages = features, k, stages or []
        self._state, self._scale, self._largest = state, scale, largest

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
    ) -> "Manifold":
        """Fit the manifold of ``real``: features as for :func:`~eprmetrics.compute_pr` (arrays, ``.npy``
        memmaps, ``.npz``) or images (a folder, ``.zip``, files, uint8 tensors, with the extractor options).

        ``k``: one value or several (e.g. ``(3, 5, 10)``); the manifold then serves every ``k ≤ max(k)``.
        The cost is one exact real↔real pass (the one each call would otherwise repeat).
        """
        ks = check_k(k)
        options = EngineOptions(False, device, memory_budget, error_bound, precision, progress)
        images = ImageOptions(extractor, weights, batch_size, num_workers, cache_dir, None, on_error)
        dev = torch.device(options.device)
        fs, largest = resolve_one(real, "real", max(ks), images, dev, progress)
        engine = options.engine(fs.dim)

        prof = Profiler(dev)
        with matmul_precision(engine.precision), torch.inference_mode():
            with prof.stage("prepare (centre, norms)"):
                p = engine.prepare(fs, engine.center_of(fs))
            with prof.stage("real↔real distances + top-k → radii"), progress_bar(progress, fs.n, "radii real") as b:
                state = Radii(engine, p, max(ks), progress=b.update if b else None).state()
        return cls(fs.data, state, ks, fs.scale, largest, prof.stages)

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
        real_fs, fake_fs = resolve_pair(
            FeatureSet(self.features, "real"), fake, k_max, images, device, progress, self._largest
        )
        factor = (real_fs.scale / self._scale) ** 2  # both powers of two: the radii rescale exactly
        return real_fs, fake_fs, {"real": self._state.scaled(factor)}

    def save(self, path: Union[str, os.PathLike], *, features: bool = True) -> str:
        """Write the manifold into folder ``path`` (created); returns it.

        ``features=False`` records the path of the ``.npy`` file the features were memory-mapped from
        instead of copying them (checked by a fingerprint when loaded).
        """
        path = os.path.abspath(os.fspath(path))
        source = getattr(self.features, "filename", None)
        if not features and source is None:
            raise ValueError(
                "features: False keeps only the path of the features' .npy file, but these features are in memory; "
                "save with features=True, or fit the manifold on a .npy path"
            )
        os.makedirs(path, exist_ok=True)
        s = self._state
        arrays = {"vals": s.vals, "idx": s.idx, "sqdist": s.sqdist, "index": s.index}
        np.savez(os.path.join(path, _RADII), **{key: v.numpy() for key, v in arrays.items()})  # type: ignore[arg-type]
        if features:
            data = self.features
            np.save(os.path.join(path, _FEATURES), data.cpu().numpy() if isinstance(data, torch.Tensor) else data)
        meta = {
            "format": "eprmetrics.Manifold",
            "version": MANIFOLD_VERSION,
            "n": self.n,
            "dim": self.dim,
            "k": list(self.k),
            "scale": self._scale,
            "largest": self._largest,
            "features": _FEATURES if features else os.path.abspath(str(source)),
            "fingerprint": _fingerprint(self.features),
        }
        with open(os.path.join(path, _META), "w") as f:
            json.dump(meta, f, indent=1)
        return path

    @classmethod
    def load(cls, path: Union[str, os.PathLike], *, features: Optional[Union[str, os.PathLike]] = None) -> "Manifold":
        """Open a manifold written by :meth:`save` (features memory-mapped); ``features``: where the
        features' ``.npy`` file is now, if it moved."""
        path = os.fspath(path)
        meta_file = os.path.join(path, _META)
        if not os.path.isfile(meta_file):
            raise FileNotFoundError(f"manifold: {path!r} holds no {_META}; expected a folder written by Manifold.save")
        with open(meta_file) as f:
            meta = json.load(f)
        if meta.get("format") != "eprmetrics.Manifold" or meta.get("version") != MANIFOLD_VERSION:
            raise ValueError(
                f"manifold: {meta_file!r} is not a version-{MANIFOLD_VERSION} eprmetrics manifold; "
                f"fit and save it again"
            )
        source = os.fspath(features) if features is not None else os.path.join(path, meta["features"])
        if not os.path.isfile(source):
            raise FileNotFoundError(f"manifold: features file {source!r} not found; pass features=PATH to where it is")
        data = np.load(source, mmap_mode="r")
        if _fingerprint(data) != meta["fingerprint"]:
            raise ValueError(
                f"manifold: {source!r} is not the feature file this manifold was fitted on (shape, dtype or values "
                f"differ); pass the original file as features=, or fit the manifold again"
            )
        with np.load(os.path.join(path, _RADII)) as r:
            state = RadiiState(*(torch.from_numpy(r[key]) for key in ("vals", "idx", "sqdist", "index")))
        return cls(data, state, tuple(meta["k"]), float(meta["scale"]), float(meta["largest"]))

    def __repr__(self) -> str:
        return f"Manifold(n={self.n}, dim={self.dim}, k={self.k}, dtype={self.features.dtype})"
