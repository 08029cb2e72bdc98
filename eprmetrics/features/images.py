"""Image sources: a folder (recursive), a zip archive, a list of files, or a uint8 tensor."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..validation import check_choice, check_path_exists

__all__ = ["IMAGE_EXTENSIONS", "ImageSource", "as_image_source", "is_image_input"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


class ImageSource(torch.utils.data.Dataset):
    """Decoded images as uint8 3×H×W tensors, with a content fingerprint.

    ``on_error="raise"`` (default) turns an unreadable image into a ValueError
    naming it; ``"skip"`` warns and leaves it out.
    """

    def __init__(
        self,
        kind: str,
        items: Sequence[Any],
        name: str,
        on_error: str = "raise",
        archive: Optional[str] = None,
        tensor: Optional[torch.Tensor] = None,
    ) -> None:
        check_choice(on_error, "on_error", ("raise", "skip"))
        self.kind, self.items, self.name, self.on_error, self.archive, self.tensor = (
            kind,
            list(items),
            name,
            on_error,
            archive,
            tensor,
        )
        self._zip: Optional[zipfile.ZipFile] = None

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, i: int) -> bytes:
        if self.kind == "zip":
            if self._zip is None:  # one handle per (worker) process
                if self.archive is None:
                    raise RuntimeError(f"{self.name}: a zip image source has no archive path")
                self._zip = zipfile.ZipFile(self.archive)
            return self._zip.read(self.items[i])
        with open(self.items[i], "rb") as fh:
            return fh.read()

    def label(self, i: int) -> str:
        return f"{self.archive}:{self.items[i]}" if self.kind == "zip" else str(self.items[i])

    def __getitem__(self, i: int) -> Optional[torch.Tensor]:
        if self.kind == "tensor":
            if self.tensor is None:
                raise RuntimeError(f"{self.name}: a tensor image source has no tensor")
            return self.tensor[i]
        from PIL import Image

        try:
            with Image.open(io.BytesIO(self._read(i))) as img:
                img.load()
                arr = to_rgb8(img)
        except Exception as exc:
            msg = f"{self.name}: cannot read image {self.label(i)}: {exc.__class__.__name__}: {exc}"
            if self.on_error == "skip":
                warnings.warn(msg + " (skipped)", stacklevel=2)
                return None
            raise ValueError(msg) from None
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def fingerprint(self) -> str:
        """Hash of the images' bytes, in order (file names do not matter)."""
        h = hashlib.blake2b(digest_size=20)
        h.update(f"{self.kind}:{len(self)}".encode())
        if self.kind == "tensor":
            if self.tensor is None:
                raise RuntimeError(f"{self.name}: a tensor image source has no tensor")
            h.update(self.tensor.contiguous().cpu().numpy().tobytes())
        else:
            for i in range(len(self)):
                h.update(self._read(i))
        return h.hexdigest()

    def __getstate__(self) -> dict:  # the zip handle does not cross process boundaries
        state = dict(self.__dict__)
        state["_zip"] = None
        return state


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


def as_image_source(value: Any, name: str, on_error: str = "raise") -> ImageSource:
    """Folder / zip / list of files / uint8 tensor → :class:`ImageSource`.

    Tensors: N×3×H×W, N×H×W×3, or grayscale N×1×H×W, N×H×W×1, N×H×W (repeated to 3 channels).
    """
    if isinstance(value, ImageSource):
        return value
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if isinstance(value, torch.Tensor):
        value = _channels_first(value, name)
        if value.shape[0] == 0:
            raise ValueError(f"{name}: no images in the tensor")
        return ImageSource("tensor", range(value.shape[0]), name, on_error, tensor=value.contiguous())
    if isinstance(value, (list, tuple)):
        files = [os.fspath(v) for v in value]
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise FileNotFoundError(f"{name}: no such image file: {missing[0]!r}")
        return ImageSource("files", files, name, on_error)
    path = check_path_exists(value, name)
    if os.path.isdir(path):
        files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names if _is_image_name(f))
        if not files:
            raise ValueError(f"{name}: no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path!r}")
        return ImageSource("files", files, name, on_error)
    try:
        with zipfile.ZipFile(path) as zf:
            members = sorted(m for m in zf.namelist() if _is_image_name(m) and not m.endswith("/"))
    except zipfile.BadZipFile:
        raise ValueError(f"{name}: {path!r} is not a valid zip archive") from None
    if not members:
        raise ValueError(f"{name}: no images ({', '.join(IMAGE_EXTENSIONS)}) in archive {path!r}")
    return ImageSource("zip", members, name, on_error, archive=path)
