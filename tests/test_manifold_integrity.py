"""Manifold files that cannot lie: every changed, truncated, swapped or foreign file is one line naming it.

Each test plants one fault a user has met (radii of another manifold, an edited scale, a truncated
``radii.npz``, a header claiming 10¹² rows, features of another network, a symlink out of the folder,
an interrupted re-save, an existing OUT) and checks the refusal; without the check each would load and
give wrong numbers, a traceback, a MemoryError or a mixed folder.
"""

from __future__ import annotations

import errno
import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch

from eprmetrics import Manifold, compute_pr
from eprmetrics.features import Extractor, register_extractor
from eprmetrics.fileio import OutputError
from eprmetrics.manifold import DestinationError, ManifoldError
from eprmetrics.manifold.meta import content_hash
from eprmetrics.manifold.storage import _arrays_hash


def _sets(rng, n=120, d=5):
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(90, d)).astype(np.float32)


@pytest.fixture
def saved(rng, tmp_path):
    """A manifold saved in ``tmp_path/m``, its real and a fake set."""
    real, fake = _sets(rng)
    manifold = Manifold.fit(real, k=(3, 5), progress=False)
    return manifold, manifold.save(tmp_path / "m"), real, fake


def _meta(path):
    with open(os.path.join(path, "manifold.json")) as f:
        return json.load(f)


def _write_meta(path, meta, reseal=False):
    """Write ``manifold.json``; ``reseal``: with a recomputed content hash (a forger who knows the format)."""
    if reseal:
        meta["content_hash"] = content_hash(meta)
    with open(os.path.join(path, "manifold.json"), "w") as f:
        json.dump(meta, f)


def _one_line(exc_info, *names):
    message = str(exc_info.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message
    return message


def test_a_clean_save_loads_and_gives_the_same_numbers(saved):
    manifold, path, real, fake = saved
    loaded = Manifold.load(path)
    assert loaded.k == (3, 5) and loaded.extractor is None
    for key in ("precision", "recall", "density", "coverage"):
        assert getattr(compute_pr(loaded, fake, k=5), key) == getattr(compute_pr(real, fake, k=5), key)
    meta = _meta(path)
    assert meta["version"] == 2 and meta["content_hash"].startswith("sha256:") and meta["features"]["copied"]


def test_radii_of_another_manifold_are_refused(rng, saved, tmp_path):
    # Same n and k, other data: loaded silently before, density 20.6 instead of 2.31 in the issue.
    _, path, _, _ = saved
    other, _ = _sets(rng)
    other_path = Manifold.fit(other, k=(3, 5), progress=False).save(tmp_path / "other")
    os.replace(os.path.join(other_path, "radii.npz"), os.path.join(path, "radii.npz"))
    with pytest.raises(ManifoldError, match="is not the radii this manifold was saved with") as exc:
        Manifold.load(path)
    _one_line(exc, "radii.npz")


@pytest.mark.parametrize(
    "key,value", [("scale", 0.5), ("largest", 123.0), ("k", [3, 4]), ("n", 119), ("extractor", None)]
)
def test_an_edited_manifold_json_is_refused(saved, key, value):
    _, path, _, _ = saved
    meta = _meta(path)
    if key == "extractor":
        meta["extractor"] = {"name": "vgg16", "identity": "vgg16|default"}
    else:
        meta[key] = value
    _write_meta(path, meta)
    with pytest.raises(ManifoldError, match="was changed after it was saved") as exc:
        Manifold.load(path)
    _one_line(exc, "manifold.json")


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("scale", 0.5, r"scale=0.5: expected 1.0"),
        ("k", [5, 3], r"k=\[5, 3\]: expected increasing integers"),
        ("k", [3, 500], r"expected increasing integers from 1 to n − 1"),
        ("largest", -1.0, r"largest=-1.0: expected a finite value"),
        ("n", 1, "n=1: expected at least 2"),
    ],
)
def test_a_forged_content_hash_still_meets_the_value_checks(saved, key, value, match):
    _, path, _, _ = saved
    meta = _meta(path)
    meta[key] = value
    _write_meta(path, meta, reseal=True)
    with pytest.raises(ManifoldError, match=match) as exc:
        Manifold.load(path)
    _one_line(exc, "manifold.json")


