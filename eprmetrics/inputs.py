"""What the user hands in → a :class:`~eprmetrics.engine.FeatureSet`, in one place.

``real`` and ``fake`` may be features (numpy or torch arrays, ``.npy``
memmaps, ``.npz`` files) or images (a folder, a ``.zip``, a list of image
files, uint8 tensors). :func:`resolve_pair` is the only route from either to
the two validated feature sets every estimator starts from: image inputs are
opened (cheap checks) before either is extracted, then turned into features by
:mod:`eprmetrics.features`, then checked as a pair (dimensions, sizes, finite
values).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import IO, Any, Optional, Union

import numpy as np
import psutil
import torch

from .defaults import DEFAULTS
from .engine import FeatureSet, read_rows
from .features import as_image_source, extract_features, extractor_names, is_image_input
from .features.base import check_extractor, extractor_dim
from .fileio import check_regular, open_regular, probe_writable
from .npyfile import NpyError, read_header
from .validation import check_choice, check_folder, check_int, check_path_exists, check_path_like

__all__ = [
    "ImageOptions",
    "resolve_pair",
    "resolve_one",
    "as_feature_set",
    "validate_pair",
    "check_set",
    "pair_scale",
    "prescale_subnormal",
    "warn_inexact_ints",
    "FeaturesLike",
]

FeaturesLike = Union[np.ndarray, torch.Tensor, str, os.PathLike, FeatureSet]

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)
# Values per block when scanning for NaN/Inf (16 MiB of fp32): the scan's |x| temporary is the size of a
# block, and 16,384-row blocks made it 0.5 GiB at d = 4096 — more than the tiles of a 256 MiB budget.
_CHECK_ELEMENTS = 1 << 22


def _check_rows(dim: int) -> int:
    return max(256, _CHECK_ELEMENTS // max(dim, 1))


# Largest absolute values that need no rescaling: fp32 squares of (sums of) such values stay normal.
SAFE_RANGE = (2.0**-20, 2.0**20)


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """How image inputs become features (see :func:`eprmetrics.features.extract_features`)."""

    extractor: Any = DEFAULTS["extractor"]
    weights: Optional[str] = None
    batch_size: int = DEFAULTS["batch_size"]
    num_workers: int = DEFAULTS["num_workers"]
    cache_dir: Optional[str] = None
    save_features: Optional[str] = None
    on_error: str = DEFAULTS["on_error"]

    def __post_init__(self) -> None:
        if isinstance(self.extractor, str):
            check_choice(self.extractor, "extractor", extractor_names(), "or pass an nn.Module")
        check_int(self.batch_size, "batch_size")
        check_int(self.num_workers, "num_workers", minimum=0)
        check_choice(self.on_error, "on_error", ("raise", "skip"))
        check_path_like(self.weights, "weights")
        check_extractor(self.extractor, self.weights)  # a weights file that is missing fails now, not after hours
        for option in ("cache_dir", "save_features"):
            check_folder(getattr(self, option), option)

    def probe_outputs(self, opened: list[Any]) -> None:
        """Where image features will be written (``cache_dir``, ``save_features``), probed before any image is
        read when an input is images: a read-only or full place is one line now, not after the extraction."""
        if any(is_image_input(v) for v in opened):
            for option in ("cache_dir", "save_features"):
                folder = getattr(self, option)
                if folder is not None:
                    probe_writable(folder, option, folder=True)

    def open(self, value: Any, name: str) -> Any:
        """An image source for image inputs (cheap checks: paths, empty folders); other inputs pass through."""
        if isinstance(value, (str, os.PathLike)):
            check_path_exists(value, name)
        return as_image_source(value, name, self.on_error) if is_image_input(value) else value

    def features(self, value: Any, name: str, device: torch.device, progress: Optional[bool]) -> Any:
        """Features of an image input; other inputs pass through."""
        if not is_image_input(value):
            return value
        save_to = None if self.save_features is None else os.path.join(os.fspath(self.save_features), f"{name}.npy")
        return extract_features(
            value,
            name=name,
            extractor=self.extractor,
            weights=self.weights,
            device=device,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            cache_dir=self.cache_dir,
            save_to=save_to,
            on_error=self.on_error,
            progress=progress,
        )


def resolve_pair(
    real: Any,
    fake: Any,
    k_max: int,
    images: ImageOptions,
    device: torch.device,
    progress: Optional[bool],
    real_largest: Optional[float] = None,
) -> tuple[FeatureSet, FeatureSet]:
    """``real`` and ``fake`` as validated feature sets, whatever form they were given in
    (``real_largest``: see :func:`validate_pair`; a ``real`` set checked before is not read again).

    Raises:
        ValueError, TypeError, FileNotFoundError: naming the input and what was expected.
    """
    names = ("real", "fake")
    # Both are checked before either is extracted; feature inputs are read here, once (an .npz in full).
    opened = [images.open(v, name) for v, name in zip((real, fake), names)]
    opened = [v if is_image_input(v) else as_feature_set(v, name) for v, name in zip(opened, names)]
    images.probe_outputs(opened)
    _check_dims_before_extraction(opened, images)
    real_fs, fake_fs = (
        as_feature_set(images.features(v, name, device, progress), name) for v, name in zip(opened, names)
    )
    validate_pair(real_fs, fake_fs, k_max, real_largest)
    return real_fs, fake_fs


def _check_dims_before_extraction(opened: list[Any], images: ImageOptions) -> None:
    """Features on one side, images on the other: a width mismatch is an error before hours of extraction."""
    width = extractor_dim(images.extractor) if isinstance(images.extractor, str) else None
    kinds = [is_image_input(v) for v in opened]
    if width is None or kinds[0] == kinds[1]:
        return
    name, fs = ("real", opened[0]) if not kinds[0] else ("fake", opened[1])
    if fs.dim != width:
        other = "fake" if name == "real" else "real"
        raise ValueError(
            f"{name}: expected {width}-d features to compare with the {other} images' {images.extractor} features, "
            f"got dim {fs.dim}; pass features of the same network, or images for both"
        )


def _load_path(path: Union[str, os.PathLike], name: str) -> np.ndarray:
    path = check_path_exists(path, name)
    if not path.endswith((".npy", ".npz")):
        raise ValueError(f"{name}: expected a folder of images, a .zip, or features as .npy/.npz, got {path!r}")
    try:
        return _read_array(path, name)
    except (ValueError, OSError, EOFError) as exc:
        if str(exc).startswith(f"{name}: "):
            raise
        raise ValueError(
            f"{name}: cannot read {path!r} as a feature file ({_reason(exc)}); expected an n × d array written "
            f"by numpy.save / numpy.savez: check that the file is complete and not a pickle"
        ) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).split(". ")[0]  # numpy's first sentence, without its advice about allow_pickle
    pickled = "allow_pickle" in text or "Python objects" in text
    return "it holds pickled objects, not a plain array" if pickled else text


def _read_array(path: str, name: str) -> np.ndarray:
    """The array of a ``.npy`` (memory-mapped) or ``.npz`` file. Only a regular file is opened (a FIFO would
    block for ever), and its header's shape × itemsize is checked against the bytes there before anything
    is allocated (a damaged header claiming 10¹² rows is one line, not a ``MemoryError``)."""
    size = check_regular(path, name)
    if path.endswith(".npy"):
        with open_regular(path, name) as fh:
            _check_header(fh, size, name, path)
        return np.load(path, mmap_mode="r")
    with np.load(path) as archive:
        keys = list(archive.keys())
        key = keys[0] if len(keys) == 1 else "features" if "features" in keys else None
        if key is None:
            raise ValueError(f"{name}: {path!r} holds arrays {keys}; expected a single array or one named 'features'")
        member = archive.zip.getinfo(key if key in archive.zip.namelist() else f"{key}.npy")
        with archive.zip.open(member) as fh:
            _check_header(fh, member.file_size, name, f"{path}[{key}]")
        return archive[key]


def _check_header(fh: IO[bytes], size: int, name: str, where: str) -> None:
    """The array a ``.npy`` header announces fits in the ``size`` bytes of its file."""
    try:
        header = read_header(fh)
    except NpyError:
        return  # not a plain .npy array (or pickled objects): numpy's own reading reports it, with its reason
    shape, dtype = header.shape, header.dtype
    need = fh.tell() + header.nbytes
    if need > size:
        raise ValueError(
            f"{name}: cannot read {where!r} as a feature file (its header announces shape {tuple(shape)} of "
            f"{dtype}, {need:,} bytes, but it holds {size:,}); check that the file is complete, or write it again "
            f"with numpy.save"
        )


def as_feature_set(value: FeaturesLike, name: str) -> FeatureSet:
    """Turn ``value`` into a validated-shape :class:`FeatureSet`.

    Raises:
        TypeError: for an unsupported input type.
        ValueError: for a non-2-D or non-float array.
        FileNotFoundError: for a missing path.
    """
    if isinstance(value, FeatureSet):
        return value
    if isinstance(value, (str, os.PathLike)):
        value = _load_path(value, name)
    if isinstance(value, np.ndarray):
        if value.dtype.newbyteorder("=") not in _FLOAT_DTYPES and not np.issubdtype(value.dtype, np.integer):
            raise ValueError(f"{name}: expected a float array, got dtype {value.dtype}")
        if not value.dtype.isnative:  # big-endian '>f4' (a .npy written elsewhere): converted, in memory
            value = _native(value, name)
    elif isinstance(value, torch.Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{name}: expected a float tensor, got dtype {value.dtype}")
        if not value.is_floating_point():
            if value.dtype == torch.int64 and value.numel():
                warn_inexact_ints(value.detach().cpu().numpy(), name)
            value = value.to(torch.float64)
        value = value.detach()
    else:
        raise TypeError(
            f"{name}: expected features (numpy array, torch tensor, .npy/.npz path) or images (folder, .zip, "
            f"list of image files, uint8 N×3×H×W), got {type(value).__name__}"
        )
    if value.ndim != 2:
        hint = ""
        if value.ndim in (3, 4):
            hint = "; images must be uint8 (N×3×H×W, N×H×W×3 or N×H×W): e.g. (x * 255).round().to(torch.uint8)"
        raise ValueError(f"{name}: expected a 2-D array (n_samples × dim), got shape {tuple(value.shape)}{hint}")
    return FeatureSet(value, name)


def _native(value: np.ndarray, name: str) -> np.ndarray:
    """``value`` in native byte order: a copy in memory, refused when it would take over half the free RAM."""
    free = psutil.virtual_memory().available
    if value.nbytes > free // 2:
        native = value.dtype.newbyteorder("=").str
        raise ValueError(
            f"{name}: expected native byte order for an array this large ({value.nbytes:,} bytes of {value.dtype.str}; "
            f"converting it needs that much memory, {free:,} bytes are free); convert the file once, in blocks, "
            f"e.g. with numpy.lib.format.open_memmap(out, 'w+', '{native}', shape) filled block by block"
        )
    return value.astype(value.dtype.newbyteorder("="))


def validate_pair(real: FeatureSet, fake: FeatureSet, k_max: int, real_largest: Optional[float] = None) -> None:
    """Check equal dimension, enough samples for ``k_max`` and finite values; set the pair's scale.

    ``real_largest``: the largest absolute value of ``real`` when it was checked before (a reference
    manifold), so that it is not read again.

    Raises:
        ValueError: naming the argument and the values received.
    """
    if real.dim != fake.dim:
        raise ValueError(
            f"real and fake must have the same feature dimension, got real dim {real.dim} and fake dim {fake.dim}"
        )
    largest = check_set(real, k_max) if real_largest is None else real_largest
    largest = max(largest, check_set(fake, k_max))
    largest = prescale_subnormal((real, fake), largest)
    real.scale = fake.scale = pair_scale(largest)


def check_set(fs: FeatureSet, k_max: int) -> float:
    """Check one set (a column, enough samples for ``k_max``, finite values); its largest absolute value."""
    if fs.dim == 0:
        raise ValueError(f"{fs.name}: expected at least one feature column, got shape {tuple(fs.data.shape)}")
    if fs.n < k_max + 1:
        raise ValueError(f"{fs.name}: k={k_max} needs at least {k_max + 1} samples, got {fs.n}")
    return _largest_finite(fs)


def resolve_one(
    value: Any, name: str, k_max: int, images: ImageOptions, device: torch.device, progress: Optional[bool]
) -> tuple[FeatureSet, float]:
    """One input (features or images) as a checked set, scaled on its own, and its largest absolute value."""
    opened = images.open(value, name)
    images.probe_outputs([opened])
    fs = as_feature_set(images.features(opened, name, device, progress), name)
    largest = check_set(fs, k_max)
    if 0.0 < largest < _SUBNORMAL:  # a pair is scaled in two steps (prescale_subnormal); a lone set cannot be
        raise ValueError(
            f"{name}: every value is a float64 subnormal (largest |x| = {largest:.3g}), too small for a manifold to "
            f"keep its radii at; multiply the features by a power of two, e.g. numpy.ldexp(x, 600) (P&R is "
            f"scale-invariant), or pass them to compute_pr/compute_epr directly"
        )
    fs.scale = pair_scale(largest)
    return fs, largest


# Below this every value is subnormal in float64: the power of two that brings it to [1, 2) exceeds the
# largest float64 (ldexp(1, 1030) overflows), so such sets are scaled in two steps (PRESCALE, then the usual).
_SUBNORMAL = 2.0**-1022
_PRESCALE = 2.0**600


def prescale_subnormal(sets: tuple[FeatureSet, ...], largest: float) -> float:
    """Sets whose values are all float64 subnormals multiplied by 2⁶⁰⁰ (exact: a power of two, and the
    results are normal), once, as a float64 copy; the pair's new largest absolute value. Other sets pass."""
    if largest == 0.0 or largest >= _SUBNORMAL:
        return largest
    for fs in sets:
        if isinstance(fs.data, torch.Tensor):
            fs.data = fs.data.to(torch.float64) * _PRESCALE
        else:
            fs.data = np.asarray(fs.data, dtype=np.float64) * _PRESCALE
    return largest * _PRESCALE


