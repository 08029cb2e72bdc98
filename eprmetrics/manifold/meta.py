"""``manifold.json``: read only when it is the JSON a save wrote, with every key, type and value it must have.

The content hash is a SHA-256 over the file's values in a canonical form (sorted keys, no spaces), the hash
of the radii arrays and the features' fingerprint included: an edited scale, k or path, or a file taken from
another manifold, no longer matches. A hash is no signature — anyone can recompute it — so the values are
also checked against what a fit always produces (a scale that is the power of two of the largest value,
increasing k below n).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from ..fileio import InputFileError, open_regular
from ..inputs import pair_scale

__all__ = ["FORMAT", "MANIFOLD_VERSION", "MANIFOLD_FILE", "FIX", "ManifoldError", "content_hash", "read_meta"]

FORMAT = "eprmetrics.Manifold"
MANIFOLD_VERSION = 2
MANIFOLD_FILE = "manifold.json"  # the file that makes a folder a manifold
FIX = "fit and save the manifold again"
_META_MAX_BYTES = 1 << 20


class ManifoldError(InputFileError):
    """A manifold folder that :meth:`~eprmetrics.Manifold.save` did not write, or that changed since (a
    ``ValueError``): one line naming the file, what is wrong and what to do."""


def content_hash(meta: dict[str, Any]) -> str:
    """SHA-256 of every value of ``meta`` but the content hash itself, in canonical JSON."""
    body = {key: value for key, value in meta.items() if key != "content_hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class _Number:  # a JSON number: int or float, not bool
    pass


_SCHEMA: dict[str, Any] = {
    "n": int,
    "dim": int,
    "k": list,
    "scale": _Number,
    "largest": _Number,
    "features": dict,
    "radii_hash": str,
    "extractor": (dict, type(None)),
    "content_hash": str,
}
_FEATURES_SCHEMA = {"file": str, "copied": bool, "dtype": str, "fingerprint": str}
_EXTRACTOR_SCHEMA = {"name": str, "identity": (str, type(None))}
_TYPE_NAMES = {int: "an integer", list: "a list", _Number: "a number", dict: "an object", str: "a string"}


def read_meta(meta_file: str) -> dict[str, Any]:
    try:
        with open_regular(meta_file, "manifold", _META_MAX_BYTES) as fh:
            raw = fh.read(_META_MAX_BYTES + 1)
    except InputFileError:
        raise ManifoldError(
            f"manifold: {meta_file} is not a regular file of at most {_META_MAX_BYTES >> 20} MiB (a saved one is a "
            f"few hundred bytes); {FIX}"
        ) from None
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise ManifoldError(f"manifold: {meta_file} is not valid JSON ({reason}); {FIX}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ManifoldError(f"manifold: {meta_file} is not an eprmetrics manifold (no format {FORMAT!r}); {FIX}")
    _check_version(meta_file, meta.get("version"))
    _check_keys(meta_file, meta, _SCHEMA, "")
    _check_keys(meta_file, meta["features"], _FEATURES_SCHEMA, "features.")
    if meta["extractor"] is not None:
        _check_keys(meta_file, meta["extractor"], _EXTRACTOR_SCHEMA, "extractor.")
    if content_hash(meta) != meta["content_hash"]:
        raise ManifoldError(
            f"manifold: {meta_file} was changed after it was saved (its content hash differs: an edited scale, k, n "
            f"or path); {FIX}"
        )
    _check_scalars(meta_file, meta)
    return meta


def _float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_version(meta_file: str, version: Any) -> None:
    if version == MANIFOLD_VERSION:
        return
    if version == 1:
        raise ManifoldError(
            f"manifold: {meta_file} was saved in format version 1, which has no content hash and cannot be checked; "
            f"fit and save it again with this version (CLI: eprmetrics manifold REAL OUT --overwrite)"
        )
    if isinstance(version, int) and not isinstance(version, bool) and version > MANIFOLD_VERSION:
        raise ManifoldError(
            f"manifold: {meta_file} is format version {version}, newer than this eprmetrics reads "
            f"({MANIFOLD_VERSION}); upgrade eprmetrics"
        )
    raise ManifoldError(f"manifold: {meta_file} has format version {version!r}, expected {MANIFOLD_VERSION}; {FIX}")


def _check_keys(meta_file: str, obj: Any, schema: dict[str, Any], where: str) -> None:
    if not isinstance(obj, dict):
        raise ManifoldError(f"manifold: {meta_file}: {where[:-1]} expected an object, got {obj!r:.40}; {FIX}")
    for key, kind in schema.items():
        if key not in obj:
            raise ManifoldError(f"manifold: {meta_file} lacks the key {where}{key}; {FIX}")
        value = obj[key]
        if not _is(value, kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            expected = " or ".join(_TYPE_NAMES.get(t, "null") for t in kinds)
            raise ManifoldError(
                f"manifold: {meta_file}: {where}{key} expected {expected}, got {type(value).__name__} "
                f"{json.dumps(value)[:40]}; {FIX}"
            )


def _is(value: Any, kind: Any) -> bool:
    if isinstance(kind, tuple):
        return any(_is(value, one) for one in kind)
    if isinstance(value, bool):
        return kind is bool
    if kind is _Number:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _check_scalars(meta_file: str, meta: dict[str, Any]) -> None:
    """Values a saved manifold always has (the content hash matched: these catch a forged hash)."""
    n, dim, k, scale = (meta[key] for key in ("n", "dim", "k", "scale"))
    largest = _float(meta["largest"])
    problems = [
        (n < 2, f"n={n}: expected at least 2 samples"),
        (dim < 1, f"dim={dim}: expected at least 1 feature column"),
        (
            not k or not all(_is(v, int) for v in k) or sorted(set(k)) != k or min(k) < 1 or max(k) >= n,
            f"k={k}: expected increasing integers from 1 to n − 1",
        ),
        (not math.isfinite(largest) or largest < 0, f"largest={largest}: expected a finite value ≥ 0"),
        (
            not math.isfinite(largest) or scale != pair_scale(largest),
            f"scale={scale}: expected {pair_scale(largest) if math.isfinite(largest) else 'a power of two'}",
        ),
    ]
    for bad, what in problems:
        if bad:
            raise ManifoldError(f"manifold: {meta_file}: {what}; {FIX}")