def test_forged_radii_values_and_shapes_are_refused(saved):
    manifold, path, _, _ = saved
    radii_file = os.path.join(path, "radii.npz")

    def plant(change, match):
        with np.load(radii_file) as r:
            arrays = {key: r[key].copy() for key in ("vals", "idx", "sqdist", "index")}
        good = {key: value.copy() for key, value in arrays.items()}
        change(arrays)
        np.savez(radii_file, **arrays)
        meta = _meta(path)
        meta["radii_hash"] = _arrays_hash(arrays)
        _write_meta(path, meta, reseal=True)
        with pytest.raises(ManifoldError, match=match) as exc:
            Manifold.load(path)
        _one_line(exc, "radii.npz")
        np.savez(radii_file, **good)
        meta["radii_hash"] = _arrays_hash(good)
        _write_meta(path, meta, reseal=True)
        assert Manifold.load(path).n == manifold.n

    plant(lambda a: a["sqdist"].__setitem__((0, 0), np.nan), "sqdist holds negative, NaN or infinite")
    plant(lambda a: a["vals"].__setitem__((1, 1), -1.0), "vals holds negative")
    plant(lambda a: a["index"].__setitem__((2, 0), manifold.n), r"index holds indices outside 0…119")
    plant(lambda a: a["sqdist"].__setitem__((3, slice(None)), a["sqdist"][3, ::-1].copy()), "not in ascending")
    plant(lambda a: a.__setitem__("sqdist", a["sqdist"][:-1]), r"sqdist.npy has shape \(119, 5\)")
    plant(lambda a: a.__setitem__("sqdist", a["sqdist"].astype(np.float32)), "sqdist.npy holds float32")
    plant(lambda a: a.__setitem__("idx", a["idx"][:, :-1]), "vals and idx differ in shape")


@pytest.mark.parametrize("keep", [0, 10, 200, 0.5, -1])
def test_a_truncated_radii_file_is_one_line(saved, keep):
    _, path, _, fake = saved
    radii_file = os.path.join(path, "radii.npz")
    data = open(radii_file, "rb").read()
    cut = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) - 1)
    with open(radii_file, "wb") as f:
        f.write(data[:cut])
    with pytest.raises(ManifoldError, match="radii.npz: not a complete .npz archive") as exc:
        Manifold.load(path)
    _one_line(exc, "radii.npz", "fit and save the manifold again")


