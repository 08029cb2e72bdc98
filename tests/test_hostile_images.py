"""Untrusted image inputs are read within bounds: each hostile file is one line naming it (skipped under
``on_error="skip"``), in a fresh process under a timeout and a bound on peak-RSS growth.

Before the bounds: a 407 KB zip with one 400 MiB member took 1.35 GB of RSS, an 11 KB 9500×9500 1-bit PNG
2.9 GB, a link to /dev/zero read until memory ran out and a FIFO hung for ever.
"""

import json
import os
import pathlib
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
RSS_BOUND_MIB = 150  # far below what each hostile file took before (1.35-2.9 GB, or unbounded)


def run(spec, env=None, timeout=120):
    """tests.image_runner in a fresh process (``spec``: one spec or a list, run in turn); its JSON answer (a list
    for a list), and its stderr."""
    specs = spec if isinstance(spec, list) else [spec]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.image_runner", json.dumps(specs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    outs = [json.loads(line) for line in proc.stdout.strip().splitlines()[-len(specs) :]]
    return (outs if isinstance(spec, list) else outs[0]), proc.stderr


def png_bytes(width, height, bit_depth=8, color_type=0):
    """A PNG of zeros built row by row (never the whole image in memory): tiny on disk, huge decoded."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + (width * bit_depth + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def small_png(path, rng, size=16):
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def check_one_line(out, *parts, bound=RSS_BOUND_MIB):
    assert "error" in out and out["value_error"], out  # a ValueError: the CLI prints it and exits 2
    assert "\n" not in out["error"] and "Traceback" not in out["error"], out["error"]
    for part in parts:
        assert part in out["error"], out["error"]
    assert out["rss_growth_mib"] < bound, out


def test_zip_member_over_the_byte_cap_is_refused_from_its_header(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("big.png", "w") as fh:
        for _ in range(400):
            fh.write(b"\0" * 2**20)
    assert archive.stat().st_size < 1_000_000
    out, _ = run({"images": str(archive)})
    check_one_line(out, "real: cannot read image", "bomb.zip:big.png", "419,430,400 bytes", "MAX_IMAGE_BYTES")


def test_zip_member_whose_header_understates_its_size(tmp_path):
    """The header says 1,000 bytes, the member inflates to 40 MiB: the read stops at the stated size and the
    CRC check names the member."""
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", b"\0" * (40 * 2**20))
    data = bytearray(archive.read_bytes())
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, 1000)  # central directory: uncompressed size
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, 1000)  # local header
    archive.write_bytes(bytes(data))
    out, _ = run({"images": str(archive)})
    check_one_line(out, "liar.zip:a.png", "damaged zip member", "CRC")


def test_decompression_bomb_png_is_refused_before_decoding(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(png_bytes(9500, 9500, bit_depth=1))
    assert (folder / "bomb.png").stat().st_size < 20_000
    out, _ = run({"images": str(folder)})
    check_one_line(out, "bomb.png", "9500×9500 = 90,250,000 pixels", "EPRMETRICS_MAX_IMAGE_PIXELS")


def test_limits_are_configurable(tmp_path, rng, monkeypatch):
    from eprmetrics.features import ImageLimits, extract_features

    folder = tmp_path / "imgs"
    folder.mkdir()
    small_png(folder / "a.png", rng, size=40)
    out, _ = run({"images": str(folder)}, env={"EPRMETRICS_MAX_IMAGE_PIXELS": "1000"})
    check_one_line(out, "40×40 = 1,600 pixels, over the limit of 1,000")
    out, _ = run({"images": str(folder)}, env={"EPRMETRICS_MAX_IMAGE_BYTES": "100"})
    check_one_line(out, "a.png", "bytes, over the limit of 100 per image")
    with pytest.raises(ValueError, match=r"real: cannot read image .*a.png: it is 40×40 = 1,600 pixels"):
        extract_features(folder, name="real", extractor=torch.nn.Flatten(), limits=ImageLimits(max_pixels=1000))
    monkeypatch.setenv("EPRMETRICS_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="EPRMETRICS_MAX_IMAGE_PIXELS: expected a positive whole number, got 'lots'"):
        ImageLimits.from_env()
    monkeypatch.setenv("EPRMETRICS_MAX_IMAGE_PIXELS", str(2**28))
    with pytest.raises(ValueError, match="EPRMETRICS_MAX_IMAGE_PIXELS: limits: max_pixels must be at most"):
        ImageLimits.from_env()


def test_large_image_is_reduced_before_it_becomes_floats(tmp_path):
    """A 6000×6000 grayscale PNG within the pixel cap: decoded, reduced to 2000×2000 and only then converted
    (full size, it was 108 MB as RGB and 432 MB as floats), with one warning saying so."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "large.png").write_bytes(png_bytes(6000, 6000))
    out, _ = run({"images": str(folder)})
    assert out.get("shape") == [1, 12], out
    assert out["rss_growth_mib"] < 250, out  # 927 MiB before (this 2-core CPU box), 115 after
    assert len(out["warnings"]) == 1 and "1 of 1 images longer than 2048 pixels" in out["warnings"][0]
    assert "large.png" in out["warnings"][0] and "EPRMETRICS_MAX_IMAGE_SIDE" in out["warnings"][0]


