"""The feature cache returns only what its key claims: the features of these images' bytes, through this
extractor with these weights' content — a planted, colliding or stale entry is a miss, recomputed."""

import os
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

from eprmetrics.features import ImageLimits, as_image_source, extract_features  # noqa: E402
from tests.test_reliability import no_hang  # noqa: E402


class SmallNet(torch.nn.Module):
    """4×4 average pool → a linear layer: 16 features of any image size, seeded weights."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 16))

    def forward(self, x):
        return self.net(x)


def png(rng, size=16):
    import io

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def folder_of(path, blobs):
    path.mkdir(parents=True)
    for i, blob in enumerate(blobs):
        (path / f"{i:02d}.png").write_bytes(blob)
    return path


def extract(images, cache, **kw):
    return extract_features(images, extractor=SmallNet(), cache_dir=cache, progress=False, batch_size=2, **kw)


def entry(cache):
    (path,) = cache.glob("*.npy")
    return path


@pytest.mark.parametrize(
    "planted",
    [
        np.zeros((2, 3), np.float32),  # another shape: the observed bug returned it as the 5 images' features
        np.zeros((5, 16), np.float64),  # another dtype
        np.full((5, 16), np.nan, np.float32),  # not finite
        np.zeros((16, 5), np.float32).T,  # Fortran order, right shape: a valid entry, used
    ],
    ids=["shape", "dtype", "nan", "fortran-ok"],
)
def test_planted_entry_is_a_miss_recomputed_and_overwritten(tmp_path, rng, planted):
    images = folder_of(tmp_path / "imgs", [png(rng) for _ in range(5)])
    cache = tmp_path / "cache"
    first = extract(images, cache)
    np.save(entry(cache), planted)
    if planted.shape == (5, 16) and planted.dtype == np.float32 and np.isfinite(planted).all():
        np.testing.assert_array_equal(extract(images, cache), planted)  # a well-formed entry is trusted
        return
    with pytest.warns(UserWarning, match=r"cache_dir: the entry .*\.npy holds .*; recomputing it"):
        again = extract(images, cache)
    np.testing.assert_array_equal(again, first)
    np.testing.assert_array_equal(np.load(entry(cache)), first)  # overwritten


def test_fifo_or_truncated_entry_is_a_miss(tmp_path, rng):
    images = folder_of(tmp_path / "imgs", [png(rng) for _ in range(3)])
    cache = tmp_path / "cache"
    first = extract(images, cache)
    path = entry(cache)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.warns(UserWarning, match="is truncated or has trailing data"):
        np.testing.assert_array_equal(extract(images, cache), first)
    if hasattr(os, "mkfifo"):
        path.unlink()
        os.mkfifo(path)  # would block a plain open
        with pytest.warns(UserWarning, match="is a FIFO"):
            np.testing.assert_array_equal(extract(images, cache), first)


def test_concatenated_bytes_do_not_collide(tmp_path, rng):
    """Folders [P1‖P2, P3] and [P1, P2‖P3] hashed to one key when bytes were concatenated without lengths; a
    PNG ignores bytes after its end, so they decode as (P1, P3) and (P1, P2): different features."""
    p1, p2, p3 = png(rng), png(rng), png(rng)
    a = folder_of(tmp_path / "a", [p1 + p2, p3])
    b = folder_of(tmp_path / "b", [p1, p2 + p3])
    assert as_image_source(a, "a").fingerprint() != as_image_source(b, "b").fingerprint()
    cache = tmp_path / "cache"
    extract(a, cache)
    np.testing.assert_array_equal(extract(b, cache), extract(b, None))


def test_zip_member_names_are_part_of_the_key(tmp_path, rng):
    import zipfile

    blobs = [png(rng), png(rng)]
    keys = []
    for names in (("a.png", "b.png"), ("a.png", "c.png")):
        path = tmp_path / f"{names[1]}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for name, blob in zip(names, blobs):
                zf.writestr(name, blob)
        keys.append(as_image_source(path, "z").fingerprint())
    assert keys[0] != keys[1]


def test_reduction_bound_is_part_of_the_key(tmp_path, rng):
    images = folder_of(tmp_path / "imgs", [png(rng, size=40)])
    small, default = ImageLimits(max_side=16), ImageLimits()
    assert as_image_source(images, "x", limits=small).fingerprint() != as_image_source(images, "x").fingerprint()
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning, match="reduced to at most 16"):
        reduced = extract(images, cache, limits=small)
    full = extract(images, cache, limits=default)
    assert not np.array_equal(reduced, full) and len(list(cache.glob("*.npy"))) == 2


def test_weights_replaced_with_cp_p_are_new_weights(tmp_path, rng):
    """``cp -p`` keeps size and mtime: weights identified by path, size and mtime served the old features."""
    images = folder_of(tmp_path / "imgs", [png(rng) for _ in range(4)])
    old, new = tmp_path / "old.pt", tmp_path / "new.pt"
    torch.save(SmallNet(seed=1).state_dict(), old)
    torch.save(SmallNet(seed=2).state_dict(), new)
    os.utime(new, ns=(old.stat().st_atime_ns, old.stat().st_mtime_ns))
    weights = tmp_path / "weights.pt"
    shutil.copy2(old, weights)
    cache = tmp_path / "cache"

    def run(cache_dir):  # a fresh module each time: loading weights changes the module it is given
        return extract_features(images, extractor=SmallNet(), weights=weights, cache_dir=cache_dir, progress=False)

    with_old = run(cache)
    stat = weights.stat()
    shutil.copy2(new, weights)  # what `cp -p new.pt weights.pt` does: same path, size and mtime
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    with_new = run(cache)
    assert not np.array_equal(with_old, with_new)
    np.testing.assert_array_equal(with_new, run(None))


def test_weights_are_hashed_once_per_file(tmp_path, monkeypatch):
    from eprmetrics.features import base

    path = tmp_path / "w.pt"
    torch.save(SmallNet().state_dict(), path)
    hashed = []
    real = base.hashlib.blake2b
    monkeypatch.setattr(base.hashlib, "blake2b", lambda *a, **k: hashed.append(1) or real(*a, **k))
    first = base.weights_fingerprint(str(path), "default")
    assert base.weights_fingerprint(str(path), "default") == first and len(hashed) == 1
    shutil.copy(path, tmp_path / "elsewhere.pt")  # the same bytes at another path: the same weights
    assert base.weights_fingerprint(str(tmp_path / "elsewhere.pt"), "default") == first


def test_runs_that_skip_images_are_not_cached(tmp_path, rng):
    images = folder_of(tmp_path / "imgs", [png(rng), png(rng), b"not an image"])
    cache = tmp_path / "cache"
    with pytest.warns(UserWarning) as caught:
        feats = extract(images, cache, on_error="skip")
    assert feats.shape == (2, 16) and not list(cache.glob("*.npy"))
    texts = [str(w.message) for w in caught]
    assert any("1 of 3 images could not be read and were skipped" in t for t in texts), texts
    assert any("cache_dir: the features of images are not cached: 1 images were skipped" in t for t in texts), texts


def test_zip_read_by_workers_after_the_fingerprint(tmp_path, rng):
    """The fingerprint opens the archive in the parent before the DataLoader forks its workers: each process
    must read through its own handle (a shared one interleaves their reads: bad CRCs, wrong bytes)."""
    import zipfile

    path = tmp_path / "imgs.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(32):
            zf.writestr(f"{i:02d}.png", png(rng, size=160))  # ~75 KB: many chunked reads to interleave
    alone = extract(path, None)
    np.testing.assert_array_equal(extract(path, tmp_path / "cache", num_workers=2), alone)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_cli_hostile_file_while_fingerprinting_is_one_line(tmp_path, rng, capsys, monkeypatch):
    """The cache's fingerprint reads every file before the network is built: a FIFO there is the same one
    line as during extraction (it hung before), exit status 2."""
    import torch.hub

    from eprmetrics.cli import main

    def no_download(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    real = folder_of(tmp_path / "real", [png(rng) for _ in range(4)])
    os.mkfifo(real / "pipe.png")
    with no_hang(60):  # a blocking open() of the FIFO fails the test instead of hanging it
        code = main([str(real), str(real), "--cache-dir", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "real: cannot read image" in err and "pipe.png: it is a FIFO" in err, err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_worker_reads_through_its_own_zip_handle(tmp_path, rng):
    """Deterministic form of the test above: a child's reads leave the parent's file offset where it was."""
    import zipfile

    path = tmp_path / "imgs.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(4):
            zf.writestr(f"{i}.png", png(rng, size=160))  # larger than a read buffer: offsets differ by member
    src = as_image_source(path, "z")
    src.fingerprint()  # the parent's handle is open now, as when a DataLoader forks its workers
    fd = src._zip[1].fileno()
    before = os.lseek(fd, 0, os.SEEK_CUR)
    pid = os.fork()
    if pid == 0:  # the child: read a member, leave without pytest's teardown
        try:
            src.load(0)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.lseek(fd, 0, os.SEEK_CUR) == before
    src.close()


def test_a_file_changed_between_fingerprint_and_decoding_is_cached_under_what_was_decoded(tmp_path, rng, monkeypatch):
    """With a cache every file is read twice (fingerprint, then decoding). A file replaced between the two reads
    stored the new image's features under the old bytes' key, and a later run on the old images got them."""
    from eprmetrics.features.images import ImageSource

    old, new = [png(rng) for _ in range(3)], [png(rng) for _ in range(3)]
    images = folder_of(tmp_path / "imgs", old)
    cache = tmp_path / "cache"
    real = ImageSource.fingerprint

    def then_replace(self):
        key = real(self)
        (images / "01.png").write_bytes(new[1])  # after the lookup's read, before the workers' read
        return key

    monkeypatch.setattr(ImageSource, "fingerprint", then_replace)
    with pytest.warns(UserWarning, match="images changed while they were read"):
        extract(images, cache)
    monkeypatch.undo()
    (images / "01.png").write_bytes(old[1])
    np.testing.assert_array_equal(extract(images, cache), extract(images, None))  # the old images' features


def test_another_instance_given_the_same_weights_file_hits(tmp_path, rng, monkeypatch):
    """The key of a custom module given ``weights`` hashed its randomly initialised values before the file
    replaced them: every fresh instance (every new process) missed. The file's content identifies them."""
    from eprmetrics.features import base

    images = folder_of(tmp_path / "imgs", [png(rng) for _ in range(3)])
    weights, cache = tmp_path / "w.pt", tmp_path / "cache"
    torch.save(SmallNet(seed=5).state_dict(), weights)
    first = extract_features(images, extractor=SmallNet(seed=1), weights=weights, cache_dir=cache, progress=False)
    monkeypatch.setattr(base, "fit_state_dict", lambda *a, **k: pytest.fail("a hit loads no weights"))
    again = extract_features(images, extractor=SmallNet(seed=2), weights=weights, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(again, first)


class Scaled(SmallNet):
    """A buffer outside the state dict (``persistent=False``) changes the features; no weights file sets it."""

    def __init__(self, scale):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)), persistent=False)

    def forward(self, x):
        return self.net(x) * self.scale


def test_a_buffer_outside_the_state_dict_is_part_of_the_key(tmp_path, rng):
    images = folder_of(tmp_path / "imgs", [png(rng) for _ in range(3)])
    cache = tmp_path / "cache"
    one = extract_features(images, extractor=Scaled(1), cache_dir=cache, progress=False)
    two = extract_features(images, extractor=Scaled(2), cache_dir=cache, progress=False)
    np.testing.assert_allclose(two, 2 * one, rtol=1e-6)