def test_a_damaged_byte_in_the_radii_is_caught(saved):
    _, path, _, _ = saved
    radii_file = os.path.join(path, "radii.npz")
    data = bytearray(open(radii_file, "rb").read())
    data[len(data) // 2] ^= 0xFF  # inside an array's data: the member's CRC no longer matches
    with open(radii_file, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(ManifoldError, match="radii.npz") as exc:
        Manifold.load(path)
    _one_line(exc)


def _npy(shape, dtype, payload):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _rewrite_npz(radii_file, name, member_bytes, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(radii_file) as z:
        members = {info.filename: z.read(info) for info in z.infolist()}
    members[f"{name}.npy"] = member_bytes
    with zipfile.ZipFile(radii_file, "w", compress) as z:
        for key, value in members.items():
            z.writestr(key, value)


def test_an_npz_header_claiming_absurd_shapes_is_refused_before_allocating(saved):
    _, path, _, _ = saved
    radii_file = os.path.join(path, "radii.npz")
    with np.load(radii_file) as r:
        arrays = {key: r[key] for key in r.files}
    sqdist = arrays["sqdist"]
    # 10¹² rows: numpy.load would allocate 40 TB (MemoryError); the shape is checked against n first
    _rewrite_npz(radii_file, "sqdist", _npy((10**12, 5), "<f8", sqdist.tobytes()))
    with pytest.raises(ManifoldError, match=r"sqdist.npy has shape \(1000000000000, 5\)") as exc:
        Manifold.load(path)
    _one_line(exc, "radii.npz")
    # …and against the bytes the member holds, when a forged manifold.json agrees with the header
    meta = _meta(path)
    meta["n"] = 10**12
    _write_meta(path, meta, reseal=True)
    for name, arr in arrays.items():
        _rewrite_npz(radii_file, name, _npy((10**12, arr.shape[1]), arr.dtype, arr.tobytes()))
    with pytest.raises(ManifoldError, match=r"header claims 1000000000000 × \d+ \S+ values .* but it holds") as exc:
        Manifold.load(path)
    _one_line(exc, "radii.npz")


def test_a_foreign_npz_is_refused(saved):
    _, path, _, _ = saved
    radii_file = os.path.join(path, "radii.npz")
    with np.load(radii_file) as r:
        arrays = {key: r[key] for key in r.files}
    np.savez_compressed(radii_file, **arrays)
    with pytest.raises(ManifoldError, match="is compressed or claims") as exc:
        Manifold.load(path)
    _one_line(exc, "radii.npz")
    np.savez(radii_file, **arrays, extra=np.zeros(3))
    with pytest.raises(ManifoldError, match=r"holds \[.*'extra.npy'.*\]; expected the arrays") as exc:
        Manifold.load(path)
    np.savez(radii_file, **arrays)
    _rewrite_npz(radii_file, "vals", b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(ManifoldError, match="not a .npy array") as exc:
        Manifold.load(path)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "is not valid JSON"),
        (b'{"format": "eprmetrics.Manifold", "version": 2, "n": 3', "is not valid JSON"),
        (b"\xff\xfe\x00", "is not valid JSON"),
        (b"[]", "is not an eprmetrics manifold"),
        (b'{"format": "something else"}', "is not an eprmetrics manifold"),
        (b'{"format": "eprmetrics.Manifold", "version": "2"}', "has format version '2', expected 2"),
        (b'{"format": "eprmetrics.Manifold", "version": 1, "n": 10}', "saved in format version 1, which has no"),
    ],
)
def test_a_malformed_manifold_json_is_one_line(saved, content, match):
    _, path, _, _ = saved
    with open(os.path.join(path, "manifold.json"), "wb") as f:
        f.write(content)
    with pytest.raises(ManifoldError, match=match) as exc:
        Manifold.load(path)
    _one_line(exc, "manifold.json")


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda m: m.pop("k"), "lacks the key k"),
        (lambda m: m["features"].pop("fingerprint"), "lacks the key features.fingerprint"),
        (lambda m: m.__setitem__("n", "120"), "n expected an integer, got str"),
        (lambda m: m.__setitem__("n", True), "n expected an integer, got bool"),
        (lambda m: m.__setitem__("scale", "1"), "scale expected a number, got str"),
        (lambda m: m.__setitem__("features", []), "features expected an object, got list"),
        (lambda m: m.__setitem__("extractor", 5), "extractor expected an object or null, got int"),
        (lambda m: m.__setitem__("extractor", {"name": "x"}), "lacks the key extractor.identity"),
        (lambda m: m["features"].__setitem__("copied", "yes"), "features.copied expected"),
        (lambda m: m.__setitem__("largest", float("nan")), "is not valid JSON"),
    ],
)
def test_missing_keys_and_wrong_types_are_one_line(saved, edit, match):
    _, path, _, _ = saved
    meta = _meta(path)
    edit(meta)
    _write_meta(path, meta)
    with pytest.raises(ManifoldError, match=match) as exc:
        Manifold.load(path)
    _one_line(exc, "manifold.json")