def _hostile_folder(tmp_path, rng, kind):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        small_png(folder / f"ok{i}.png", rng)
    bad = folder / "b.png"
    if kind == "fifo":
        os.mkfifo(bad)
    elif kind == "dev-zero":
        bad.symlink_to("/dev/zero")
    elif kind == "loop":
        bad.symlink_to(bad)
    return folder, {"fifo": "it is a FIFO", "dev-zero": "it is a device", "loop": "symbolic links"}[kind]


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not os.path.exists("/dev/zero"), reason="POSIX special files")
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "loop"])
def test_special_files_are_one_line_or_skipped(tmp_path, rng, kind):
    """A FIFO (which hung for ever), a link to /dev/zero (read until memory ran out) and a symlink loop: one
    line naming the file, also while the cache fingerprints the images; under skip, left out with one
    warning (and the run is not cached)."""
    folder, reason = _hostile_folder(tmp_path, rng, kind)
    cache = str(tmp_path / "cache")
    specs = [{"images": str(folder), "cache_dir": c, "on_error": e} for c in (None, cache) for e in ("raise", "skip")]
    outs, _ = run(specs, timeout=120)
    for out in outs[0], outs[2]:
        check_one_line(out, "Error: real: cannot read image", "b.png", reason)
    for out in outs[1], outs[3]:
        assert out.get("shape") == [3, 12], out
        assert out["rss_growth_mib"] < RSS_BOUND_MIB, out
        skipped = [w for w in out["warnings"] if "could not be read" in w]
        assert len(skipped) == 1 and "1 of 4 images" in skipped[0] and "b.png" in skipped[0] and reason in skipped[0]
    assert any("are not cached: 1 images were skipped" in w for w in outs[3]["warnings"]), outs[3]["warnings"]
    assert not list((tmp_path / "cache").glob("*.npy"))


def _zip_with(tmp_path, rng, kind):
    archive = tmp_path / f"{kind}.zip"
    good = small_png(tmp_path / "good.png", rng).read_bytes()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.png", good)
        zf.writestr("b.png", good)
    data = bytearray(archive.read_bytes())
    local_b = data.find(b"PK\x03\x04", 1)
    if kind == "crc":  # flip one byte of b.png's data
        name_len, extra_len = struct.unpack_from("<HH", data, local_b + 26)
        data[local_b + 30 + name_len + extra_len + 40] ^= 0xFF
    else:  # mark b.png encrypted in both headers
        struct.pack_into("<H", data, local_b + 6, struct.unpack_from("<H", data, local_b + 6)[0] | 1)
        central_b = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02") + 1)
        struct.pack_into("<H", data, central_b + 8, struct.unpack_from("<H", data, central_b + 8)[0] | 1)
    archive.write_bytes(bytes(data))
    return archive, {"crc": "Bad CRC-32", "encrypted": "is encrypted"}[kind]


@pytest.mark.parametrize("kind", ["crc", "encrypted"])
def test_damaged_or_encrypted_zip_member_is_one_line_or_skipped(tmp_path, rng, kind):
    """Also while the cache fingerprints the archive (which used to raise zipfile's own error, skip or not)."""
    archive, reason = _zip_with(tmp_path, rng, kind)
    cache = str(tmp_path / "cache")
    specs = [{"images": str(archive), "cache_dir": c, "on_error": e} for c in (None, cache) for e in ("raise", "skip")]
    outs, _ = run(specs)
    for out in outs[0], outs[2]:
        check_one_line(out, f"Error: real: cannot read image {archive}:b.png", reason)
    for out in outs[1], outs[3]:
        assert out.get("shape") == [1, 12], out
        skipped = [w for w in out["warnings"] if "could not be read" in w]
        assert len(skipped) == 1 and "b.png" in skipped[0] and reason in skipped[0]
    assert not any("unclosed" in w for out in outs for w in out["warnings"])


def test_zip_with_two_members_of_one_name_is_refused(tmp_path, rng):
    from eprmetrics.features import extract_features

    archive = tmp_path / "dup.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x/a.png", small_png(tmp_path / "1.png", rng).read_bytes())
        zf.writestr("x/a.png", small_png(tmp_path / "2.png", rng).read_bytes())
    with pytest.raises(ValueError, match=r"real: the zip archive .*dup.zip' holds two members named 'x/a.png'") as info:
        extract_features(archive, name="real", extractor=torch.nn.Flatten(), progress=False)
    assert "\n" not in str(info.value)


def test_workers_skip_with_one_warning_from_the_parent(tmp_path, rng):
    """Two unreadable files read by two workers: one summary warning (each worker used to print its own)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        small_png(folder / f"ok{i}.png", rng)
    (folder / "broken1.png").write_bytes(b"garbage")
    (folder / "broken2.png").write_bytes(b"more garbage")
    out, err = run({"images": str(folder), "on_error": "skip", "workers": 2, "record": False})
    assert out.get("shape") == [4, 12], out
    lines = [line for line in err.splitlines() if "broken" in line]
    assert len(lines) == 1 and "2 of 6 images could not be read and were skipped" in lines[0], err
