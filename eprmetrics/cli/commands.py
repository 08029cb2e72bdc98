"""One function per command: arguments → the API; every check and message is the API's."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..defaults import DEFAULTS
from ..fileio import atomic_write, probe_writable
from ..plots import plot_features_dir, plot_run
from ..validation import check_folder, check_output_file

__all__ = ["COMMAND_FUNCTIONS", "flag"]


def _run(args: argparse.Namespace) -> int:
    from ..engine import init

    world = init(args.device)  # under torchrun: every rank shares the tiled passes (NCCL for CUDA, gloo for CPU)
    try:
        return _run_on(args, world.rank, distributed=bool(world))
    finally:
        world.close()


def _engine_opts(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        strict=args.strict,
        device=args.device,
        memory_budget=args.memory_budget,
        error_bound=args.error_bound,
        precision=args.precision,
        progress=False if args.quiet else None,  # None: bars on a terminal only (tqdm's convention, as the API)
    )


# Options of the fast methods only: their defaults are filled in here, so an explicit one with --exact is seen.
_FAST_OPTIONS = {
    "method": DEFAULTS["method"],
    "t": DEFAULTS["t"],
    "backend": DEFAULTS["backend"],
    "radii": DEFAULTS["radii"],
    "sample_size": DEFAULTS["sample_size"],
    "confidence": DEFAULTS["confidence"],
    "screen": DEFAULTS["screen"],
}


def _check_combination(args: argparse.Namespace) -> None:
    """Refuse options that cannot apply instead of dropping them."""
    if args.exact:
        given = [name for name in _FAST_OPTIONS if getattr(args, name) is not None] + (["no_audit"] * args.no_audit)
        if given:
            flags = ", ".join(flag(n) for n in given)
            raise ValueError(f"{flags}: expected no fast-method option with --exact, got {flags}; drop them or --exact")
    elif args.realism:
        raise ValueError(
            "--realism: expected --exact with it (realism scores come from exact P&R), got --realism alone; add --exact"
        )
    else:
        _check_method_options(args, args.method or DEFAULTS["method"])
    for name, default in _FAST_OPTIONS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)


def _check_method_options(args: argparse.Namespace, method: str) -> None:
    """Options of one fast method are refused with the other (``--t`` with the sampled estimator…)."""
    only = {"sampled": ("sample_size",), "hubness": ("t", "radii")}
    foreign = [n for m, names in only.items() if m != method for n in names if getattr(args, n) is not None]
    foreign += ["no_audit"] * (args.no_audit and method != "hubness")
    if foreign:
        flags = ", ".join(flag(n) for n in foreign)
        raise ValueError(
            f"{flags}: expected options of --method {method}, got {flags}, for another method; drop them or "
            f"change --method"
        )


def flag(name: str) -> str:
    return "--" + {"num_workers": "workers", "on_error": "skip-bad-images"}.get(name, name).replace("_", "-")


def _image_opts(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        extractor=args.extractor,
        weights=args.weights,
        batch_size=args.batch_size,
        num_workers=args.workers,
        cache_dir=args.cache_dir,
        on_error="skip" if args.skip_bad_images else "raise",
    )


def _real_input(path: Any) -> Any:
    """A folder written by ``eprmetrics manifold`` (or ``Manifold.save``) is the manifold; anything else passes."""
    from ..manifold import MANIFOLD_FILE, Manifold

    if isinstance(path, str) and os.path.isfile(os.path.join(path, MANIFOLD_FILE)):
        return Manifold.load(path)
    return path


def _check_outputs(args: argparse.Namespace, folders: tuple[str, ...] = (), files: tuple[str, ...] = ("json",)) -> None:
    """Every output of the command probed before any work (a temporary file created and removed there): a
    read-only folder, a missing permission or a full disk is one line now, not a traceback after the run."""
    for name in files:
        value = getattr(args, name, None)
        if value:
            probe_writable(check_output_file(value, flag(name)), flag(name))
    for name in folders:
        value = getattr(args, name, None)
        if value:
            probe_writable(check_folder(value, flag(name)) or value, flag(name), folder=True)


def _write_json(path: str, data: Any) -> None:
    """``--json``: written whole or not at all (a temporary file renamed over ``path``)."""
    with atomic_write(path, "--json", "w") as fh:
        fh.write(data if isinstance(data, str) else json.dumps(data, indent=2))
        fh.write("\n")


def _run_on(args: argparse.Namespace, rank: int, distributed: bool = False) -> int:
    from ..api import compute_epr, compute_pr

    _check_outputs(args, folders=("save_features", "cache_dir", "plot"))
    common = dict(
        _engine_opts(args),
        distributed=distributed,
        **_image_opts(args),
        save_features=plot_features_dir(args.plot, args.save_features, "--plot"),  # the figures need image features
    )
    _check_combination(args)
    if args.exact:
        res = compute_pr(_real_input(args.real), args.fake, k=args.k, realism=args.realism, **common)
    else:
        k = args.k[0] if len(args.k) == 1 else args.k
        res = compute_epr(
            _real_input(args.real),
            args.fake,
            k=k,
            audit=not args.no_audit,
            **{name: getattr(args, name) for name in _FAST_OPTIONS},
            **common,
        )
    if rank != 0:  # every rank holds the same result: rank 0 reports it
        return 0
    print(res)
    if res.method == "hubness":
        print(
            "eP&R is an estimate on hubs; its error depends on the data (see the audit line). "
            "--method sampled gives intervals, --exact the exact value."
        )
    if args.json:
        _write_json(args.json, res.to_json())
    plot_run(args.plot, args.real, args.fake, res, common["save_features"], args.device)
    return 0


def _single_k(args: argparse.Namespace, job: str) -> int:
    """The one k of the demo and bench jobs (the --json file and the demo's --plot probed too, before any work)."""
    if len(args.k) != 1:
        raise ValueError(f"--k: expected one value for the {job}, got {','.join(map(str, args.k))}; e.g. --k 3")
    _check_outputs(args, files=("json", "plot"))
    return int(args.k[0])


def _demo(args: argparse.Namespace) -> int:
    from ..demo import demo

    k = _single_k(args, "demo")
    demo(args.n, args.dim, args.seed, k, _engine_opts(args), plot=args.plot or None, json_path=args.json)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ..demo import bench, bench_data

    k = _single_k(args, "bench")
    data = bench_data(args.real, args.fake, args.n, args.dim, args.seed)
    bench(data, k, args.t, _engine_opts(args), json_path=args.json)
    return 0


def _manifold(args: argparse.Namespace) -> int:
    from ..manifold import Manifold, check_destination

    opts = {key: v for key, v in _engine_opts(args).items() if key != "strict"}  # radii do not depend on it
    _check_outputs(args, folders=("cache_dir",))
    check_destination(args.out, args.overwrite)  # before the fit: an existing OUT is refused in a second
    manifold = Manifold.fit(args.real, k=args.k, **opts, **_image_opts(args))
    path = manifold.save(args.out, features=not args.no_copy, overwrite=args.overwrite)
    fit_s = sum(s.seconds for s in manifold.stages)
    print(f"{manifold!r} fitted in {fit_s:.1f} s → {path}")
    print(f"use it as REAL: eprmetrics {path} FAKE (k ≤ {manifold.k_max})")
    if args.json:
        _write_json(
            args.json, {"path": path, "n": manifold.n, "dim": manifold.dim, "k": list(manifold.k), "fit_s": fit_s}
        )
    return 0


COMMAND_FUNCTIONS = {"run": _run, "manifold": _manifold, "demo": _demo, "bench": _bench}