def test_the_features_file_replaced_truncated_or_absurd(rng, saved):
    _, path, real, _ = saved
    features_file = os.path.join(path, "features.npy")
    other = real.copy()
    other[0] += 1.0  # the same shape and dtype, other values
    np.save(features_file, other)
    with pytest.raises(ManifoldError, match="is not the feature file this manifold was fitted on") as exc:
        Manifold.load(path)
    _one_line(exc, "features.npy")
    np.save(features_file, real[:-1])
    with pytest.raises(ManifoldError, match="holds 119 × 5 float32 features, not the 120 × 5") as exc:
        Manifold.load(path)
    with open(features_file, "wb") as f:
        f.write(_npy((10**12, 5), "<f4", real.tobytes()))
    with pytest.raises(ManifoldError, match=r"header claims 1000000000000 × 5 float32 values") as exc:
        Manifold.load(path)
    _one_line(exc, "features.npy")
    np.save(features_file, real)
    with open(features_file, "r+b") as f:
        f.truncate(os.path.getsize(features_file) - 7)
    with pytest.raises(ManifoldError, match="truncated, appended to or damaged") as exc:
        Manifold.load(path)
    np.save(features_file, real)
    assert Manifold.load(path).n == 120


def test_features_may_not_lead_out_of_the_folder(saved, tmp_path):
    _, path, real, _ = saved
    features_file = os.path.join(path, "features.npy")
    outside = tmp_path / "elsewhere.npy"
    np.save(outside, real)  # the very same features: refused for where they are, not what they hold
    os.remove(features_file)
    os.symlink(outside, features_file)
    with pytest.raises(ManifoldError, match="is a symbolic link to .*elsewhere.npy, outside the manifold") as exc:
        Manifold.load(path)
    _one_line(exc, "features.npy")
    assert Manifold.load(path, features=outside).n == 120  # the caller's own path is trusted
    os.remove(features_file)
    os.symlink("features_inside.npy", features_file)  # a link inside the folder is fine
    np.save(os.path.join(path, "features_inside.npy"), real)
    assert Manifold.load(path).n == 120
    for name in ("../elsewhere.npy", str(outside), "sub/../../elsewhere.npy"):
        meta = _meta(path)
        meta["features"]["file"] = name
        _write_meta(path, meta, reseal=True)
        with pytest.raises(ManifoldError, match="leads outside the manifold's folder") as exc:
            Manifold.load(path)
        _one_line(exc, "manifold.json")


def test_an_oversized_manifold_json_is_refused_unread(saved):
    _, path, _, _ = saved
    with open(os.path.join(path, "manifold.json"), "ab") as f:
        f.write(b" " * (1 << 20))
    with pytest.raises(ManifoldError, match="is not a regular file of at most 1 MiB") as exc:
        Manifold.load(path)
    _one_line(exc, "manifold.json")


def test_format_version_1_is_refused_with_what_to_do(saved):
    _, path, _, _ = saved
    meta = _meta(path)
    v1 = {key: meta[key] for key in ("n", "dim", "k", "scale", "largest")}
    v1.update(format="eprmetrics.Manifold", version=1, features="features.npy", fingerprint="0" * 32)
    _write_meta(path, v1)
    with pytest.raises(ManifoldError, match="format version 1, which has no content hash.*--overwrite") as exc:
        Manifold.load(path)
    _one_line(exc, "manifold.json")


# ------------------------------------------------------------------------------------ foreign extractor


def _tiny_extractor(name, seed):
    def factory(weights):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 6))
        return Extractor(name, net, 6, lambda x, dev: x.to(dev).float() / 255.0, f"{name}:seed{seed}")

    return factory


for _name, _seed in (("test-net-a", 0), ("test-net-b", 1)):  # two networks of one width (CLIP and DINOv2: 768)
    register_extractor(_name, dim=6)(_tiny_extractor(_name, _seed))


def _images(rng, n):
    return torch.from_numpy(rng.integers(0, 256, size=(n, 3, 8, 8), dtype=np.uint8))


def test_fake_images_through_another_extractor_are_refused(rng, tmp_path):
    real, fake = _images(rng, 60), _images(rng, 50)
    manifold = Manifold.fit(real, k=3, extractor="test-net-a", progress=False)
    assert manifold.extractor is not None and manifold.extractor.name == "test-net-a"
    for m in (manifold, Manifold.load(manifold.save(tmp_path / "m"))):  # the record survives the files
        with pytest.raises(ValueError, match="made by test-net-a, but the fake images would be turned into") as exc:
            compute_pr(m, fake, extractor="test-net-b")
        _one_line(exc, "by test-net-b")
        assert (
            compute_pr(m, fake, extractor="test-net-a").precision
            == compute_pr(real, fake, extractor="test-net-a").precision
        )
    # fakes given as features: not checkable, the caller's responsibility (documented)
    fake_features = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    assert 0.0 <= compute_pr(manifold, fake_features).precision <= 1.0


