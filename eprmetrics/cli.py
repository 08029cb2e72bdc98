"""Command line: ``eprmetrics REAL FAKE``, ``eprmetrics demo`` and ``eprmetrics bench``.

Argument parsing only: values go to :func:`eprmetrics.compute_pr` /
:func:`eprmetrics.compute_epr`, whose checks (:mod:`eprmetrics.validation`)
give the messages; choice lists come from the registries. Every error caused
by the input ends as one line on stderr and exit status 2 (``--debug`` shows
the traceback instead).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from typing import Any, NoReturn, Optional, Sequence, Union

from .defaults import DEFAULTS
from .engine import ERROR_BOUNDS, PRECISIONS
from .estimators import FAST_METHODS, RADII_MODES
from .features import extractor_names
from .neighbours import backend_names
from .plots import PLOT_HELP, plot_features_dir, plot_run
from .validation import check_output_file

__all__ = ["main"]


class UsageError(Exception):
    """A bad command line (unknown flag, unreadable value): reported on one line like every user error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":  # argparse would print the usage block and exit
        raise UsageError(f"{message} (see {self.prog} --help)")


_USER_ERRORS = (
    UsageError,
    ValueError,
    TypeError,
    FileNotFoundError,
    ModuleNotFoundError,
    PermissionError,
    IsADirectoryError,
)


