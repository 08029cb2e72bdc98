"""Parity with NVlabs' own P&R: the real ``metric_main.calc_metric`` of a StyleGAN2-ADA or StyleGAN3 checkout.

The checkout (a folder holding ``metrics/``, ``dnnlib/``, ``training/``) is imported from the path given;
nothing of it is copied here. In one process, on the CPU, offline:

* a 32×32 dataset zip (PNG images of a tiny random "true" generator) and a generator to evaluate (the same
  network with perturbed weights: ``z_dim``, ``c_dim = 0``, ``G(z=, c=)`` returning images in [-1, 1]);
* a stand-in VGG-16 detector with random weights (uint8 images → features), written in each checkout's
  format — a TorchScript file for the ``.pt`` URL of StyleGAN2-ADA (``torch.jit.load``), a pickle for the
  ``.pkl`` URL of StyleGAN3 (``pickle.load``) — where ``dnnlib.util.open_url`` finds a downloaded file
  (``<cache>/downloads/<md5(url)>_<name>``), so each URL reads as it would from the network;
* NVlabs' ``pr50k3_full`` at a reduced size, registered with ``metric_main.register_metric`` the way
  ``metric_main.py`` registers its own (``dataset_kwargs.update(max_size=None, xflip=False)``,
  ``precision_recall.compute_pr(opts, max_real=200000, num_gen=N, nhood_size=3, ...)``), and ours,
  ``make_metric(..., max_real=200000, num_gen=N)``, registered the same way (the generator draws its
  latents from its own seeded stream, so every run sees the same generated images).

Each metric runs in its own empty dnnlib cache folder; the feature-cache file each writes under
``gan-metrics/`` is its cache key. Then each runs again in the other's folder: a shared key means the
file is read, not written again. The features the checkout's helpers hand out are recorded (md5) in
every run. Where NVlabs' values differ from ours, the same features are decided again two ways: in
float16 with the checkout's own ``compute_distances`` as its ``compute_pr`` does, and in float64.
Finally the other checkout's detector is tried: our one-line error, and what the checkout's loader says.
``register()`` is called last, to show the four metrics land in the checkout's registry.

As calc_metrics.py, worker processes are spawned (forked DataLoader workers would share the zip's file
handle). Two shims, for this machine only (the CPU build of torch, a recent setuptools): StyleGAN2-ADA pins every
label batch (``Tensor.pin_memory``, which needs CUDA), so without CUDA pinning returns the tensor as is;
StyleGAN3's ``torch_utils`` imports ``pkg_resources.parse_version``, supplied from ``packaging`` when
setuptools no longer ships it. Neither touches a value.

Usage (from the repository root; writes benchmarks/results/stylegan_parity_<ada|sg3>.{json,md})::

    python -m benchmarks.bench_stylegan --checkout /path/to/stylegan3
    python -m benchmarks.bench_stylegan --checkout /path/to/stylegan2-ada-pytorch --num-real 300 --num-gen 200
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import types
import warnings
import zipfile
from typing import Any, Callable

import numpy as np
import torch

from benchmarks.common import REPO, machine, save

SHORT = {"stylegan2-ada": "ada", "stylegan3": "sg3"}


class StandInDetector(torch.nn.Module):
    """Random conv features in place of VGG-16: uint8 NCHW images in, ``[N, dim]`` float features out."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool2d(4)
        self.fc = torch.nn.Linear(32 * 16, dim)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.to(torch.float32) / 255
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


class TinyGenerator(torch.nn.Module):
    """NVlabs' generator interface at 32×32: ``G(z=, c=)`` → images in [-1, 1].

    Its latents come from its own seeded stream, one seed per call (``z`` gives the batch size only):
    NVlabs' helper draws ``z`` from the global RNG, which a DataLoader run advances, so a run that reads
    the reals from the cache would otherwise see other generated images. ``calc_metric`` deep-copies G,
    so every run starts the stream afresh.
    """

    def __init__(self, latent_seed: int, z_dim: int = 32, resolution: int = 32) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = z_dim, 0, resolution, 3
        self.latent_seed, self.calls = latent_seed, 0
        self.fc = torch.nn.Linear(z_dim, 3 * 8 * 8)
        self.up = torch.nn.Upsample(size=(resolution, resolution), mode="bilinear", align_corners=False)

    def forward(self, z: torch.Tensor, c: Any, **_: Any) -> torch.Tensor:
        stream = torch.Generator().manual_seed(self.latent_seed * 1_000_003 + self.calls)
        self.calls += 1
        w = torch.randn(z.shape, generator=stream).to(z.device)
        return torch.tanh(self.up(self.fc(w).view(-1, 3, 8, 8)))