def test_cli_refuses_fake_images_through_another_extractor(rng, tmp_path, capsys):
    from PIL import Image

    from eprmetrics.cli import main

    for name, n in (("real", 40), ("fake", 30)):
        (tmp_path / name).mkdir()
        for i, img in enumerate(_images(rng, n).permute(0, 2, 3, 1).numpy()):
            Image.fromarray(img).save(tmp_path / name / f"{i}.png")
    out, fake = str(tmp_path / "m"), str(tmp_path / "fake")
    assert main(["manifold", str(tmp_path / "real"), out, "--extractor", "test-net-a", "--k", "3", "--quiet"]) == 0
    capsys.readouterr()
    for other in (["--extractor", "test-net-b"], []):  # another network, or the default vgg16 forgotten
        assert main([out, fake, "--exact", "--k", "3", "--quiet", *other]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--extractor: this manifold's features were made by test-net-a" in err[0], err
    assert main([out, fake, "--exact", "--k", "3", "--quiet", "--extractor", "test-net-a"]) == 0


def test_a_custom_module_with_other_weights_is_refused(rng):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 6))
    other = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 6))
    real, fake = _images(rng, 60), _images(rng, 50)
    manifold = Manifold.fit(real, k=3, extractor=net, progress=False)
    with pytest.raises(ValueError, match=r"made by custom \(Sequential\).* with other weights") as exc:
        compute_pr(manifold, fake, extractor=other)
    _one_line(exc)
    with pytest.raises(ValueError, match=r"made by custom \(Sequential\).* by test-net-a"):
        compute_pr(manifold, fake, extractor="test-net-a")


def test_a_built_extractor_is_identified_by_its_network(rng):
    from eprmetrics.features import get_extractor

    real, fake = _images(rng, 60), _images(rng, 50)
    built = get_extractor("test-net-a")
    manifold = Manifold.fit(real, k=3, extractor=built, progress=False)
    assert manifold.extractor.name == "test-net-a" and "0x" not in manifold.extractor.identity
    assert compute_pr(manifold, fake, extractor=get_extractor("test-net-a")).n_fake == 50  # another build: same
    with pytest.raises(ValueError, match="made by test-net-a, .* by test-net-b"):
        compute_pr(manifold, fake, extractor=get_extractor("test-net-b"))


def test_a_custom_module_with_a_weights_file_is_the_network_after_loading(rng, tmp_path):
    def net():
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 6))

    torch.manual_seed(0)
    torch.save(net().state_dict(), tmp_path / "a.pt")
    torch.save(net().state_dict(), tmp_path / "b.pt")
    real, fake = _images(rng, 60), _images(rng, 50)
    manifold = Manifold.fit(real, k=3, extractor=net(), weights=tmp_path / "a.pt", progress=False)
    # another instance of the class (other random init) carrying the same weights: the same network
    same = compute_pr(manifold, fake, extractor=net(), weights=tmp_path / "a.pt")
    assert same.precision == compute_pr(real, fake, extractor=net(), weights=tmp_path / "a.pt").precision
    with pytest.raises(ValueError, match="with other weights"):
        compute_pr(manifold, fake, extractor=net(), weights=tmp_path / "b.pt")


# ------------------------------------------------------------------------------------ saving


