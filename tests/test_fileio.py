"""Outputs whole or not at all, output places probed before the work, inputs regular and bounded."""

from __future__ import annotations

import errno
import os
import resource
import subprocess
import sys
import tempfile

import pytest

from eprmetrics.fileio import InputFileError, OutputError, atomic_folder, atomic_write, check_regular, probe_writable


def test_atomic_write_replaces_whole(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with atomic_write(target, "--json", "w") as fh:
        fh.write("new")
    assert target.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_atomic_write_failure_keeps_old_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "--json", "w") as fh:
        fh.write("partial")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


@pytest.mark.parametrize(
    "write",
    [
        "fh.write(b'x' * 1_000_000)",
        # numpy writes arrays with fwrite: a short write is "N requested and M written", its errno lost (it was
        # one line without a cause or a fix)
        "__import__('numpy').save(fh, __import__('numpy').zeros(250_000, 'f4'))",
    ],
    ids=["write", "np.save"],
)
def test_atomic_write_over_a_file_size_limit_is_one_line_and_no_partial_file(tmp_path, write):
    """RLIMIT_FSIZE stands in for a full disk: the write fails part way (EFBIG) in a child process."""
    target = tmp_path / "big.bin"
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
        "from eprmetrics.fileio import atomic_write, OutputError\n"
        "try:\n"
        f"    with atomic_write({str(target)!r}, 'features') as fh:\n"
        f"        {write}\n"
        "except OutputError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr
    assert "features" in out.stdout and str(target) in out.stdout and "ulimit" in out.stdout
    assert len(out.stdout.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []
    assert resource.getrlimit(resource.RLIMIT_FSIZE)  # the parent's limit untouched


def _read_only(monkeypatch, folder):
    """A folder writes fail in: by permissions for a normal user; as root (who ignores them), a read-only
    file system simulated where the probe creates its file."""
    if os.name == "posix" and os.geteuid() != 0:
        folder.chmod(0o500)
        return
    real = tempfile.mkstemp

    def refuse(*args, **kwargs):
        if os.path.abspath(kwargs.get("dir", "")).startswith(str(folder)):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def test_probe_refuses_a_read_only_folder_at_once(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    try:
        with pytest.raises(OutputError, match="--json: cannot write to .*(permission denied|read-only)"):
            probe_writable(ro / "out.json", "--json")
        with pytest.raises(OutputError, match="--cache-dir"):
            probe_writable(ro, "--cache-dir", folder=True)
    finally:
        ro.chmod(0o700)
    assert os.listdir(ro) == []


def test_probe_accepts_and_leaves_nothing(tmp_path):
    probe_writable(tmp_path / "sub" / "out.json", "--json")
    assert os.listdir(tmp_path / "sub") == []
    with pytest.raises(OutputError, match="is a folder"):
        probe_writable(tmp_path, "--json")


def test_atomic_folder_failure_keeps_old_folder(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "a").write_text("old")
    with pytest.raises(OutputError, match="already exists"), atomic_folder(target, "manifold"):
        pass
    with pytest.raises(RuntimeError), atomic_folder(target, "manifold", overwrite=True) as tmp:
        (open(os.path.join(tmp, "a"), "w")).write("new")
        raise RuntimeError("interrupted")
    assert (target / "a").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["m"]
    with atomic_folder(target, "manifold", overwrite=True) as tmp:
        with open(os.path.join(tmp, "a"), "w") as fh:
            fh.write("new")
    assert (target / "a").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_atomic_folder_refuses_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    with (
        pytest.raises(OutputError, match="symbolic link"),
        atomic_folder(tmp_path / "link", "manifold", overwrite=True),
    ):
        pass


def test_check_regular_refuses_fifo_device_and_oversize(tmp_path):
    fifo = tmp_path / "b.png"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match="FIFO"):
        check_regular(fifo, "image")
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")
    with pytest.raises(InputFileError, match="not a regular file"):
        check_regular(link, "image")
    big = tmp_path / "big.npy"
    big.write_bytes(b"x" * 100)
    with pytest.raises(InputFileError, match="over the limit of 10"):
        check_regular(big, "features", max_bytes=10)
    assert check_regular(big, "features") == 100
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(InputFileError, match="symlink loop"):
        check_regular(loop, "image")


@pytest.mark.parametrize("kind", ["loop", "dangling"])
def test_probe_names_a_link_loop_or_a_link_to_nothing(tmp_path, kind):
    """A --cache-dir that is a symlink loop was described as "a file is where a folder is needed"."""
    link = tmp_path / "cache"
    link.symlink_to(link if kind == "loop" else tmp_path / "missing")
    want = "symlink loop" if kind == "loop" else "does not exist"
    for folder, target in ((True, link), (False, link / "out.json")):
        with pytest.raises(OutputError, match=f"cache_dir: cannot write to {link}: .*{want}"):
            probe_writable(target, "cache_dir", folder=folder)


def test_a_stream_is_written_straight_to_never_replaced(tmp_path):
    """``--json /dev/stdout`` (a link to /proc/self/fd/1) or ``--json >(jq .)`` (a pipe): renaming a temporary
    file over such a path replaced the link itself (as root, /dev/stdout) or failed; nothing partial can be
    left in a stream, so it is written to directly."""
    import stat
    import threading

    out = tmp_path / "redirected.json"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        path = f"/proc/self/fd/{fd}"
        probe_writable(path, "--json")
        with atomic_write(path, "--json", "w") as fh:
            fh.write('{"a": 1}')
    finally:
        os.close(fd)
    assert out.read_text() == '{"a": 1}' and os.listdir(tmp_path) == ["redirected.json"]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo).read()), daemon=True)
    reader.start()
    while not got and reader.is_alive():  # the reader opens the FIFO; then the write below finds it
        try:
            with atomic_write(fifo, "--json", "w") as fh:
                fh.write("[1, 2]")
            break
        except OutputError:
            continue
    reader.join(timeout=30)
    assert got == ["[1, 2]"] and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_fifo_nobody_reads_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OutputError, match=r"--json: could not write .*pipe: no process reads it"):
        with atomic_write(fifo, "--json", "w") as fh:
            fh.write("x")


def test_json_to_this_process_stdout_follows_what_was_printed(tmp_path):
    """``--json /dev/stdout > out.txt``: a new open of the file started at offset 0 and wrote the JSON over the
    report printed before it; the process's own stdout descriptor is used instead, after a flush."""
    out = tmp_path / "out.txt"
    code = (
        "import sys\n"
        "from eprmetrics.fileio import atomic_write\n"
        "print('the report, printed first')\n"
        "with atomic_write('/proc/self/fd/1', '--json', 'w') as fh:\n"
        "    fh.write('{\"precision\": 0.5}\\n')\n"
        "print('after')\n"
    )
    with open(out, "w") as fh:
        done = subprocess.run([sys.executable, "-c", code], stdout=fh, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == 'the report, printed first\n{"precision": 0.5}\nafter\n'