def _k_list(text: str) -> tuple[int, ...]:
    """Comma-separated ints; their values are checked by the API (one check, one message)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or comma-separated ints, got {text!r}") from None


def _bytes(text: str) -> int:
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("ib").rstrip("b")
    suffix = t[-1] if t and t[-1] in units else ""
    try:
        value = float(t[:-1] if suffix else t) * units[suffix]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bytes such as 512M or 2G, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {text!r}")
    return int(value)


def _number(text: str) -> Union[int, float]:
    """An int when the text is one, else a float (``--sample-size 2000`` or ``0.01``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return int(value) if value.is_integer() and value >= 1 else value  # 1e3 queries is 1000 queries


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=_k_list, default=(DEFAULTS["k"],), help="neighbourhood size(s), e.g. 3 or 3,5,10")
    p.add_argument("--strict", action="store_true", help="use < instead of ≤ for ball membership (prdc's rule)")
    p.add_argument("--device", default=DEFAULTS["device"], help="auto, cpu, cuda or cuda:N")
    p.add_argument("--memory-budget", type=_bytes, default=None, help="tile workspace, e.g. 512M, 4G")
    p.add_argument(
        "--error-bound",
        choices=ERROR_BOUNDS,
        default=DEFAULTS["error_bound"],
        help="fp32 rounding bound deciding which cases are re-checked in float64",
    )
    p.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default=DEFAULTS["precision"],
        help="GEMM precision (tf32: CUDA only); decisions stay exact, more are re-checked in float64",
    )
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def _add_run(sub: Any) -> None:
    run = sub.add_parser("run", help="P&R of two image sets or feature files (the default command)")
    run.add_argument("real", help="real images (folder or .zip) or features (.npy/.npz)")
    run.add_argument("fake", help="generated images (folder or .zip) or features (.npy/.npz)")
    run.add_argument("--exact", action="store_true", help="exact P&R instead of a fast estimate")
    run.add_argument(
        "--method",
        choices=FAST_METHODS,
        default=None,
        help="fast method: hubness (thesis eP&R, audited) or sampled (estimate with intervals)",
    )
    run.add_argument(
        "--sample-size",
        type=_number,
        default=None,
        help="sampled: queries per set (int) or target interval half-width (float, default 0.01)",
    )
    run.add_argument("--confidence", type=float, default=None, help="interval level (0.95)")
    run.add_argument("--no-audit", action="store_true", help="hubness: skip the sampled audit")
    run.add_argument("--t", type=int, default=None, help="hub threshold on k-occurrence (eP&R)")
    run.add_argument(
        "--backend",
        default=None,
        choices=["auto", *backend_names()],
        help="k-NN backend of the fast methods",
    )
    run.add_argument("--radii", choices=RADII_MODES, default=None, help="hub radii source (eP&R)")
    run.add_argument("--realism", action="store_true", help="store per-sample realism scores in --json (--exact)")
    run.add_argument(
        "--extractor", default=DEFAULTS["extractor"], choices=extractor_names(), help="feature network for image inputs"
    )
    run.add_argument("--weights", help="state-dict file for the extractor (offline)")
    run.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    run.add_argument("--workers", type=int, default=DEFAULTS["num_workers"], help="DataLoader worker processes")
    run.add_argument("--cache-dir", help="reuse/keep extracted features here")
    run.add_argument("--save-features", metavar="DIR", help="write real.npy and fake.npy features to DIR")
    run.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with a warning")
    run.add_argument("--plot", metavar="DIR", help=PLOT_HELP)
    _add_common(run)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eprmetrics")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; choice lists come from the registries (a registered backend or extractor shows)."""
    parser = _Parser(
        formatter_class=argparse.RawDescriptionHelpFormatter,
        prog="eprmetrics",
        description="Precision & recall of generative models. `eprmetrics REAL FAKE` on image folders, zips or "
        "feature files (eP&R by default, --exact for exact P&R); `eprmetrics demo`.",
    )
    parser.add_argument("--version", action="version", version=f"eprmetrics {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{run,demo,bench}")
    _add_run(sub)
    demo = sub.add_parser(
        "demo", help="synthetic real/fake pairs with controlled defects: exact P&R vs eP&R vs sampled"
    )
    demo.add_argument("--n", type=int, default=5000, help="samples per set (default 5000)")
    demo.add_argument("--dim", type=int, default=2048, help="feature dimension (default 2048)")
    demo.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    demo.add_argument("--plot", default="demo-out/demo.png", help="PNG of P and R per defect ('' for none)")
    _add_common(demo)
    bench = sub.add_parser("bench", help="time exact P&R against eP&R variants on synthetic or given features")
    bench.add_argument("--real", help="real features (.npy/.npz); default: synthetic")
    bench.add_argument("--fake", help="generated features (.npy/.npz)")
    bench.add_argument("--n", type=int, default=10000, help="synthetic samples per set (default 10000)")
    bench.add_argument("--dim", type=int, default=2048, help="synthetic feature dimension (default 2048)")
    bench.add_argument("--t", type=int, default=DEFAULTS["t"])
    bench.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    _add_common(bench)
    parser.epilog = "commands (eprmetrics COMMAND --help for each):\n" + "".join(
        "  " + p.format_usage().replace("usage: ", "") for p in (sub.choices[c] for c in ("run", "demo", "bench"))
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    from .engine import init

    world = init(args.device)  # under torchrun: every rank shares the tiled passes (NCCL for CUDA, gloo for CPU)
    try:
        return _run_on(args, world.rank)
    finally:
        world.close()


def _engine_opts(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        strict=args.strict,
        device=args.device,
        memory_budget=args.memory_budget,
        error_bound=args.error_bound,
        precision=args.precision,
        progress=not args.quiet,
    )


# Options of the fast methods only: their defaults are filled in here, so an explicit one with --exact is seen.
_FAST_OPTIONS = {
    "method": DEFAULTS["method"],
    "t": DEFAULTS["t"],
    "backend": DEFAULTS["backend"],
    "radii": DEFAULTS["radii"],
    "sample_size": DEFAULTS["sample_size"],
    "confidence": DEFAULTS["confidence"],
}


def _check_combination(args: argparse.Namespace) -> None:
    """Refuse options that cannot apply instead of dropping them."""
    if args.exact:
        given = [name for name in _FAST_OPTIONS if getattr(args, name) is not None] + (["no_audit"] * args.no_audit)
        if given:
            flags = ", ".join(_flag(n) for n in given)
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
        flags = ", ".join(_flag(n) for n in foreign)
        raise ValueError(
            f"{flags}: expected options of --method {method}, got {flags}, for another method; drop them or "
            f"change --method"
        )


def _flag(name: str) -> str:
    return "--" + {"num_workers": "workers", "on_error": "skip-bad-images"}.get(name, name).replace("_", "-")


def _run_on(args: argparse.Namespace, rank: int) -> int:
    from .api import compute_epr, compute_pr

    common = dict(
        _engine_opts(args),
        extractor=args.extractor,
        weights=args.weights,
        batch_size=args.batch_size,
        num_workers=args.workers,
        cache_dir=args.cache_dir,
        save_features=plot_features_dir(args.plot, args.save_features, "--plot"),  # the figures need image features
        on_error="skip" if args.skip_bad_images else "raise",
    )
    _check_combination(args)
    if args.json:
        check_output_file(args.json, "--json")
    if args.exact:
        res = compute_pr(args.real, args.fake, k=args.k, realism=args.realism, **common)
    else:
        k = args.k[0] if len(args.k) == 1 else args.k
        res = compute_epr(
            args.real,
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
        res.to_json(args.json)
    plot_run(args.plot, args.real, args.fake, res, common["save_features"], args.device)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import demo

    if len(args.k) != 1:
        raise ValueError(f"--k: expected one value for the demo, got {','.join(map(str, args.k))}; e.g. --k 3")
    if args.json:
        check_output_file(args.json, "--json")
    demo(args.n, args.dim, args.seed, args.k[0], _engine_opts(args), plot=args.plot or None, json_path=args.json)
    return 0


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (DataLoader workers wrap it in a traceback: keep its last line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return exc.__class__.__name__
    last = lines[-1]
    if len(lines) > 1 and "Traceback" in str(exc):
        return last.split(": ", 1)[1] if last.startswith(("ValueError: ", "FileNotFoundError: ")) else last
    return " ".join(lines)


def _bench(args: argparse.Namespace) -> int:
    from .demo import bench, bench_data

    if len(args.k) != 1:
        raise ValueError(f"--k: expected one value for the bench, got {','.join(map(str, args.k))}; e.g. --k 3")
    if args.json:
        check_output_file(args.json, "--json")
    data = bench_data(args.real, args.fake, args.n, args.dim, args.seed)
    bench(data, args.k[0], args.t, _engine_opts(args), json_path=args.json)
    return 0


# Python option names in messages → the flags a CLI user typed.
_FLAGS = {
    name: _flag(name)
    for name in (
        "k",
        "t",
        "method",
        "backend",
        "radii",
        "sample_size",
        "confidence",
        "seed",
        "strict",
        "device",
        "memory_budget",
        "error_bound",
        "precision",
        "extractor",
        "weights",
        "batch_size",
        "num_workers",
        "cache_dir",
        "save_features",
        "on_error",
    )
}


def _in_cli_terms(message: str) -> str:
    """``sample_size: expected …`` → ``--sample-size: expected …`` (the flag the user typed)."""
    name, sep, rest = message.partition(": ")
    return f"{_FLAGS[name]}{sep}{rest}" if sep and name in _FLAGS else message


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"eprmetrics: warning: {_in_cli_terms(_one_line(message))}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"run", "demo", "bench", "-h", "--help", "--version"}
    if argv and argv[0] not in commands:
        argv.insert(0, "run")  # `eprmetrics REAL FAKE` is `eprmetrics run REAL FAKE`
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:  # one line, and argparse's exit status
        print(f"eprmetrics: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.command is None:
        parser.print_help()
        return 2
    if not args.debug:  # warnings as one line in CLI terms, not Python source lines
        warnings.showwarning = _show_warning
    try:
        return {"run": _run, "demo": _demo, "bench": _bench}[args.command](args)
    except _USER_ERRORS as exc:
        if args.debug:
            traceback.print_exc()
        print(f"eprmetrics: error: {_in_cli_terms(_one_line(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("eprmetrics: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
