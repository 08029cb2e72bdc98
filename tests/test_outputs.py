"""Every output is probed before the work and written whole or not at all.

A size limit (``RLIMIT_FSIZE``, in a child process) stands in for a full disk and works as root; a
read-only folder is checked too where the tests do not run as root (root writes anywhere). Each case
asserts exit status 2, one stderr line naming the option, no file left behind and, for the probes, that
the work never started (the computing function is replaced by one that says so).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from eprmetrics import compute_pr
from eprmetrics.cli import main
from eprmetrics.fileio import OutputError

ROOT = pathlib.Path(__file__).resolve().parent.parent
needs_rlimit = pytest.mark.skipif(not hasattr(os, "setrlimit") and sys.platform != "linux", reason="POSIX limits")
not_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes anywhere")

# The child replaces what would do the work by a function that announces it and stops.
_NO_WORK = (
    "import eprmetrics.api, eprmetrics.demo, eprmetrics.manifold\n"
    "def _work(*a, **k):\n"
    "    print('WORK STARTED'); sys.exit(9)\n"
    "eprmetrics.api.compute_pr = eprmetrics.api.compute_epr = _work\n"
    "eprmetrics.demo.demo = eprmetrics.demo.bench = _work\n"
    "eprmetrics.manifold.Manifold.fit = _work\n"
)


def run_limited(argv: list[str], limit: int, no_work: bool) -> subprocess.CompletedProcess:
    """``eprmetrics ARGV`` in a child process that may write no file larger than ``limit`` bytes."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"  # a write over the limit fails with EFBIG
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        + (_NO_WORK if no_work else "")
        + "from eprmetrics.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    rng = np.random.default_rng(5)
    np.save(d / "real.npy", rng.normal(size=(300, 8)).astype(np.float32))
    np.save(d / "fake.npy", rng.normal(size=(900, 8)).astype(np.float32))
    return d


