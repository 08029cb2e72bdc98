"""Image sources: a folder (recursive), a zip archive, a list of files, or a uint8 tensor.

Files and zip members are untrusted: each is read within the bounds of :mod:`.reading` (regular files only,
a byte cap, a pixel cap from the header before decoding) and reduced to at most ``limits.max_side`` pixels
on its longer side before it becomes floats. Only PNG, JPEG, BMP, WebP and TIFF decoders are tried.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
import zipfile
from typing import IO, Any, Optional, Sequence

import numpy as np
import torch

from ..fileio import describe_os_error
from ..validation import check_choice, check_path_exists
from .reading import ENV, ImageError, ImageLimits, archive_members, open_archive, read_file, read_member

__all__ = ["IMAGE_EXTENSIONS", "ImageSource", "as_image_source", "is_image_input", "decode_image", "to_rgb8"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# The decoders tried, whatever a file is named: never Pillow's others (EPS would run Ghostscript).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "TIFF")
# Version of the bytes → pixels path, in the cache key: a change to it must not hit old entries.
DECODE_VERSION = "decode-v2"


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


class ImageSource(torch.utils.data.Dataset):
    """Decoded images as uint8 3×H×W tensors, with a content fingerprint.

    ``on_error="raise"`` (default) turns an unreadable image into a ValueError
    naming it; ``"skip"`` warns and leaves it out. ``limits``: see :class:`ImageLimits`
    (default: the module constants, overridden by ``EPRMETRICS_MAX_IMAGE_*``).
    """

    def __init__(
        self,
        kind: str,
        items: Sequence[Any],
        name: str,
        on_error: str = "raise",
        archive: Optional[str] = None,
        tensor: Optional[torch.Tensor] = None,
        limits: Optional[ImageLimits] = None,
    ) -> None:
        check_choice(on_error, "on_error", ("raise", "skip"))
        self.kind, self.items, self.name, self.on_error = kind, list(items), name, on_error
        self.archive, self.tensor = archive, tensor
        self.limits = limits if limits is not None else ImageLimits.from_env()
        self._zip: Optional[tuple[int, IO[bytes], zipfile.ZipFile]] = None

    def __len__(self) -> int:
        return len(self.items)

    def _archive(self) -> zipfile.ZipFile:
        # One handle per process: a handle opened before a DataLoader forks its workers would share its file
        # offset with them, and their reads would interleave.
        if self._zip is None or self._zip[0] != os.getpid():
            if self.archive is None:
                raise RuntimeError(f"{self.name}: a zip image source has no archive path")
            fh, zf = open_archive(self.archive, self.name)
            self._zip = (os.getpid(), fh, zf)
        return self._zip[2]

    def label(self, i: int) -> str:
        return f"{self.archive}:{self.items[i]}" if self.kind == "zip" else str(self.items[i])

    def error(self, i: int, reason: BaseException) -> ImageError:
        """The one-line error for image ``i``: which input, which file, why."""
        return ImageError(f"{self.name}: cannot read image {self.label(i)}: {reason}")

    def read_bytes(self, i: int) -> bytes:
        """The bytes of file (or zip member) ``i``, within ``limits.max_bytes``; an :class:`ImageError` naming it."""
        try:
            if self.kind == "zip":
                return read_member(self._archive(), self.items[i], self.limits)
            return read_file(self.items[i], self.limits)
        except ImageError as exc:
            raise self.error(i, exc) from None

    def load(self, i: int) -> tuple[torch.Tensor, bool, Optional[bytes]]:
        """Image ``i`` as uint8 3×H×W, whether it was reduced, and the :meth:`digest` of the bytes decoded (None
        for a tensor); an :class:`ImageError` naming it if unreadable."""
        if self.kind == "tensor":
            if self.tensor is None:
                raise RuntimeError(f"{self.name}: a tensor image source has no tensor")
            return self.tensor[i], False, None
        data = self.read_bytes(i)
        try:
            arr, reduced = decode_image(data, self.limits)
        except Exception as exc:  # Pillow raises many kinds for a damaged file; each becomes one line
            raise self.error(i, ImageError(_describe(exc))) from None
        if not arr.flags.writeable:  # Pillow's buffer: torch wants memory it may own
            arr = arr.copy()
        return torch.from_numpy(arr).permute(2, 0, 1), reduced, self.digest(i, data)

    def __getitem__(self, i: int) -> Optional[torch.Tensor]:
        try:
            return self.load(i)[0]
        except ImageError as exc:
            if self.on_error == "skip":
                warnings.warn(f"{exc} (skipped)", stacklevel=2)
                return None
            raise

    def digest(self, i: int, data: bytes) -> bytes:
        """What identifies image ``i`` read as ``data`` in the fingerprint: a hash of the bytes, length-prefixed,
        with the member's name for a zip (a file's name does not matter)."""
        member = self.items[i].encode() if self.kind == "zip" else b""
        h = hashlib.blake2b(struct.pack("<QQ", len(member), len(data)), digest_size=20)
        h.update(member)
        h.update(data)
        return h.digest()

    def combine(self, digests: Sequence[bytes]) -> str:
        """The fingerprint of images whose :meth:`digest` values are ``digests``, in order, with the decoding
        bounds that change pixels. The feature cache keys a lookup on the digests of a first read of every file
        and stores an entry under those of the bytes the workers decoded: a file changed between the two reads
        cannot put its new features under its old bytes' key."""
        h = hashlib.blake2b(digest_size=20)
        h.update(f"{DECODE_VERSION}|side={self.limits.max_side}|{self.kind}|{len(self)}|".encode())
        for d in digests:
            h.update(d)
        return h.hexdigest()

    def fingerprint(self) -> Optional[str]:
        """Hash of the images' bytes (see :meth:`combine`). None under ``on_error="skip"`` when a file cannot be
        read (such runs are not cached); under ``"raise"`` the error names the file."""
        if self.kind == "tensor":
            if self.tensor is None:
                raise RuntimeError(f"{self.name}: a tensor image source has no tensor")
            h = hashlib.blake2b(digest_size=20)
            h.update(f"{DECODE_VERSION}|side={self.limits.max_side}|{self.kind}|{len(self)}|".encode())
            h.update(f"{tuple(self.tensor.shape)}|{self.tensor.dtype}|".encode())
            h.update(self.tensor.contiguous().cpu().numpy().tobytes())
            return h.hexdigest()
        digests = []
        for i in range(len(self)):
            try:
                digests.append(self.digest(i, self.read_bytes(i)))
            except ImageError:
                if self.on_error == "skip":
                    return None
                raise
        return self.combine(digests)

    def close(self) -> None:
        """Close this process's handle on the zip archive (reopened when needed)."""
        held, self._zip = getattr(self, "_zip", None), None
        if held is not None and held[0] == os.getpid():
            held[2].close()
            held[1].close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # at interpreter exit the modules it needs may be gone already
            pass

    def __getstate__(self) -> dict:  # the zip handle does not cross process boundaries
        state = dict(self.__dict__)
        state["_zip"] = None
        return state


