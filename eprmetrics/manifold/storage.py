"""A manifold's folder: written whole or not at all, read back only when every value is the one saved.

Format version 2 (``docs/manifold.md``): ``manifold.json`` holds the scalars (n, dim, k, scale, largest value),
where the features are and their fingerprint, the extractor that made them, the hash of the radii arrays and a
content hash over all of it; ``radii.npz`` the four radii arrays; ``features.npy`` the features (unless saved
with ``features=False``). :func:`read_folder` checks, before anything is used: the JSON and its keys and types,
the content hash (an edited scale or k), the ``.npz`` headers against the file's size (a header claiming 10¹²
rows is refused before allocating), the radii hash (radii of another manifold), the radii's values and shapes,
the features file's place (inside the folder), header and fingerprint. Every failure is one line naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import IO, Any, Callable, Optional, Union

import numpy as np
import torch

from ..fileio import OutputError, atomic_folder, open_regular, probe_writable
from ..npyfile import NpyError, NpyHeader, npy_header, read_npz
from .meta import FIX, FORMAT, MANIFOLD_FILE, MANIFOLD_VERSION, ManifoldError, content_hash, read_meta

__all__ = [
    "FORMAT",
    "MANIFOLD_VERSION",
    "MANIFOLD_FILE",
    "RADII_FILE",
    "FEATURES_FILE",
    "RADII_DTYPES",
    "ManifoldError",
    "DestinationError",
    "ExtractorRecord",
    "Stored",
    "fingerprint",
    "check_destination",
    "build_meta",
    "write_folder",
    "read_folder",
]

RADII_FILE, FEATURES_FILE = "radii.npz", "features.npy"
RADII_DTYPES = {"vals": np.dtype("<f4"), "idx": np.dtype("<i8"), "sqdist": np.dtype("<f8"), "index": np.dtype("<i8")}
_FINGERPRINT_ROWS = 64


class DestinationError(OutputError, ValueError):
    """A folder :meth:`~eprmetrics.Manifold.save` refuses to write (it exists, or it is a link): an
    :class:`~eprmetrics.fileio.OutputError` and a ``ValueError`` (the path argument is refused)."""


@dataclasses.dataclass(frozen=True)
class ExtractorRecord:
    """The network that made a manifold's features from images: its name (a registry name, or
    ``custom (ClassName)``) and :func:`~eprmetrics.features.extractor_identity` (None: not identifiable)."""

    name: str
    identity: Optional[str]


@dataclasses.dataclass
class Stored:
    """What a checked manifold folder holds."""

    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]
    features: np.ndarray
    extractor: Optional[ExtractorRecord]


def fingerprint(data: Union[np.ndarray, torch.Tensor]) -> str:
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


def _arrays_hash(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()  # with the CPU's SHA instructions: twice blake2b's speed here
    for name in RADII_DTYPES:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.data)
    return "sha256:" + h.hexdigest()


# ----------------------------------------------------------------------------------------------- writing


def check_destination(path: Union[str, os.PathLike], overwrite: bool, keep: Optional[str] = None) -> tuple[str, bool]:
    """The absolute folder to save into and whether it exists, or a :class:`DestinationError`: a place that
    cannot be written, a link, a file, a manifold without ``overwrite``, a non-empty folder that is no
    manifold (never replaced, so that a mistyped OUT cannot delete a folder of images), or a folder
    holding ``keep`` (features saved by path)."""
    target = os.path.abspath(os.fspath(path))
    if os.path.islink(target):
        raise DestinationError(
            f"manifold: {target} is a symbolic link; give a real folder (links are not written through)"
        )
    try:  # a read-only place or a full disk is found now, not after the fit
        probe_writable(os.path.dirname(target), "manifold", folder=True)
    except OutputError as exc:
        raise DestinationError(str(exc)) from None
    if not os.path.lexists(target):
        return target, False
    if not os.path.isdir(target):
        raise DestinationError(f"manifold: {target} exists and is not a folder; give a new folder")
    if os.path.lexists(os.path.join(target, MANIFOLD_FILE)):
        if not overwrite:
            raise DestinationError(
                f"manifold: {target} already holds a manifold; pass overwrite=True (CLI: --overwrite) to replace it, "
                f"or give a new folder"
            )
    elif os.listdir(target):
        raise DestinationError(
            f"manifold: {target} is a folder that holds no manifold ({MANIFOLD_FILE}) and is not empty; give a new "
            f"or empty folder (overwrite replaces only a manifold)"
        )
    if keep is not None and _inside(os.path.realpath(keep), os.path.realpath(target)):
        raise DestinationError(
            f"manifold: the features file {keep} lies in {target}, which saving replaces; save with features=True "
            f"or into another folder"
        )
    return target, True


def build_meta(
    fields: dict[str, Any], arrays: dict[str, np.ndarray], extractor: Optional[ExtractorRecord]
) -> dict[str, Any]:
    """``manifold.json``'s content: ``fields`` (n, dim, k, scale, largest, features), the radii's hash, the
    extractor, and the content hash over all of it."""
    meta = {"format": FORMAT, "version": MANIFOLD_VERSION, **fields, "radii_hash": _arrays_hash(arrays)}
    meta["extractor"] = None if extractor is None else dataclasses.asdict(extractor)
    meta["content_hash"] = content_hash(meta)
    return meta


def write_folder(
    target: str, replace: bool, meta: dict[str, Any], arrays: dict[str, np.ndarray], features: Optional[np.ndarray]
) -> None:
    """Write the folder into a new temporary sibling and swap it in (``fileio.atomic_folder``): an interrupted
    save leaves the old manifold as it was. Each file is created anew (never written through a link) and
    synced; ``manifold.json`` comes last."""
    with atomic_folder(target, "manifold", overwrite=replace) as folder:
        contiguous = {key: np.ascontiguousarray(value) for key, value in arrays.items()}
        _write(folder, RADII_FILE, lambda f: np.savez(f, **contiguous))  # type: ignore[arg-type]
        if features is not None:
            _write(folder, FEATURES_FILE, lambda f: np.save(f, features))
        _write(folder, MANIFOLD_FILE, lambda f: f.write(json.dumps(meta, indent=1).encode()))


def _write(folder: str, name: str, writer: Callable[[IO[bytes]], Any]) -> None:
    with open(os.path.join(folder, name), "xb") as f:
        writer(f)
        f.flush()
        os.fsync(f.fileno())


# ----------------------------------------------------------------------------------------------- reading


def read_folder(path: Union[str, os.PathLike], features: Optional[Union[str, os.PathLike]]) -> Stored:
    """The checked content of manifold folder ``path`` (``features``: the features' ``.npy`` elsewhere).

    Raises:
        FileNotFoundError: no folder, no ``manifold.json``, or no features file.
        ManifoldError: anything else that is not as saved (one line naming the file).
    """
    folder = os.fspath(path)
    meta_file = os.path.join(folder, MANIFOLD_FILE)
    if not os.path.isfile(meta_file):
        raise FileNotFoundError(
            f"manifold: {folder!r} holds no {MANIFOLD_FILE}; expected a folder written by Manifold.save"
        )
    meta = read_meta(meta_file)
    radii_file = os.path.join(folder, RADII_FILE)
    arrays = _read_radii(radii_file, meta)
    if _arrays_hash(arrays) != meta["radii_hash"]:
        raise ManifoldError(
            f"manifold: {radii_file} is not the radii this manifold was saved with (its hash differs: replaced, "
            f"edited, or taken from another manifold); {FIX}"
        )
    _check_radii_values(radii_file, arrays, meta["n"])
    source = _features_path(folder, meta_file, meta["features"], features)
    data = _open_features(source, meta, features is not None)
    extractor = None if meta["extractor"] is None else ExtractorRecord(**meta["extractor"])
    return Stored(meta, arrays, data, extractor)


def _read_radii(radii_file: str, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    n, k_max = meta["n"], max(meta["k"])

    def check(name: str, header: NpyHeader) -> Optional[str]:
        if header.dtype != RADII_DTYPES[name] or header.fortran:
            return (
                f"holds {header.dtype} in {'Fortran' if header.fortran else 'C'} order; expected {RADII_DTYPES[name]}"
            )
        shape = header.shape
        ok = len(shape) == 2 and shape[0] == n
        ok = ok and (shape[1] == k_max if name in ("sqdist", "index") else k_max <= shape[1] <= n - 1)
        return None if ok else f"has shape {shape}; expected {n} rows of {k_max} or more k-NN (n = {n}, k ≤ {k_max})"

    if not os.path.lexists(radii_file):
        raise ManifoldError(f"manifold: {radii_file} is missing; {FIX}")
    try:
        with open_regular(radii_file, "manifold") as fh:
            arrays = read_npz(fh, tuple(RADII_DTYPES), check)
    except NpyError as exc:
        raise ManifoldError(f"manifold: {radii_file}: {exc}; {FIX}") from None
    if arrays["vals"].shape != arrays["idx"].shape:
        raise ManifoldError(f"manifold: {radii_file}: vals and idx differ in shape; {FIX}")
    return arrays


def _check_radii_values(radii_file: str, arrays: dict[str, np.ndarray], n: int) -> None:
    for name in ("vals", "sqdist"):
        a = arrays[name]
        if not np.isfinite(a).all() or (a < 0).any():
            raise ManifoldError(f"manifold: {radii_file}: {name} holds negative, NaN or infinite distances; {FIX}")
    for name in ("idx", "index"):
        a = arrays[name]
        if a.min() < 0 or a.max() >= n:
            raise ManifoldError(f"manifold: {radii_file}: {name} holds indices outside 0…{n - 1}; {FIX}")
    sqdist = arrays["sqdist"]
    if (sqdist[:, 1:] < sqdist[:, :-1]).any():
        raise ManifoldError(f"manifold: {radii_file}: sqdist is not in ascending order; {FIX}")


def _features_path(
    folder: str, meta_file: str, entry: dict[str, Any], override: Optional[Union[str, os.PathLike]]
) -> str:
    """Where the features are: ``override``, the absolute path recorded by ``save(features=False)``, or a
    file inside the folder (no absolute path, no ``..``, no symbolic link leading out of it)."""
    if override is not None:
        return os.fspath(override)
    name = entry["file"]
    if not entry["copied"]:
        if not os.path.isabs(name):
            raise ManifoldError(f"manifold: {meta_file}: features.file {name!r} expected an absolute path; {FIX}")
        return name
    if os.path.isabs(name) or os.pardir in name.replace("\\", "/").split("/"):
        raise ManifoldError(
            f"manifold: {meta_file}: features.file {name!r} leads outside the manifold's folder; {FIX}, or pass "
            f"features=PATH"
        )
    source = os.path.join(folder, name)
    if os.path.lexists(source) and not _inside(os.path.realpath(source), os.path.realpath(folder)):
        raise ManifoldError(
            f"manifold: {source} is a symbolic link to {os.path.realpath(source)}, outside the manifold's folder; "
            f"copy the file into the folder, or pass features=PATH"
        )
    return source


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _open_features(source: str, meta: dict[str, Any], given: bool) -> np.ndarray:
    if not os.path.exists(source):
        raise FileNotFoundError(f"manifold: features file {source!r} not found; pass features=PATH to where it is")
    expected = (meta["n"], meta["dim"])
    try:
        with open_regular(source, "manifold features") as fh:
            header = npy_header(fh)
    except NpyError as exc:
        raise ManifoldError(f"manifold: {source}: {exc}; {FIX}") from None
    fix = "pass the original file as features=, or fit the manifold again"
    if header.shape != expected or header.dtype.str != meta["features"]["dtype"]:
        raise ManifoldError(
            f"manifold: {source} holds {' × '.join(map(str, header.shape))} {header.dtype} features, not the "
            f"{expected[0]} × {expected[1]} {meta['features']['dtype']} this manifold was fitted on; {fix}"
        )
    data = np.load(source, mmap_mode="r")
    if fingerprint(data) != meta["features"]["fingerprint"]:
        raise ManifoldError(
            f"manifold: {source} is not the feature file this manifold was fitted on (its values differ"
            f"{'' if given else ': replaced or rewritten'}); {fix}"
        )
    return data
