"""Issue 27's hostile inputs and full disks, re-run end to end on the command line.

``python -m benchmarks.bench_hostile`` builds each case in a temporary folder (a zip bomb, a PNG bomb, a FIFO,
a planted cache entry, a size-limited disk, ...), runs ``python -m eprmetrics`` on it in a fresh process under a
timeout and an address-space bound, and records the exit status, what stderr said (its lines, whether a
traceback), whether stdout stayed clean, the peak RSS (``wait4``) and a check of the case's own promise (no
partial file, the same numbers as a clean run, ...). The table, with issue 27's "before", goes to
``benchmarks/results/hostile_inputs.{json,md}`` with the git revision. Image cases use VGG-16 with a
randomly initialised weights file (offline; ~530 MB in the temporary folder). As root a read-only tmpfs is
mounted for the read-only case; otherwise a folder without write permission stands in.
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Any, Callable, Optional

import numpy as np

from benchmarks.common import REPO, machine, save

AS_LIMIT = 8 * 2**30  # address space of each run: a run that reads without bound fails instead of the machine
TIMEOUT = 180


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _folder(path: str, n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    for i in range(n):
        with open(os.path.join(path, f"{i:02d}.png"), "wb") as fh:
            fh.write(_png(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    return path


def run_cli(argv: list[str], env: Optional[dict] = None, fsize: Optional[int] = None) -> dict[str, Any]:
    """``python -m eprmetrics ARGV`` in a fresh process: status, stdout/stderr, peak RSS, seconds."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    full_env = {**os.environ, "PYTHONPATH": REPO, "PYTHONWARNINGS": "default", **(env or {})}
    start = time.perf_counter()
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "eprmetrics", *argv], stdout=out, stderr=err, env=full_env, preexec_fn=limits, cwd=REPO
    )
    deadline, status, usage = start + TIMEOUT, None, None
    while status is None:
        pid, status_, usage_ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status, usage = status_, usage_
        elif time.perf_counter() > deadline:
            proc.kill()
            _, status, usage = os.wait4(proc.pid, 0)
            status = -9
        else:
            time.sleep(0.05)
    proc.returncode = 0  # reaped by wait4
    out.seek(0), err.seek(0)
    stderr = err.read().decode(errors="replace")
    lines = [line for line in stderr.splitlines() if line.strip()]
    rc = os.waitstatus_to_exitcode(status) if status != -9 else "timeout"
    return {
        "rc": rc,
        "stdout": out.read().decode(errors="replace"),
        "stderr_lines": lines,
        "traceback": "Traceback" in stderr,
        "peak_rss_mib": round(usage.ru_maxrss / 1024) if usage else None,
        "seconds": round(time.perf_counter() - start, 1),
    }


def one_line(r: dict[str, Any], *words: str) -> str:
    """The verdict of a case that must be refused: exit 2, one line on stderr naming ``words``, no traceback."""
    errors = [line for line in r["stderr_lines"] if "Warning" not in line and not line.startswith("  ")]
    ok = r["rc"] == 2 and not r["traceback"] and len(errors) == 1 and all(w in errors[0] for w in words)
    return "ok" if ok else f"FAIL (rc {r['rc']}, {len(errors)} lines, traceback {r['traceback']})"