def _one_error_line(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2, out.stderr + out.stdout
    assert len(lines) == 1 and lines[0].startswith("eprmetrics: error: "), out.stderr
    return lines[0]


OUTPUTS = [
    (["{d}/real.npy", "{d}/fake.npy", "--json", "{o}/out.json"], "--json"),
    (["{d}/real.npy", "{d}/fake.npy", "--save-features", "{o}/feats"], "--save-features"),
    (["{d}/real.npy", "{d}/fake.npy", "--cache-dir", "{o}/cache"], "--cache-dir"),
    (["{d}/real.npy", "{d}/fake.npy", "--plot", "{o}/plots"], "--plot"),
    (["{d}/real.npy", "{d}/fake.npy", "--exact", "--json", "{o}/out.json"], "--json"),
    (["manifold", "{d}/real.npy", "{o}/manifold", "--json", "{o}/m.json"], "--json"),
    (["manifold", "{d}/real.npy", "{o}/manifold", "--cache-dir", "{o}/cache"], "--cache-dir"),
    (["demo", "--n", "50", "--dim", "4", "--json", "{o}/demo.json", "--plot", ""], "--json"),
    (["demo", "--n", "50", "--dim", "4", "--plot", "{o}/demo.png"], "--plot"),
    (["bench", "--n", "50", "--dim", "4", "--json", "{o}/bench.json"], "--json"),
]


@needs_rlimit
@pytest.mark.parametrize("argv,option", OUTPUTS, ids=[f"{a[0] if '{' not in a[0] else 'run'} {o}" for a, o in OUTPUTS])
def test_an_output_that_cannot_be_written_stops_the_command_before_any_work(argv, option, pair, tmp_path):
    """The probe writes 4 KiB; a 1 KiB file size limit makes it fail as a full disk would."""
    args = [a.format(d=pair, o=tmp_path) for a in argv] + ["--quiet"]
    out = run_limited(args, 1024, no_work=True)
    line = _one_error_line(out)
    assert option in line and str(tmp_path) in line and "ulimit" in line, line
    assert "WORK STARTED" not in out.stdout
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


@needs_rlimit
def test_a_json_write_that_fails_at_the_end_leaves_no_partial_file(pair, tmp_path):
    """The probe passes (4 KiB < 8 KiB) but the realism scores make the JSON larger than the limit."""
    target = tmp_path / "out.json"
    argv = [str(pair / "real.npy"), str(pair / "fake.npy"), "--exact", "--realism", "--json", str(target), "--quiet"]
    out = run_limited(argv, 8192, no_work=False)
    line = _one_error_line(out)
    assert "--json" in line and str(target) in line and "ulimit" in line, line
    assert "precision" in out.stdout  # the result was computed and printed; only the file failed
    assert os.listdir(tmp_path) == []  # neither a 0-byte out.json nor a temporary


@needs_rlimit
def test_result_to_json_is_atomic(pair, tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    code = (
        "import resource, signal, sys\n"
        "import numpy as np\n"
        "from eprmetrics import compute_pr\n"
        "from eprmetrics.fileio import OutputError\n"
        f"res = compute_pr(np.load({str(pair / 'real.npy')!r}), np.load({str(pair / 'fake.npy')!r}), realism=True)\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))\n"
        "try:\n"
        f"    res.to_json({str(target)!r})\n"
        "except OutputError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 3, out.stderr
    assert str(target) in out.stdout and len(out.stdout.strip().splitlines()) == 1
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


@needs_rlimit
@pytest.mark.parametrize(
    "option, call",
    [
        ("save_features", "compute_pr(imgs, imgs, extractor=Net(), save_features={out!r})"),
        ("cache_dir", "compute_pr(imgs, imgs, extractor=Net(), cache_dir={out!r})"),
        # extract_features itself (it probed nothing: a place that cannot be written failed after the extraction)
        ("save_features", "extract_features(imgs, extractor=Net(), save_to={out!r} + '/real.npy')"),
        ("cache_dir", "extract_features(imgs, extractor=Net(), cache_dir={out!r})"),
    ],
)
def test_api_image_outputs_are_probed_before_any_image_is_extracted(option, call, tmp_path):
    pytest.importorskip("PIL")
    code = (
        "import resource, signal, sys\n"
        "import torch\n"
        "from eprmetrics import compute_pr\n"
        "from eprmetrics.features import extract_features\n"
        "from eprmetrics.fileio import OutputError\n"
        "class Net(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        print('EXTRACTED'); sys.exit(9)\n"
        "imgs = torch.zeros(8, 3, 16, 16, dtype=torch.uint8)\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "try:\n"
        f"    {call.format(out=str(tmp_path / 'out'))}\n"
        "except OutputError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 3, out.stdout + out.stderr
    assert out.stdout.startswith(f"{option}: cannot write to {tmp_path / 'out'}") and "EXTRACTED" not in out.stdout


@not_root
def test_a_read_only_folder_is_refused_before_any_work(pair, tmp_path, monkeypatch, capsys):
    import eprmetrics.api

    def work(*args, **kwargs):
        raise AssertionError("the work started")

    monkeypatch.setattr(eprmetrics.api, "compute_epr", work)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code = main([str(pair / "real.npy"), str(pair / "fake.npy"), "--json", str(ro / "out.json"), "--quiet"])
    finally:
        ro.chmod(0o700)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("eprmetrics: error: --json: cannot write to"), err
    assert os.listdir(ro) == []


def test_outputs_are_written_whole_when_they_can_be(pair, tmp_path, capsys):
    """The same commands with room to write: files complete and parseable, no temporary left."""
    target = tmp_path / "out.json"
    code = main([str(pair / "real.npy"), str(pair / "fake.npy"), "--exact", "--json", str(target), "--quiet"])
    assert code == 0
    assert json.loads(target.read_text())["method"] == "exact"
    res = compute_pr(np.load(pair / "real.npy"), np.load(pair / "fake.npy"))
    res.to_json(str(tmp_path / "api.json"))
    assert json.loads((tmp_path / "api.json").read_text())["precision"] == res.precision
    assert sorted(os.listdir(tmp_path)) == ["api.json", "out.json"]


@needs_rlimit
def test_the_probe_sees_a_partial_write(tmp_path):
    """Over a size limit (or on a nearly full disk) write() first writes part of the block and returns its
    length; only the next call fails. The probe must write all of it to find out."""
    code = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "from eprmetrics.fileio import probe_writable, OutputError\n"
        "try:\n"
        f"    probe_writable({str(tmp_path / 'out.json')!r}, '--json')\n"
        "except OutputError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 3 and "ulimit" in out.stdout, out.stdout + out.stderr
    assert os.listdir(tmp_path) == []


def test_to_json_into_a_folder_is_one_line(tmp_path):
    res = compute_pr(np.ones((5, 2)) * np.arange(5)[:, None], np.ones((5, 2)), k=1)
    with pytest.raises(OutputError, match="to_json path: could not write"):
        res.to_json(str(tmp_path))


def test_a_figure_path_that_cannot_be_written_is_refused_before_the_graphs(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import eprmetrics.plots.hubness as hubness

    def work(*args, **kwargs):
        raise AssertionError("the graphs were built")

    monkeypatch.setattr(hubness, "hub_histograms", work)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"^path: cannot write to .*afile: a file is where a folder is needed"):
        hubness.hubness_histogram(np.ones((9, 2)), np.ones((9, 2)), 3, tmp_path / "afile" / "h.png")