def _describe(exc: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, ImageError):
        return str(exc)
    if isinstance(exc, UnidentifiedImageError):  # its text shows a memory address, not the file
        return "not a PNG, JPEG, BMP, WebP or TIFF image (or a damaged one)"
    return f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no detail'}"


# Modes Image.reduce cannot work in, and the mode each is reduced in instead (to_rgb8 gives the same colours).
_REDUCE_AS = {"1": "L", "P": "RGB", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def decode_image(data: bytes, limits: ImageLimits) -> tuple[np.ndarray, bool]:
    """Image bytes → H×W×3 uint8 within ``limits``, and whether the image was reduced.

    The pixel count is checked from the header before anything is decoded; an image with a side longer
    than ``limits.max_side`` is reduced (a JPEG while decoding, by Pillow's ``draft``; then ``reduce``, a box
    filter, by a whole factor) before it is converted, so no full-size copy is ever made in RGB or float.
    """
    from PIL import Image

    with warnings.catch_warnings():  # our pixel cap is below Pillow's warning: it decides, not a warning
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        Image.init()
        img = Image.open(io.BytesIO(data), formats=[f for f in IMAGE_FORMATS if f in Image.OPEN])
    with img:
        w, h = img.size
        if w * h > limits.max_pixels:
            raise ImageError(
                f"it is {w}×{h} = {w * h:,} pixels, over the limit of {limits.max_pixels:,}; if it is genuine, "
                f"raise the limit with {ENV['max_pixels']}=N (or limits=ImageLimits(max_pixels=N))"
            )
        factor = _ceil_div(max(w, h), limits.max_side)
        if factor > 1 and img.format in ("JPEG", "MPO"):
            img.draft(None, (_ceil_div(w, factor), _ceil_div(h, factor)))
        img.load()
        out: Any = img
        if max(out.size) > limits.max_side:
            out = out.convert(_REDUCE_AS[out.mode]) if out.mode in _REDUCE_AS else out
            out = out.reduce(_ceil_div(max(out.size), limits.max_side))
        return to_rgb8(out), factor > 1


# Integer modes wider than 8 bits (16-bit PNG/TIFF grayscale) and their full scale.
_WIDE_MODES = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535, "I": 65535}