def _zip(path: str, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _zip_bomb(path: str) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("bomb.png", "w", force_zip64=True) as fh:
        block = b"\0" * 2**20
        for _ in range(400):
            fh.write(block)
    return path


def _png_bomb(path: str) -> str:
    from PIL import Image

    Image.new("1", (9500, 9500)).save(path)
    return path


def _damaged_zip(path: str, good: list[bytes], kind: str) -> str:
    """A stored zip of ``good`` whose second member has a flipped data byte (``crc``) or the encryption flag."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i, blob in enumerate(good):
            zf.writestr(f"{i}.png", blob)
    data = bytearray(open(path, "rb").read())
    local = data.find(b"PK\x03\x04", 1)
    if kind == "crc":
        name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
        data[local + 30 + name_len + extra_len + 40] ^= 0xFF
    else:
        struct.pack_into("<H", data, local + 6, struct.unpack_from("<H", data, local + 6)[0] | 1)
        central = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02") + 1)
        struct.pack_into("<H", data, central + 8, struct.unpack_from("<H", data, central + 8)[0] | 1)
    with open(path, "wb") as fh:
        fh.write(bytes(data))
    return path


def _huge_header(path: str, rows: int = 10**12) -> str:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, 64)})
        fh.write(b"\0" * 1024)
    return path


def _numbers(path: str) -> Optional[tuple]:
    """Precision and recall from a --json file (None: no file)."""
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        res = json.load(fh)
    return res.get("precision"), res.get("recall")


def _partial(folder: str) -> list[str]:
    """Temporary or partial files left in ``folder`` (and below) by a failed write."""
    left = []
    for root, dirs, names in os.walk(folder):
        left += [os.path.join(root, n) for n in names + dirs if ".tmp" in n or "probe" in n or ".old-" in n]
    return left


def prepare(w: str) -> dict[str, str]:
    """The clean inputs every case starts from: image folders, a VGG-16 weights file, feature files."""
    import torch
    import torchvision

    fx = {"real": _folder(os.path.join(w, "real"), 6, 0), "fake": _folder(os.path.join(w, "fake"), 6, 1)}
    fx["weights"] = os.path.join(w, "vgg.pt")
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16(weights=None).state_dict(), fx["weights"])
    rng = np.random.default_rng(0)
    for name, n, d in (("r", 500, 32), ("f", 500, 32), ("r2k", 2000, 32), ("f2k", 2000, 32)):
        fx[name] = os.path.join(w, f"{name}.npy")
        np.save(fx[name], rng.standard_normal((n, d)).astype(np.float32))
    return fx


def _images(fx: dict[str, str], *extra: str) -> list[str]:
    return ["--extractor", "vgg16", "--weights", fx["weights"], "--exact", "--k", "3", "--quiet", *extra]


def _bad_folder(w: str, fx: dict[str, str], name: str, bad: str, make: Callable[[str], Any]) -> str:
    folder = os.path.join(w, name)
    shutil.copytree(fx["real"], folder)
    make(os.path.join(folder, bad))
    return folder


def _image_cases(w: str, fx: dict[str, str]) -> list[tuple[str, str, dict, str]]:
    """(case, issue 27's before, result, verdict) for the untrusted-image cases."""
    r = run_cli([fx["real"], fx["fake"], *_images(fx)])
    rows = [("clean images (the baseline of the peak RSS below)", "-", r, "ok" if r["rc"] == 0 else "FAIL")]
    bomb = _zip_bomb(os.path.join(w, "bomb.zip"))
    r = run_cli([bomb, fx["fake"], *_images(fx)])
    rows.append(
        (
            "zip bomb (407 KB zip, one 400 MiB member)",
            "1.35 GB peak RSS before PIL refused it",
            r,
            one_line(r, "bomb.zip:bomb.png", "over the limit"),
        )
    )
    folder = _bad_folder(w, fx, "pngbomb", "bomb.png", _png_bomb)
    r = run_cli([folder, fx["fake"], *_images(fx)])
    rows.append(("PNG bomb (9500×9500 1-bit, 11 KB)", "2.9 GB for one image", r, one_line(r, "bomb.png", "pixels")))
    folder = _bad_folder(w, fx, "devzero", "zero.png", lambda p: os.symlink("/dev/zero", p))
    r = run_cli([folder, fx["fake"], *_images(fx)])
    rows.append(("zero.png → /dev/zero", "read until memory ran out", r, one_line(r, "zero.png", "device")))
    folder = _bad_folder(w, fx, "fifo", "b.png", os.mkfifo)
    r = run_cli([folder, fx["fake"], *_images(fx)])
    rows.append(("FIFO named b.png", "hung for ever", r, one_line(r, "b.png", "FIFO")))
    r = run_cli([folder, fx["fake"], *_images(fx, "--skip-bad-images", "--cache-dir", os.path.join(w, "c0"))])
    skipped = sum("could not be read and were skipped" in line for line in r["stderr_lines"])
    rows.append(
        (
            "FIFO b.png, --skip-bad-images --cache-dir",
            "hung for ever, even with on_error='skip'",
            r,
            "ok" if r["rc"] == 0 and skipped == 1 and not r["traceback"] else "FAIL",
        )
    )
    dup = os.path.join(w, "dup.zip")
    with zipfile.ZipFile(dup, "w") as zf, open(os.path.join(fx["real"], "00.png"), "rb") as fh:
        data = fh.read()
        zf.writestr("a.png", data)
        zf.writestr("a.png", _png(np.zeros((32, 32, 3), np.uint8)))
    r = run_cli([dup, fx["fake"], *_images(fx)])
    rows.append(
        (
            "zip with two members named a.png",
            "the last one used twice, silently",
            r,
            one_line(r, "dup.zip", "two members named 'a.png'"),
        )
    )
    good = [open(os.path.join(fx["real"], f), "rb").read() for f in sorted(os.listdir(fx["real"]))]
    for kind in ("crc", "encrypted"):
        archive = _damaged_zip(os.path.join(w, f"{kind}.zip"), good, kind)
        cache = os.path.join(w, f"c-{kind}")
        r = run_cli([archive, fx["fake"], *_images(fx, "--cache-dir", cache, "--skip-bad-images")])
        warned = sum("1 of 6 images could not be read" in line for line in r["stderr_lines"])
        rows.append(
            (
                f"{'bad-CRC' if kind == 'crc' else 'encrypted'} zip member, --cache-dir --skip-bad-images",
                "raw zipfile error, --skip-bad-images ignored",
                r,
                "ok" if r["rc"] == 0 and warned == 1 and not r["traceback"] else "FAIL",
            )
        )
    return rows


def _worker_and_link_cases(w: str, fx: dict[str, str]) -> list[tuple[str, str, dict, str]]:
    rows = []
    folder = os.path.join(w, "threebad")
    shutil.copytree(fx["real"], folder)
    for i in range(3):
        with open(os.path.join(folder, f"bad{i}.png"), "wb") as fh:
            fh.write(b"not an image")
    r = run_cli([folder, fx["fake"], *_images(fx, "--workers", "2", "--skip-bad-images", "--batch-size", "2")])
    warned = sum("could not be read and were skipped" in line for line in r["stderr_lines"])
    rows.append(
        (
            "3 bad images, --workers 2 --skip-bad-images",
            "each worker printed its own warning",
            r,
            "ok" if r["rc"] == 0 and warned == 1 else f"FAIL ({warned} warnings)",
        )
    )
    linked = os.path.join(w, "linked")
    os.makedirs(linked)
    os.symlink(fx["real"], os.path.join(linked, "sub"))
    out = os.path.join(w, "linked.json")
    r = run_cli([linked, fx["fake"], *_images(fx, "--json", out)])
    n = json.load(open(out))["n_real"] if os.path.exists(out) else None
    rows.append(
        (
            "folder whose images sit in a linked sub-folder",
            "(review) linked folders left out silently",
            r,
            "ok" if r["rc"] == 0 and n == 6 else f"FAIL (n_real {n})",
        )
    )
    home = os.path.join(w, "torch-home")
    env = {"TORCH_HOME": home, "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    r = run_cli([fx["real"], fx["fake"], "--extractor", "vgg16", "--quiet"], env=env)
    verdict = one_line(r, "cannot download")
    rows.append(
        (
            "no network, default weights",
            "torch.hub's 'Downloading: …' on stdout",
            r,
            verdict if not r["stdout"].strip() else "FAIL (stdout not empty)",
        )
    )
    return rows


def _cache_cases(w: str, fx: dict[str, str]) -> list[tuple[str, str, dict, str]]:
    rows = []
    cache, a, b = os.path.join(w, "cache"), os.path.join(w, "a.json"), os.path.join(w, "b.json")
    run_cli([fx["real"], fx["fake"], *_images(fx, "--cache-dir", cache, "--json", a)])
    for entry in os.listdir(cache):
        np.save(os.path.join(cache, entry), np.zeros((2, 3), np.float32))
    r = run_cli([fx["real"], fx["fake"], *_images(fx, "--cache-dir", cache, "--json", b)])
    same = _numbers(a) == _numbers(b) is not None
    warned = sum("recomputing it" in line for line in r["stderr_lines"])
    rows.append(
        (
            "planted 2×3 array at the cache key",
            "returned as the 5 images' features",
            r,
            "ok" if r["rc"] == 0 and same and warned == 2 else f"FAIL (same {same}, {warned} warnings)",
        )
    )
    p = [open(os.path.join(fx["real"], f"{i:02d}.png"), "rb").read() for i in range(3)]
    for name, blobs in (("ab1", [p[0] + p[1], p[2]]), ("ab2", [p[0], p[1] + p[2]])):
        os.makedirs(os.path.join(w, name))
        for i, blob in enumerate(blobs):
            with open(os.path.join(w, name, f"{i}.png"), "wb") as fh:
                fh.write(blob)
    cache = os.path.join(w, "cache-cat")
    run_cli([os.path.join(w, "ab1"), fx["fake"], *_images(fx, "--cache-dir", cache, "--k", "1")])
    s1, s2 = os.path.join(w, "s1"), os.path.join(w, "s2")
    r = run_cli(
        [os.path.join(w, "ab2"), fx["fake"], *_images(fx, "--cache-dir", cache, "--save-features", s1, "--k", "1")]
    )
    run_cli([os.path.join(w, "ab2"), fx["fake"], *_images(fx, "--save-features", s2, "--k", "1")])
    same = _same_npy(os.path.join(s1, "real.npy"), os.path.join(s2, "real.npy"))
    rows.append(
        (
            "folders [P1‖P2, P3] then [P1, P2‖P3], one cache",
            "one key: the first folder's features",
            r,
            "ok" if r["rc"] == 0 and same else "FAIL",
        )
    )
    rows.append(_cp_p_case(w, fx))
    loop = os.path.join(w, "loop")
    os.symlink(loop, loop)
    r = run_cli([fx["real"], fx["fake"], *_images(fx, "--cache-dir", loop)])
    rows.append(("--cache-dir a symlink loop", "raw OSError traceback", r, one_line(r, "cache-dir", "symbolic links")))
    return rows


def _same_npy(x: str, y: str) -> bool:
    return os.path.exists(x) and os.path.exists(y) and np.array_equal(np.load(x), np.load(y))


def _cp_p_case(w: str, fx: dict[str, str]) -> tuple[str, str, dict, str]:
    import torch

    state = torch.load(fx["weights"], weights_only=True)
    state["classifier.0.weight"].mul_(2)  # in place: the same layout, so the file keeps its size
    os.makedirs(os.path.join(w, "other"))  # torch.save names the archive after the file: keep the name's length
    other, weights = os.path.join(w, "other", "vgg.pt"), os.path.join(w, "vgg-live.pt")
    torch.save(state, other)
    shutil.copy2(fx["weights"], weights)
    mtime = os.stat(weights).st_mtime_ns
    os.utime(other, ns=(mtime, mtime))
    cache, s1, s2, s3 = (os.path.join(w, n) for n in ("cache-w", "w1", "w2", "w3"))
    args = ["--extractor", "vgg16", "--weights", weights, "--exact", "--k", "3", "--quiet", "--cache-dir", cache]
    run_cli([fx["real"], fx["fake"], *args, "--save-features", s1])
    shutil.copy2(other, weights)  # `cp -p`: same path, size and mtime
    size = os.stat(weights).st_size
    same_stat = size == os.stat(fx["weights"]).st_size and os.stat(weights).st_mtime_ns == mtime
    r = run_cli([fx["real"], fx["fake"], *args, "--save-features", s2])
    run_cli([fx["real"], fx["fake"], *args[:-2], "--save-features", s3])
    new = _same_npy(os.path.join(s2, "real.npy"), os.path.join(s3, "real.npy"))
    stale = _same_npy(os.path.join(s1, "real.npy"), os.path.join(s2, "real.npy"))
    ok = r["rc"] == 0 and same_stat and new and not stale
    verdict = "ok" if ok else f"FAIL (same size and mtime {same_stat}, new {new}, stale {stale})"
    return "weights replaced with cp -p (same size and mtime)", "the old weights' cached features served", r, verdict


def _read_only_place(w: str) -> tuple[str, Callable[[], None]]:
    """A read-only folder: a read-only tmpfs as root (root writes through permissions), else mode 0o500."""
    place = os.path.join(w, "ro")
    os.makedirs(place)
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", place], capture_output=True)
        if done.returncode == 0:
            return place, lambda: subprocess.run(["umount", place], check=False)
    os.chmod(place, 0o500)
    return place, lambda: os.chmod(place, 0o700)


def _output_cases(w: str, fx: dict[str, str]) -> list[tuple[str, str, dict, str]]:
    rows = []
    ro, undo = _read_only_place(w)
    try:
        for what, extra in (
            ("--json", ["--json", os.path.join(ro, "out.json")]),
            ("--save-features", ["--save-features", os.path.join(ro, "feats")]),
        ):
            r = run_cli([fx["real"], fx["fake"], *_images(fx, *extra)])
            rows.append(
                (
                    f"{what} in a read-only folder",
                    "a traceback after the whole run (16 s of extraction)",
                    r,
                    one_line(r, what.lstrip("-").replace("-", "_") if what == "--json" else "save", "cannot write"),
                )
            )
        r = run_cli(["manifold", fx["r"], os.path.join(ro, "m"), "--quiet"])
        rows.append(("manifold OUT in a read-only folder", "a traceback after the work", r, one_line(r, "read-only")))
    finally:
        undo()
    full = os.path.join(w, "full")
    os.makedirs(full)
    cases = [
        (
            "--json",
            [fx["r2k"], fx["f2k"], "--exact", "--realism", "--quiet", "--json", os.path.join(full, "o.json")],
            16384,
            "o.json",
        ),
        (
            "--save-features",
            [fx["real"], fx["fake"], *_images(fx, "--save-features", os.path.join(full, "sf"))],
            65536,
            "sf/real.npy",
        ),
        ("manifold", ["manifold", fx["r2k"], os.path.join(full, "m"), "--quiet"], 65536, "m"),
    ]
    for what, argv, limit, target in cases:
        r = run_cli(argv, fsize=limit)
        left = _partial(full) + ([target] if os.path.exists(os.path.join(full, target)) else [])
        verdict = one_line(r, "ulimit")
        rows.append(
            (
                f"{what} on a full disk (RLIMIT_FSIZE {limit // 1024} KiB)",
                "a 0-byte out.json / truncated radii.npz / OSError traceback",
                r,
                verdict if not left else f"FAIL (left {left})",
            )
        )
    return rows


def _feature_file_cases(w: str, fx: dict[str, str]) -> list[tuple[str, str, dict, str]]:
    rows = []
    fifo = os.path.join(w, "x.npy")
    os.mkfifo(fifo)
    r = run_cli([fifo, fx["f"], "--exact", "--quiet"])
    rows.append(("FIFO named x.npy given as features", "hung for ever", r, one_line(r, "x.npy", "FIFO")))
    huge = _huge_header(os.path.join(w, "huge.npy"))
    r = run_cli([huge, fx["f"], "--exact", "--quiet"])
    rows.append((".npy header claiming 10^12 rows", "MemoryError", r, one_line(r, "huge.npy")))
    npz = os.path.join(w, "huge.npz")
    with zipfile.ZipFile(npz, "w") as zf:
        zf.write(huge, "arr_0.npy")
    r = run_cli([npz, fx["f"], "--exact", "--quiet"])
    rows.append((".npz whose member claims 10^12 rows", "MemoryError", r, one_line(r, "huge.npz")))
    real, fake = np.load(fx["r"]).astype(np.float64), np.load(fx["f"]).astype(np.float64)
    paths = {n: os.path.join(w, f"{n}.npy") for n in ("r64", "f64", "rsub", "fsub", "rbe", "fbe", "rint", "fint")}
    np.save(paths["r64"], real), np.save(paths["f64"], fake)
    np.save(paths["rsub"], real * 1e-310), np.save(paths["fsub"], fake * 1e-310)
    np.save(paths["rbe"], real.astype(">f8")), np.save(paths["fbe"], fake.astype(">f8"))
    big = 2**60 + np.arange(400, dtype=np.int64)[:, None] * 2**12 + np.arange(8, dtype=np.int64)
    np.save(paths["rint"], big), np.save(paths["fint"], big[::-1] + 1)
    base = os.path.join(w, "base.json")
    run_cli([paths["r64"], paths["f64"], "--exact", "--quiet", "--json", base])
    for case, before, pair in (
        ("all-subnormal float64 features", "OverflowError: math range error", "sub"),
        ("big-endian >f8 .npy", "refused as 'expected a float array'", "be"),
    ):
        out = os.path.join(w, f"{pair}.json")
        r = run_cli([paths["r" + pair], paths["f" + pair], "--exact", "--quiet", "--json", out])
        same = _numbers(out) == _numbers(base) is not None
        rows.append((case, before, r, "ok" if r["rc"] == 0 and same else f"FAIL (same numbers {same})"))
    r = run_cli([fx["r"], fx["f"], "--exact", "--quiet", "--json", "/proc/self/fd/1"])  # as --json /dev/stdout
    start = 0 if r["stdout"].startswith("{") else r["stdout"].find("\n{") + 1
    try:  # the report, then the JSON after it (not over it)
        said, _ = json.JSONDecoder().raw_decode(r["stdout"][start:]) if start or r["stdout"][:1] == "{" else ({}, 0)
    except ValueError:
        said = {}
    streamed = "eprmetrics exact" in r["stdout"] and said.get("precision") == _numbers(base)[0]
    rows.append(
        (
            "--json /dev/stdout (here /proc/self/fd/1)",
            "(review) the link replaced or a misleading error",
            r,
            "ok" if r["rc"] == 0 and streamed else "FAIL",
        )
    )
    r = run_cli([paths["rint"], paths["fint"], "--exact", "--quiet"])
    warned = any("2^53" in line or "2⁵³" in line for line in r["stderr_lines"])
    rows.append(
        (
            "int64 features above 2^53",
            "rounded to float64 without a warning",
            r,
            "ok" if r["rc"] == 0 and warned else "FAIL (no warning)",
        )
    )
    return rows


def _manifold_cases(w: str, fx: dict[str, str]) -> list[tuple[str, str, dict, str]]:
    good = os.path.join(w, "m-good")
    run_cli(["manifold", fx["r"], good, "--quiet"])

    def meta(edit: Callable[[dict], Any]) -> Callable[[str], None]:
        def apply(folder: str) -> None:
            path = os.path.join(folder, "manifold.json")
            with open(path) as fh:
                doc = json.load(fh)
            edit(doc)
            with open(path, "w") as fh:
                json.dump(doc, fh)

        return apply

    def write(name: str, data: bytes) -> Callable[[str], None]:
        def apply(folder: str) -> None:
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(data)

        return apply

    variants = [
        (
            "manifold.json without features.fingerprint",
            "KeyError: 'fingerprint'",
            meta(lambda d: d["features"].pop("fingerprint")),
        ),
        ("manifold.json not JSON", "JSONDecodeError", write("manifold.json", b"{not json")),
        ("radii.npz not a zip", "BadZipFile", write("radii.npz", b"PK\x03\x04 garbage")),
        ("features.npy truncated", "(raw numpy error)", write("features.npy", b"\x93NUMPY")),
    ]
    rows = []
    for i, (case, before, damage) in enumerate(variants):
        folder = os.path.join(w, f"m-bad{i}")
        shutil.copytree(good, folder)
        damage(folder)
        r = run_cli([folder, fx["f"], "--exact", "--quiet"])
        rows.append((f"malformed manifold: {case}", before, r, one_line(r, folder)))
    return rows


def _threads_case(w: str) -> list[tuple[str, str, dict, str]]:
    rng = np.random.default_rng(7)
    real, fake = os.path.join(w, "r12k.npy"), os.path.join(w, "f12k.npy")
    np.save(real, rng.standard_normal((12000, 128)).astype(np.float32))
    np.save(fake, (rng.standard_normal((12000, 128)) * 1.1).astype(np.float32))
    rows = []
    for args, label in (([], "default (backend auto)"), (["--backend", "ivf-gemm"], "--backend ivf-gemm")):
        got = []
        for threads in ("1", "2"):
            out = os.path.join(w, f"t{threads}{len(args)}.json")
            r = run_cli([real, fake, "--quiet", "--json", out, *args], env={"OMP_NUM_THREADS": threads})
            doc = json.load(open(out)) if os.path.exists(out) else {}
            got.append((doc.get("precision"), doc.get("recall"), doc.get("backend")))
        same = got[0] == got[1]
        promise = "named backend: the same" if args else "auto: documented to follow the planner's timing"
        verdict = ("ok" if same or not args else "ok (differs, documented)") if r["rc"] == 0 else "FAIL"
        r["detail"] = f"1 thread {got[0]}, 2 threads {got[1]} ({promise})"
        rows.append(
            (f"seed 0, 12k×128 sampled, {label}, OMP_NUM_THREADS 1 vs 2", "P 0.7613 vs 0.7626 (auto)", r, verdict)
        )
    return rows


def _git_revision() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True)
    return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _said(r: dict[str, Any]) -> str:
    if r.get("detail"):
        return r["detail"]
    lines = [line for line in r["stderr_lines"] if "Warning" not in line] or r["stderr_lines"] or [""]
    return lines[-1][:220].replace("|", "\\|")


def main() -> None:
    groups = [_image_cases, _worker_and_link_cases, _cache_cases, _output_cases, _feature_file_cases, _manifold_cases]
    rows = []
    with tempfile.TemporaryDirectory(prefix="eprm-hostile-") as w:
        fx = prepare(w)
        for group in groups:
            rows += group(w, fx)
            print(f"{group.__name__}: {len(rows)} cases so far", file=sys.stderr)
        rows += _threads_case(w)
    table = [
        {
            "case": c,
            "before": b,
            "verdict": v,
            "rc": r["rc"],
            "said": _said(r),
            "stderr_lines": len(r["stderr_lines"]),
            "traceback": r["traceback"],
            "peak_rss_mib": r["peak_rss_mib"],
            "seconds": r["seconds"],
        }
        for c, b, r, v in rows
    ]
    payload = {"revision": _git_revision(), "machine": machine(), "as_limit_gib": AS_LIMIT / 2**30, "cases": table}
    md = [
        "# Issue 27's hostile inputs, end to end on the command line",
        "",
        f"`python -m benchmarks.bench_hostile` at revision `{payload['revision']}` on {machine()['cpu']} "
        f"({machine()['date']}); each run a fresh `python -m eprmetrics` under a {TIMEOUT} s timeout and an "
        f"{AS_LIMIT // 2**30} GiB address-space limit. *Before*: what issue 27 observed; *now*: this run.",
        "",
        "| case | before (issue 27) | now: exit, what stderr said | peak RSS | verdict |",
        "|---|---|---|---|---|",
    ]
    for t in table:
        md.append(
            f"| {t['case']} | {t['before']} | {t['rc']}: {t['said']} | {t['peak_rss_mib']} MiB | {t['verdict']} |"
        )
    failed = [t["case"] for t in table if not str(t["verdict"]).startswith("ok")]
    md += [
        "",
        f"{len(table) - len(failed)} of {len(table)} cases as promised." + (f" Failed: {failed}" if failed else ""),
    ]
    for path in save("hostile_inputs", payload, "\n".join(md) + "\n"):
        print(path)


if __name__ == "__main__":
    main()
