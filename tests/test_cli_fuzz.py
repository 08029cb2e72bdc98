"""CLI fuzz: every bad argument or input ends in exit status 2 and one stderr line, never a traceback.

Each case runs in-process (``main(argv)``) under a hang guard; the cases cover flags, values, option
combinations that cannot apply, bad files and bad outputs.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

from eprmetrics.cli import main
from tests.test_reliability import no_hang


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(3)
    np.save(d / "real.npy", rng.normal(size=(60, 6)).astype(np.float32))
    np.save(d / "fake.npy", rng.normal(size=(50, 6)).astype(np.float32))
    np.save(d / "dim5.npy", rng.normal(size=(50, 5)).astype(np.float32))
    np.save(d / "tiny.npy", rng.normal(size=(3, 6)).astype(np.float32))
    np.save(d / "nan.npy", np.full((40, 6), np.nan, np.float32))
    np.save(d / "vec.npy", np.ones(10, np.float32))
    np.save(d / "bool.npy", np.ones((20, 6), bool))
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(d / "two.npz", a=np.ones((20, 6)), b=np.ones((20, 6)))
    (d / "text.txt").write_text("not features")
    (d / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    full = (d / "real.npy").read_bytes()
    (d / "cut.npy").write_bytes(full[: len(full) // 2])
    (d / "empty").mkdir()
    (d / "broken.zip").write_bytes(b"PK not a zip")
    (d / "afile").write_text("x")
    header = io.BytesIO()  # a header announcing 10¹² rows, then 64 bytes: refused before any allocation
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 6)})
    (d / "huge.npy").write_bytes(header.getvalue() + b"\0" * 64)
    with zipfile.ZipFile(d / "huge.npz", "w") as archive:
        archive.writestr("arr_0.npy", header.getvalue() + b"\0" * 64)
    if hasattr(os, "mkfifo"):
        os.mkfifo(d / "fifo.npy")  # reading it would block for ever
    else:
        (d / "fifo.npy").write_bytes(b"")
    return d


R, F = "{d}/real.npy", "{d}/fake.npy"
CASES = [
    # flags and values
    [R, F, "--bogus"],
    [R, F, "--k", "x"],
    [R, F, "--k", "0"],
    [R, F, "--k", "-2"],
    [R, F, "--k", "3,3"],
    [R, F, "--k", ""],
    [R, F, "--k", "3,5"],  # fast methods use one k
    [R, F, "--t", "-1"],
    [R, F, "--t", "x"],
    [R, F, "--method", "fast"],
    [R, F, "--backend", "annoy"],
    [R, F, "--radii", "guess"],
    [R, F, "--sample-size", "0"],
    [R, F, "--sample-size", "1.5"],
    [R, F, "--sample-size", "-3"],
    [R, F, "--sample-size", "abc"],
    [R, F, "--confidence", "95"],
    [R, F, "--confidence", "0"],
    [R, F, "--confidence", "x"],
    [R, F, "--memory-budget", "-3G"],
    [R, F, "--memory-budget", "lots"],
    [R, F, "--memory-budget", "0"],
    [R, F, "--device", "gpu0"],
    [R, F, "--device", "tpu"],
    [R, F, "--device", "cuda:x"],
    [R, F, "--error-bound", "tight"],
    [R, F, "--precision", "fp16"],
    [R, F, "--extractor", "resnet"],
    [R, F, "--batch-size", "0"],
    [R, F, "--batch-size", "x"],
    [R, F, "--workers", "-1"],
    # options that cannot apply
    [R, F, "--exact", "--method", "sampled"],
    [R, F, "--exact", "--t", "2"],
    [R, F, "--exact", "--backend", "ivf-gemm"],
    [R, F, "--exact", "--no-audit"],
    [R, F, "--exact", "--sample-size", "100"],
    [R, F, "--realism"],
    ["demo", "--k", "3,5"],
    ["demo", "--n", "1"],
    ["bench", "--real", R],
    ["bench", "--k", "3,5"],
    # bad inputs
    ["{d}/missing.npy", F],
    [R, "{d}/missing.npy"],
    [R, "{d}/dim5.npy"],
    ["{d}/tiny.npy", F],
    ["{d}/nan.npy", F],
    ["{d}/vec.npy", F],
    ["{d}/bool.npy", F],
    ["{d}/obj.npy", F],
    ["{d}/two.npz", F],
    ["{d}/text.txt", F],
    ["{d}/garbage.npy", F],
    ["{d}/cut.npy", F],
    ["{d}/empty", F],
    ["{d}/broken.zip", F],
    [R, F, "--weights", "{d}/missing.pt"],
    ["{d}/huge.npy", F],
    [R, "{d}/huge.npz"],
    ["{d}/fifo.npy", F],
    ["manifold", "{d}/fifo.npy", "{d}/m_out"],
    # bad outputs, refused before any work
    [R, F, "--json", "{d}/no/such/folder/out.json"],
    [R, F, "--json", "{d}/empty"],
    [R, F, "--save-features", "{d}/afile"],
    [R, F, "--cache-dir", "{d}/afile"],
    [R, F, "--json", "{d}/afile/out.json"],
    [R, F, "--plot", "{d}/afile/plots"],
    ["demo", "--json", "{d}/afile/demo.json"],
    ["manifold", R, "{d}/m_out2", "--json", "{d}/afile/m.json"],
]


def test_there_are_at_least_fifty_cases():
    assert len(CASES) >= 50


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c).replace("{d}/", "") for c in CASES])
def test_bad_invocation_is_one_line_exit_2(argv, place, capsys):
    args = [a.format(d=place) for a in argv] + ["--quiet"] * (argv[0] not in ("demo", "bench"))
    with no_hang(120):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse-level errors exit like argparse does
            code = exc.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("eprmetrics: error: "), captured.err
    assert "Traceback" not in captured.err