def to_rgb8(img: Any) -> np.ndarray:
    """A PIL image as H×W×3 uint8: grayscale, palette, RGBA, CMYK → RGB; 16-bit values scaled to 8 bits.

    PIL's own conversion of 16-bit grayscale clips every value above 255 (a nearly white image), so
    wide integer modes are scaled by their full range first (65535 → 255, rounded).
    """
    if img.mode in _WIDE_MODES:
        wide = np.asarray(img, dtype=np.float64)
        gray = np.clip(np.rint(wide * (255.0 / _WIDE_MODES[img.mode])), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "F":  # 32-bit float grayscale: values taken as 0..255
        gray = np.clip(np.rint(np.asarray(img, dtype=np.float64)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8)


def is_image_input(value: Any) -> bool:
    """True for inputs that hold images rather than features."""
    if isinstance(value, ImageSource):
        return True
    if isinstance(value, torch.Tensor):
        return value.dtype == torch.uint8 and value.ndim in (3, 4)  # N×H×W is grayscale
    if isinstance(value, np.ndarray):
        return value.dtype == np.uint8 and value.ndim in (3, 4)
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(isinstance(v, (str, os.PathLike)) for v in value)
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        return os.path.isdir(path) or path.lower().endswith(".zip")
    return False


def _channels_first(value: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 images as N×3×H×W (grayscale repeated to three channels)."""
    if value.ndim == 3:  # N×H×W grayscale
        value = value[:, None]
    if value.shape[1] not in (1, 3) and value.shape[-1] in (1, 3):
        value = value.permute(0, 3, 1, 2)
    if value.shape[1] == 1:
        value = value.expand(-1, 3, -1, -1)
    if value.shape[1] != 3:
        raise ValueError(
            f"{name}: expected uint8 images N×3×H×W, N×H×W×3 or grayscale N×H×W, got shape {tuple(value.shape)}"
        )
    return value


def _walk_error(name: str) -> Any:
    def fail(exc: OSError) -> None:  # os.walk would otherwise leave an unreadable folder out, silently
        raise ValueError(f"{name}: cannot list the folder {exc.filename!r}: {describe_os_error(exc)}") from None

    return fail


def _holds(target: str, root: str) -> bool:
    """Whether the real folder ``target`` is ``root`` or one of its ancestors (a link to it is a loop)."""
    return root == target or root.startswith(target.rstrip(os.sep) + os.sep)


def _folder_images(path: str, name: str) -> list[str]:
    """The image files under ``path``, sorted; links to folders are followed (leaving them out would leave
    their images out silently), each real folder once. A link to a folder already read or to one holding
    ``path`` (``..``, ``/``: a loop, or the whole disk) is left out with a warning naming it."""
    root, st = os.path.realpath(path), os.stat(path)
    seen, again, files = {(st.st_dev, st.st_ino)}, [], []
    for top, dirs, names in os.walk(path, onerror=_walk_error(name), followlinks=True):
        keep = []
        for d in dirs:
            full = os.path.join(top, d)
            try:
                st = os.stat(full)
            except OSError as exc:
                _walk_error(name)(exc)
            if (st.st_dev, st.st_ino) in seen or (os.path.islink(full) and _holds(os.path.realpath(full), root)):
                again.append(full)
                continue
            seen.add((st.st_dev, st.st_ino))
            keep.append(d)
        dirs[:] = keep
        files += [os.path.join(top, f) for f in names if _is_image_name(f)]
    if again:
        warnings.warn(
            f"{name}: {len(again)} linked folders were left out: they lead to a folder already read or to one "
            f"holding the input (a link loop, or two paths to the same images), the first: {again[0]} -> "
            f"{os.path.realpath(again[0])}",
            stacklevel=3,
        )
    return sorted(files)


def as_image_source(
    value: Any, name: str, on_error: str = "raise", limits: Optional[ImageLimits] = None
) -> ImageSource:
    """Folder / zip / list of files / uint8 tensor → :class:`ImageSource`.

    Tensors: N×3×H×W, N×H×W×3, or grayscale N×1×H×W, N×H×W×1, N×H×W (repeated to 3 channels).
    Files: whether each is a regular image within ``limits`` is found when it is read (and honours
    ``on_error``); a zip archive holding two image members of one name is refused here.
    """
    if isinstance(value, ImageSource):
        return value
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        value = _channels_first(value, name)
        if value.shape[0] == 0:
            raise ValueError(f"{name}: no images in the tensor")
        return ImageSource("tensor", range(value.shape[0]), name, on_error, tensor=value.contiguous(), limits=limits)
    if isinstance(value, (list, tuple)):
        files = [os.fspath(v) for v in value]
        missing = [f for f in files if not os.path.lexists(f)]
        if missing:
            raise FileNotFoundError(f"{name}: no such image file: {missing[0]!r}")
        return ImageSource("files", files, name, on_error, limits=limits)
    path = check_path_exists(value, name)
    if os.path.isdir(path):
        files = _folder_images(path, name)
        if not files:
            raise ValueError(f"{name}: no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path!r}")
        return ImageSource("files", files, name, on_error, limits=limits)
    members = archive_members(path, name, IMAGE_EXTENSIONS)
    if not members:
        raise ValueError(f"{name}: no images ({', '.join(IMAGE_EXTENSIONS)}) in archive {path!r}")
    return ImageSource("zip", members, name, on_error, archive=path, limits=limits)