def pair_scale(largest: float) -> float:
    """The power of two both sets are multiplied by so that fp32 squares neither overflow nor underflow.

    1 while the largest absolute value lies in [2⁻²⁰, 2²⁰] (no copy, no multiply); otherwise the scale
    that brings it into [1, 2). Multiplying by a power of two is exact, and P&R is scale-invariant.
    """
    if largest == 0.0 or SAFE_RANGE[0] <= largest <= SAFE_RANGE[1]:
        return 1.0
    return math.ldexp(1.0, -math.frexp(largest)[1] + 1)


def warn_inexact_ints(values: np.ndarray, name: str) -> bool:
    """Warn (and return True) when 64-bit integers hold values float64 cannot represent (beyond 2⁵³ with
    low bits set): they are computed with as float64, so they change by rounding."""
    if values.dtype.kind not in "iu" or values.dtype.itemsize < 8:
        return False
    big = values[(values > 2**53) | (values < -(2**53))] if values.dtype.kind == "i" else values[values > 2**53]
    if not big.size:
        return False
    mag = np.abs(big).astype(np.uint64) if big.dtype.kind == "i" else big  # |−2⁶³| wraps to 2⁶³ as uint64
    # Exact in float64 iff the bits below the top 53 are zero (a float estimate of the bit length can only err
    # upwards, for values just below a power of two, which are inexact either way).
    low = np.frexp(mag.astype(np.float64))[1].astype(np.int64) - 53
    mask = (np.uint64(1) << low.clip(0).astype(np.uint64)) - np.uint64(1)
    inexact = bool(np.any(mag & mask))
    if inexact:
        warnings.warn(
            f"{name}: integer values beyond ±2⁵³ cannot be held exactly in float64 and are rounded "
            f"(e.g. {int(big[np.flatnonzero(mag & mask)[0]])}); pass floats, or integers within ±2⁵³, for exact values",
            stacklevel=3,
        )
    return inexact


