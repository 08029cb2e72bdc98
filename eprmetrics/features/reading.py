"""Untrusted image bytes, read within bounds: regular files and zip members only, a byte cap on each, and
the limits that bound decoding (pixels, side).

Nothing here can block or read without bound: a path is checked to be a regular file before it is opened
(never a FIFO, a device or a link to ``/dev/zero``, see :mod:`eprmetrics.fileio`), a zip member's size is
taken from its header before a byte is read, and every read asks for at most the cap plus one byte, so a
file that grows or a header that lies cannot exceed it. Each refusal is an :class:`ImageError` whose text
says what was wrong and how to change the limit; the image source adds which input and which file.

The limits (:class:`ImageLimits`) default to the module constants below; the environment variables
``EPRMETRICS_MAX_IMAGE_BYTES``, ``EPRMETRICS_MAX_IMAGE_PIXELS`` and ``EPRMETRICS_MAX_IMAGE_SIDE`` override
them (also on the command line), and ``extract_features(..., limits=ImageLimits(...))`` sets them per call.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import zipfile
from typing import IO, Optional

from ..fileio import InputFileError, describe_os_error, open_regular

__all__ = [
    "ImageError",
    "ImageLimits",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "read_file",
    "read_member",
    "open_archive",
    "archive_members",
]

MAX_IMAGE_BYTES = 128 * 2**20
"""Largest image file or zip member read, in bytes (128 MiB)."""
MAX_IMAGE_PIXELS = 64 * 2**20
"""Largest image decoded, in pixels from its header (67,108,864, e.g. 8192×8192): below Pillow's own warning
(89,478,485) and refusal (178,956,970), so a decompression bomb is refused before it is decoded."""
MAX_IMAGE_SIDE = 2048
"""Images with a longer side are reduced (box filter; JPEG while decoding) to at most this before they become
floats, with a warning. Above the sizes generators produce (up to 1024-2048), so their features match a
full-size resize; it bounds the memory of one image at ~50 MB as floats."""

ENV = {
    "max_bytes": "EPRMETRICS_MAX_IMAGE_BYTES",
    "max_pixels": "EPRMETRICS_MAX_IMAGE_PIXELS",
    "max_side": "EPRMETRICS_MAX_IMAGE_SIDE",
}
PIL_HARD_LIMIT = 2 * 89_478_485  # Pillow refuses larger images whatever we allow


class ImageError(ValueError):
    """An image that cannot be read (or is refused); the message is one line."""


@dataclasses.dataclass(frozen=True)
class ImageLimits:
    """Bounds on reading one image.

    Args:
        max_bytes: largest file or zip member read, in bytes.
        max_pixels: largest image decoded, width × height from its header (at most Pillow's 178,956,970).
        max_side: longer sides are reduced to at most this before float conversion (with a warning).
    """

    max_bytes: int = MAX_IMAGE_BYTES
    max_pixels: int = MAX_IMAGE_PIXELS
    max_side: int = MAX_IMAGE_SIDE

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"limits: {field.name} must be a positive int, got {value!r}")
        if self.max_pixels > PIL_HARD_LIMIT:
            raise ValueError(
                f"limits: max_pixels must be at most {PIL_HARD_LIMIT:,} (Pillow refuses larger images), "
                f"got {self.max_pixels:,}"
            )

    @classmethod
    def from_env(cls) -> "ImageLimits":
        """The defaults, overridden by ``EPRMETRICS_MAX_IMAGE_BYTES`` / ``_PIXELS`` / ``_SIDE`` where set."""
        values = {}
        for field, var in ENV.items():
            text = os.environ.get(var, "").strip()
            if not text:
                continue
            try:
                values[field] = int(text.replace("_", ""))
            except ValueError:
                raise ValueError(f"{var}: expected a positive whole number, got {text!r}") from None
            if values[field] < 1:
                raise ValueError(f"{var}: expected a positive whole number, got {text!r}")
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{', '.join(ENV[f] for f in values)}: {exc}") from None


def _too_large(size: int, limits: ImageLimits, what: str = "") -> ImageError:
    return ImageError(
        f"{what}{size:,} bytes, over the limit of {limits.max_bytes:,} per image; if it is genuine, raise the "
        f"limit with {ENV['max_bytes']}=N (or limits=ImageLimits(max_bytes=N))"
    )


def _bounded_read(fh: IO[bytes], limits: ImageLimits) -> bytes:
    data = fh.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise _too_large(limits.max_bytes, limits, "more than ")
    return data


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


def read_file(path: str, limits: ImageLimits) -> bytes:
    """The bytes of the regular file ``path`` (links followed), at most ``limits.max_bytes``. Nothing is opened
    before the path is known to be a regular file within the cap, so a FIFO cannot block."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError("it does not exist (or is a link to nothing)") from None
    except OSError as exc:
        raise ImageError(describe_os_error(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"it is {_file_kind(st.st_mode)}, not a regular file; give image files only")
    if st.st_size > limits.max_bytes:
        raise _too_large(st.st_size, limits)
    try:
        with open_regular(path, "image") as fh:
            return _bounded_read(fh, limits)
    except InputFileError:
        raise ImageError("it changed while it was opened and is no longer a regular file") from None
    except OSError as exc:
        raise ImageError(describe_os_error(exc)) from None


def open_archive(path: str, name: str) -> tuple[IO[bytes], zipfile.ZipFile]:
    """The zip archive ``path`` opened for reading (only a regular file: a FIFO cannot block the open)."""
    fh = open_regular(path, name)
    try:
        return fh, zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        fh.close()
        raise ValueError(f"{name}: {path!r} is not a valid zip archive ({exc}); give a .zip file") from None


def archive_members(path: str, name: str, wanted: tuple[str, ...]) -> list[str]:
    """The image members of the zip ``path`` (names ending in ``wanted``), sorted; a name found twice is an
    error naming it (which of the two to read would be a guess)."""
    fh, zf = open_archive(path, name)
    with fh, zf:
        names = [i.filename for i in zf.infolist() if not i.is_dir() and i.filename.lower().endswith(wanted)]
    seen: set[str] = set()
    for member in names:
        if member in seen:
            raise ValueError(
                f"{name}: the zip archive {path!r} holds two members named {member!r}; which one to read is "
                f"ambiguous: rebuild the archive with unique names"
            )
        seen.add(member)
    return sorted(names)


_ZIP_ERRORS = (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, OSError, ValueError)


def read_member(zf: zipfile.ZipFile, member: str, limits: ImageLimits) -> bytes:
    """The bytes of ``member``, refused by its header's size before any is read, and read with a bounded read
    (a header that understates the size cannot exceed the cap either; zipfile checks the CRC at the end)."""
    try:
        info: Optional[zipfile.ZipInfo] = zf.getinfo(member)
    except KeyError:
        info = None
    if info is None:
        raise ImageError("no such member in the archive (it changed after it was listed)")
    if info.flag_bits & 0x1:
        raise ImageError("the member is encrypted (password-protected zips are not supported): extract it first")
    if info.file_size > limits.max_bytes:
        raise _too_large(info.file_size, limits, "its header says ")
    try:
        with zf.open(info) as fh:
            return _bounded_read(fh, limits)
    except ImageError:
        raise
    except _ZIP_ERRORS as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"a damaged zip member ({type(exc).__name__}: {text})") from None