def shim_environment() -> None:
    """The two shims of the module docstring; values are untouched."""
    if not torch.cuda.is_available():
        torch.Tensor.pin_memory = lambda self, *a, **k: self  # type: ignore[method-assign]
    try:
        import pkg_resources  # noqa: F401
    except ModuleNotFoundError:
        from packaging.version import parse

        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)  # type: ignore[assignment]


def make_dataset(folder: str, true_g: TinyGenerator, n: int) -> str:
    """A StyleGAN dataset zip of ``n`` PNGs drawn from ``true_g`` (no dataset.json: no labels)."""
    from PIL import Image

    with torch.no_grad():
        imgs = (true_g(z=torch.randn(n, true_g.z_dim), c=None) * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    path = os.path.join(folder, "tiny32.zip")
    with zipfile.ZipFile(path, "w") as zf:
        for i, img in enumerate(imgs.permute(0, 2, 3, 1).numpy()):
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="png")
            zf.writestr(f"{i:05d}.png", buf.getvalue())
    return path


def detector_files(dim: int, seed: int) -> dict[str, bytes]:
    """The stand-in detector as each known URL serves it: TorchScript for ``.pt``, a pickle for ``.pkl``."""
    from eprmetrics.integrations.stylegan import DETECTOR_URLS

    torch.manual_seed(seed)
    net = StandInDetector(dim).eval().requires_grad_(False)  # as NVIDIA's files: features come out detached
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, and StyleGAN2-ADA's format
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(net), buf)
    return {DETECTOR_URLS["stylegan2-ada"]: buf.getvalue(), DETECTOR_URLS["stylegan3"]: pickle.dumps(net)}


def fresh_cache(root: str, name: str, files: dict[str, bytes]) -> str:
    """An empty dnnlib cache folder holding only the detector 'downloads'; made the current one."""
    import dnnlib

    folder = os.path.join(root, name)
    os.makedirs(os.path.join(folder, "downloads"))
    for url, data in files.items():
        url_md5 = hashlib.md5(url.encode("utf-8")).hexdigest()
        with open(os.path.join(folder, "downloads", f"{url_md5}_{url.rsplit('/', 1)[-1]}"), "wb") as fh:
            fh.write(data)
    dnnlib.util.set_cache_dir(folder)
    return folder


def cache_files(folder: str) -> dict[str, int]:
    """The feature-cache files under ``gan-metrics/`` → their mtime (ns)."""
    sub = os.path.join(folder, "gan-metrics")
    names = sorted(os.listdir(sub)) if os.path.isdir(sub) else []
    return {name: os.stat(os.path.join(sub, name)).st_mtime_ns for name in names}


def register_pair(num_gen: int) -> tuple[str, str, str]:
    """NVlabs' reduced ``pr50k3_full`` and ours (exact, sampled), registered in the checkout's metric_main."""
    from metrics import metric_main, precision_recall

    from eprmetrics.integrations.stylegan import make_metric

    def prsmall3_full(opts: Any) -> dict[str, float]:
        opts.dataset_kwargs.update(max_size=None, xflip=False)
        precision, recall = precision_recall.compute_pr(
            opts, max_real=200000, num_gen=num_gen, nhood_size=3, row_batch_size=10000, col_batch_size=10000
        )
        return dict(prsmall3_full_precision=precision, prsmall3_full_recall=recall)

    metric_main.register_metric(prsmall3_full)
    metric_main.register_metric(make_metric("prsmall3_full_exact", max_real=200000, num_gen=num_gen))
    sampled = make_metric("prsmall3_full_sampled", max_real=200000, num_gen=num_gen, method="sampled")
    metric_main.register_metric(sampled)
    return "prsmall3_full", "prsmall3_full_exact", "prsmall3_full_sampled"


def calc(metric: str, G: torch.nn.Module, data: str, seed: int) -> dict[str, float]:
    """``metric_main.calc_metric`` as calc_metrics.py calls it (dataset options built the same way)."""
    import dnnlib
    from metrics import metric_main

    dataset_kwargs = dnnlib.EasyDict(class_name="training.dataset.ImageFolderDataset", path=data)
    dataset_kwargs.resolution, dataset_kwargs.use_labels = G.img_resolution, False
    torch.manual_seed(seed)
    np.random.seed(seed)
    out = metric_main.calc_metric(
        metric=metric, G=G, dataset_kwargs=dataset_kwargs, num_gpus=1, rank=0, device=torch.device("cpu")
    )
    return {key: float(value) for key, value in out.results.items()}