def test_an_interrupted_save_keeps_the_old_manifold(rng, saved, monkeypatch):
    manifold, path, real, fake = saved
    before = {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}
    other, _ = _sets(rng)
    replacement = Manifold.fit(other, k=3, progress=False)
    calls = []

    def failing_save(*args, **kwargs):  # radii.npz written, features.npy fails
        calls.append(1)
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        replacement.save(path, overwrite=True)
    assert calls
    monkeypatch.undo()
    after = {name: open(os.path.join(path, name), "rb").read() for name in sorted(os.listdir(path))}
    assert after == before
    assert sorted(os.listdir(os.path.dirname(path))) == ["m"]  # no temporary folder left behind
    loaded = Manifold.load(path)
    np.testing.assert_array_equal(loaded.radii(3), manifold.radii(3))


def test_a_full_disk_mid_save_is_one_line_and_keeps_the_old_manifold(rng, saved, monkeypatch):
    manifold, path, _, _ = saved
    other, _ = _sets(rng)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(OutputError, match="the disk is full") as exc:
        Manifold.fit(other, k=3, progress=False).save(path, overwrite=True)
    _one_line(exc)
    monkeypatch.undo()
    np.testing.assert_array_equal(Manifold.load(path).radii(5), manifold.radii(5))


def test_overwrite_is_refused_unless_asked(rng, saved, tmp_path):
    manifold, path, _, _ = saved
    before = open(os.path.join(path, "manifold.json")).read()
    with pytest.raises(DestinationError, match="already holds a manifold; pass overwrite=True") as exc:
        manifold.save(path)
    _one_line(exc)
    assert isinstance(exc.value, OutputError) and isinstance(exc.value, ValueError)
    assert open(os.path.join(path, "manifold.json")).read() == before
    other, _ = _sets(rng)
    replaced = Manifold.fit(other, k=3, progress=False)
    assert replaced.save(path, overwrite=True) == path
    np.testing.assert_array_equal(Manifold.load(path).radii(3), replaced.radii(3))
    # a folder that is not a manifold is never replaced, not even with overwrite=True
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.png").write_bytes(b"keep me")
    with pytest.raises(DestinationError, match=r"holds no manifold \(manifold.json\) and is not empty"):
        manifold.save(photos, overwrite=True)
    assert (photos / "cat.png").read_bytes() == b"keep me"
    (tmp_path / "empty").mkdir()
    assert Manifold.load(manifold.save(tmp_path / "empty")).n == 120  # an empty folder is fine
    os.symlink(path, tmp_path / "link")
    with pytest.raises(DestinationError, match="is a symbolic link"):
        manifold.save(tmp_path / "link", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DestinationError, match="exists and is not a folder"):
        manifold.save(tmp_path / "file", overwrite=True)


def test_saving_by_path_never_replaces_the_folder_holding_the_features(rng, tmp_path):
    real, _ = _sets(rng)
    folder = tmp_path / "m"
    Manifold.fit(real, k=3, progress=False).save(folder)
    inside = Manifold.fit(str(folder / "features.npy"), k=3, progress=False)
    with pytest.raises(DestinationError, match="features.npy lies in .*, which saving replaces"):
        inside.save(folder, features=False, overwrite=True)
    assert Manifold.load(folder).n == 120


def test_cli_refuses_an_existing_out_and_a_damaged_manifold(rng, tmp_path, capsys):
    from eprmetrics.cli import main

    real, fake = _sets(rng)
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "fake.npy", fake)
    out = str(tmp_path / "m")
    assert main(["manifold", str(tmp_path / "real.npy"), out, "--k", "3", "--quiet"]) == 0
    before = open(os.path.join(out, "manifold.json")).read()
    capsys.readouterr()
    assert main(["manifold", str(tmp_path / "real.npy"), out, "--k", "5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a manifold" in err[0] and "--overwrite" in err[0]
    assert open(os.path.join(out, "manifold.json")).read() == before
    assert main(["manifold", str(tmp_path / "real.npy"), out, "--k", "5", "--quiet", "--overwrite"]) == 0
    assert Manifold.load(out).k == (5,)
    with open(os.path.join(out, "radii.npz"), "r+b") as f:
        f.truncate(100)
    capsys.readouterr()
    assert main([out, str(tmp_path / "fake.npy"), "--exact", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "radii.npz" in err[0] and "Traceback" not in err[0]