def _largest_finite(fs: FeatureSet) -> float:
    """Largest absolute value of ``fs`` (ValueError naming the first row with NaN or Inf)."""
    largest, warned = 0.0, False
    step = _check_rows(fs.dim)
    for start in range(0, fs.n, step):
        rows = fs.data[start : start + step]
        if isinstance(fs.data, np.ndarray) and fs.data.dtype.kind == "f":
            # torch's kernels use every core, numpy's float16 ones one; a memmap is read by position.
            rows = torch.from_numpy(np.ascontiguousarray(read_rows(fs.data, start, start + step)))
        if isinstance(rows, torch.Tensor):
            # One reduction per row: NaN and ±Inf propagate through |x| and max.
            wide = rows.float() if rows.dtype in (torch.float16, torch.bfloat16) else rows  # fp64 stays fp64
            row_top = wide.abs().amax(dim=1) if rows.numel() else wide.new_zeros(rows.shape[0])
            ok = torch.isfinite(row_top).cpu().numpy()
            top = float(row_top.max()) if row_top.numel() and bool(ok.all()) else 0.0
        else:
            ok = np.isfinite(rows).all(axis=1)
            ints = rows.astype(np.float64) if rows.dtype.kind in "iu" else rows  # abs(int8 −128) wraps
            top = float(np.abs(ints).max()) if rows.size else 0.0
            warned = warned or (rows.dtype.itemsize == 8 and rows.size > 0 and warn_inexact_ints(rows, fs.name))
        if not bool(ok.all()):
            bad = start + int(np.flatnonzero(~ok)[0])
            raise ValueError(f"{fs.name}: features must be finite, found NaN or Inf in row {bad}")
        largest = max(largest, top)
    return largest