def run_in(folder: str, fn: Callable[[], dict[str, float]]) -> dict[str, Any]:
    """``fn()`` with ``folder`` as the dnnlib cache: its values, the features the checkout's helpers handed
    out (md5 of the float32 bytes, real then generated), the cache files it wrote or replaced."""
    import dnnlib
    from metrics import metric_utils

    seen: list[np.ndarray] = []
    helpers = {
        name: getattr(metric_utils, name)
        for name in ("compute_feature_stats_for_dataset", "compute_feature_stats_for_generator")
    }

    def recording(helper: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            stats = helper(*args, **kwargs)
            seen.append(stats.get_all().copy())
            return stats

        return call

    dnnlib.util.set_cache_dir(folder)
    before = cache_files(folder)
    for name, helper in helpers.items():
        setattr(metric_utils, name, recording(helper))
    try:
        values = fn()
    finally:
        for name, helper in helpers.items():
            setattr(metric_utils, name, helper)
    after = cache_files(folder)
    written = sorted(name for name, mtime in after.items() if before.get(name) != mtime)
    digests = [hashlib.md5(np.ascontiguousarray(x).tobytes()).hexdigest() for x in seen]
    return {
        "values": values,
        "cache_files": sorted(after),
        "written": written,
        "features_md5": digests,
        "_features": seen,
    }


def float16_check(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, Any]:
    """Where NVlabs' float16 decisions part from exact ones, on the very features both got.

    NVlabs' side: the checkout's own ``precision_recall.compute_distances`` on float16 features, radii
    rounded to float16 and ``dist <= radius``, as its ``compute_pr`` does (one row batch). Exact side:
    float64 distances (``≤``, self excluded). ``margin``: min over balls of (distance − radius) / radius in
    float64 for each probe decided differently (≤ 0: inside).
    """
    from metrics import precision_recall

    out: dict[str, Any] = {}
    for name, manifold, probes in (("precision", real, fake), ("recall", fake, real)):
        m16, p16 = (torch.from_numpy(x).to(torch.float16) for x in (manifold, probes))
        dist = precision_recall.compute_distances(m16, m16, num_gpus=1, rank=0, col_batch_size=10000)
        kth16 = dist.to(torch.float32).kthvalue(k + 1).values.to(torch.float16)
        nv = (precision_recall.compute_distances(p16, m16, num_gpus=1, rank=0, col_batch_size=10000) <= kth16).any(1)
        m64, p64 = torch.from_numpy(manifold).double(), torch.from_numpy(probes).double()
        kth64 = torch.cdist(m64, m64).kthvalue(k + 1).values
        rel = ((torch.cdist(p64, m64) - kth64) / kth64).min(dim=1).values
        exact = rel <= 0
        differ = torch.nonzero(nv != exact).flatten().tolist()
        out[name] = {
            "nvlabs_float16_hits": int(nv.sum()),
            "float64_hits": int(exact.sum()),
            "median_norm_over_radius": float((m64.norm(dim=1) / kth64).median()),
            "differing_probes": [{"probe": i, "nvlabs": bool(nv[i]), "margin": float(rel[i])} for i in differ],
        }
    return out


def wrong_detector(kind: str, num_gen: int, G: torch.nn.Module, data: str, seed: int) -> dict[str, str]:
    """The other checkout's detector: our metric's error, and what this checkout's loader does with it."""
    from metrics import metric_main, metric_utils

    from eprmetrics.integrations.stylegan import DETECTOR_URLS, make_metric

    other = DETECTOR_URLS["stylegan3" if kind == "stylegan2-ada" else "stylegan2-ada"]
    metric_main.register_metric(make_metric("prwrong", max_real=200000, num_gen=num_gen, detector_url=other))
    out = {"url": other}
    for name, call in (
        ("eprmetrics", lambda: calc("prwrong", G, data, seed)),
        ("checkout_loader", lambda: metric_utils.get_feature_detector(other)),
    ):
        try:
            call()
            out[name] = "no error"
        except Exception as exc:  # what each says is the result here
            first = str(exc).splitlines()[0]  # ours is one line; the loader's may run on
            out[name] = f"{type(exc).__name__}: {first if name == 'eprmetrics' else first[:160]}"
    return out


def revision(path: str) -> str:
    try:
        rev = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        status = ["git", "-C", path, "status", "--porcelain", "-uno", "--", ".", ":!benchmarks/results"]
        dirty = subprocess.run(status, capture_output=True, text=True)  # result files do not make code dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def compare(runs: dict[str, Any], names: tuple[str, str], num_real: int, num_gen: int) -> dict[str, Any]:
    """Hit counts behind each value (NVlabs reports a float32 mean, eprmetrics a float64 one), whether
    they agree, whether every run got the same features, and whether the cache file is one and shared."""
    nv, ours = names
    out: dict[str, Any] = {}
    for value, n in (("precision", num_gen), ("recall", num_real)):
        out[f"{value}_hits"] = {
            run: round(runs[run]["values"][f"{name}_{value}"] * n)
            for run, name in (("nvlabs", nv), ("eprmetrics", ours), ("eprmetrics_in_nvlabs_cache", ours))
        }
        out[f"{value}_equal"] = len(set(out[f"{value}_hits"].values())) == 1
    out["features_equal"] = len({tuple(run["features_md5"]) for run in runs.values()}) == 1
    out["cache_key_equal"] = runs["nvlabs"]["written"] == runs["eprmetrics"]["written"] != []
    shared = (runs["eprmetrics_in_nvlabs_cache"]["written"], runs["nvlabs_in_eprmetrics_cache"]["written"])
    out["cache_shared"] = shared == ([], [])
    return out


def measure(args: argparse.Namespace, root: str) -> dict[str, Any]:
    """Every run of the module docstring, in order; the checkout is already on ``sys.path``."""
    from metrics import metric_main

    from eprmetrics.integrations.stylegan import checkout_detector_url, checkout_kind, register

    kind = checkout_kind()
    if kind is None:
        raise SystemExit(f"--checkout: expected a StyleGAN2-ADA or StyleGAN3 checkout, got {args.checkout}")
    files = detector_files(args.dim, args.seed)
    torch.manual_seed(args.seed + 1)
    true_g = TinyGenerator(latent_seed=2 * args.seed).eval()
    data = make_dataset(root, true_g, args.num_real)
    G = TinyGenerator(latent_seed=2 * args.seed + 1).eval()
    with torch.no_grad():
        for mine, true in zip(G.parameters(), true_g.parameters()):
            mine.copy_(true + args.shift * torch.randn_like(true))
    nv, ours, sampled = register_pair(args.num_gen)
    dirs = {side: fresh_cache(root, side, files) for side in ("nvlabs", "eprmetrics")}
    runs = {
        "nvlabs": run_in(dirs["nvlabs"], lambda: calc(nv, G, data, args.seed)),
        "eprmetrics": run_in(dirs["eprmetrics"], lambda: calc(ours, G, data, args.seed)),
        "eprmetrics_in_nvlabs_cache": run_in(dirs["nvlabs"], lambda: calc(ours, G, data, args.seed)),
        "nvlabs_in_eprmetrics_cache": run_in(dirs["eprmetrics"], lambda: calc(nv, G, data, args.seed)),
        "eprmetrics_sampled": run_in(dirs["eprmetrics"], lambda: calc(sampled, G, data, args.seed)),
    }
    parity = compare(runs, (nv, ours), args.num_real, args.num_gen)
    real, fake = runs["nvlabs"]["_features"]
    for run in runs.values():
        del run["_features"]
    return {
        "checkout": {"path": os.path.abspath(args.checkout), "kind": kind, "commit": revision(args.checkout)},
        "eprmetrics_revision": revision(REPO),
        "detector_url": checkout_detector_url(),
        "settings": {k: getattr(args, k) for k in ("num_real", "num_gen", "dim", "shift", "seed")},
        "machine": machine(),
        "runs": runs,
        "parity": parity,
        "float16": float16_check(real, fake),
        "registered_by_register()": [name for name in register() if metric_main.is_valid_metric(name)],
        "other_checkout_detector": wrong_detector(kind, args.num_gen, G, data, args.seed),
    }


def markdown(p: dict[str, Any]) -> str:
    co, runs, s = p["checkout"], p["runs"], p["settings"]
    lines = [
        f"# StyleGAN parity: {co['kind']} `{co['commit']}`",
        "",
        f"`python -m benchmarks.bench_stylegan --checkout {co['path']}` · eprmetrics `{p['eprmetrics_revision']}` · "
        f"{p['machine'].get('cpu')} (CPU, torch {p['machine']['torch']}) · {p['machine']['date']}",
        "",
        f"NVlabs' real `metric_main.calc_metric`, {s['num_real']} reals (32×32 zip), {s['num_gen']} generated, "
        f"k = 3, stand-in detector ({s['dim']}-d random conv features) at `{p['detector_url']}`.",
        "",
        "| run | cache folder | precision | recall | feature-cache file written |",
        "|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        values = run["values"]
        prec = next(v for k, v in values.items() if k.endswith("_precision"))
        rec = next(v for k, v in values.items() if k.endswith("_recall"))
        folder = "NVlabs' run's" if name in ("nvlabs", "eprmetrics_in_nvlabs_cache") else "eprmetrics' run's"
        lines.append(f"| {name} | {folder} | {prec!r} | {rec!r} | {', '.join(run['written']) or '— (read)'} |")
    par = p["parity"]
    lines += [
        "",
        f"Hits (NVlabs reports their float32 mean, eprmetrics the float64 one): precision {par['precision_hits']}"
        f" of {s['num_gen']}, recall {par['recall_hits']} of {s['num_real']}.",
        "",
        "Parity: " + ", ".join(f"{k} = {v}" for k, v in par.items() if not k.endswith("_hits")),
        "",
    ]
    lines += [
        "Where the values differ: NVlabs decides on float16 features and radii, eprmetrics exactly. On the same",
        "features, the checkout's own `compute_distances` in float16 (radii rounded to float16, `dist <= radius`)",
        "gives NVlabs' counts, float64 gives eprmetrics'. The probes decided differently lie close to a ball's",
        "edge (margin: min over balls of (distance − radius) / radius in float64, ≤ 0 inside), where rounding",
        "the features to float16 (2^-11 relative per coordinate, amplified in a distance shorter than the",
        "feature norms: median norm / radius "
        + ", ".join(f"{v} {p['float16'][v]['median_norm_over_radius']:.1f}" for v in ("precision", "recall"))
        + ") moves them across:",
        "",
        "| value | NVlabs (reported) | float16 replica | float64 | eprmetrics | probes decided differently (margin) |",
        "|---|---|---|---|---|---|",
    ]
    for value in ("precision", "recall"):
        f16, hits = p["float16"][value], par[f"{value}_hits"]
        differ = ", ".join(f"#{d['probe']} ({d['margin']:+.1e})" for d in f16["differing_probes"]) or "none"
        lines.append(
            f"| {value} | {hits['nvlabs']} | {f16['nvlabs_float16_hits']} | {f16['float64_hits']} "
            f"| {hits['eprmetrics']} | {differ} |"
        )
    wrong = p["other_checkout_detector"]
    lines += [
        "",
        f"The other checkout's detector (`{wrong['url']}`) here:",
        "",
        f"* eprmetrics: `{wrong['eprmetrics']}`",
        f"* this checkout's own loader: `{wrong['checkout_loader']}`",
        "",
        "The cache file's name holds the md5 of the dataset options (their temporary path included), so it",
        "differs between runs of this script; within a run it is one file for both metrics.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", required=True, help="a StyleGAN2-ADA or StyleGAN3 checkout (holds metrics/)")
    ap.add_argument("--num-real", type=int, default=240)
    ap.add_argument("--num-gen", type=int, default=192)
    ap.add_argument("--dim", type=int, default=64, help="stand-in detector's feature dimension")
    ap.add_argument("--shift", type=float, default=0.05, help="weight perturbation of the generated vs true network")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="result name (default stylegan_parity_<ada|sg3>)")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(args.checkout, "metrics")):
        raise SystemExit(f"--checkout: expected a folder holding metrics/ and dnnlib/, got {args.checkout}")
    sys.path.insert(0, os.path.abspath(args.checkout))
    shim_environment()
    torch.multiprocessing.set_start_method("spawn")  # as calc_metrics.py: forked loader workers share the zip
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.utils.data")  # 3 workers, no pinning
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # StyleGAN2-ADA's torch.jit.load
    with tempfile.TemporaryDirectory() as root:
        payload = measure(args, root)
    name = args.name or f"stylegan_parity_{SHORT[payload['checkout']['kind']]}"
    for path in save(name, payload, markdown(payload)):
        print(path)
    print(markdown(payload))


if __name__ == "__main__":
    main()
