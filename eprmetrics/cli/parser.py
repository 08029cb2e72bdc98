"""The command line's argparse tree and value types; choice lists come from the registries."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn, Union

from ..defaults import DEFAULTS
from ..engine import ERROR_BOUNDS, PRECISIONS
from ..estimators import FAST_METHODS, RADII_MODES
from ..features import extractor_names
from ..neighbours import backend_names
from ..plots import PLOT_HELP

__all__ = ["UsageError", "build_parser", "COMMANDS"]

COMMANDS = ("run", "manifold", "demo", "bench")


class UsageError(Exception):
    """A bad command line (unknown flag, unreadable value): reported on one line like every user error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> "NoReturn":  # argparse would print the usage block and exit
        raise UsageError(f"{message} (see {self.prog} --help)")


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
    run.add_argument("real", help="real images (folder or .zip), features (.npy/.npz), or a manifold folder")
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
    run.add_argument(
        "--screen",
        type=_screen,
        default=None,
        metavar="{auto,on,off}",
        help="fast methods: skip points a projected distance rules out in the exact decisions (auto: a pilot decides)",
    )
    run.add_argument("--realism", action="store_true", help="store per-sample realism scores in --json (--exact)")
    _add_images(run)
    run.add_argument("--save-features", metavar="DIR", help="write real.npy and fake.npy features to DIR")
    run.add_argument("--plot", metavar="DIR", help=PLOT_HELP)
    _add_common(run)


def _screen(text: str) -> object:
    """``--screen``: auto, on or off (compute_epr's ``screen="auto"``, True, False)."""
    values: dict[str, object] = {"auto": "auto", "on": True, "off": False}
    if text not in values:
        raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")
    return values[text]


def _add_images(p: argparse.ArgumentParser) -> None:
    """The options of image inputs (extractor, weights, loader, cache)."""
    p.add_argument(
        "--extractor", default=DEFAULTS["extractor"], choices=extractor_names(), help="feature network for image inputs"
    )
    p.add_argument("--weights", help="state-dict file for the extractor (offline)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--workers", type=int, default=DEFAULTS["num_workers"], help="DataLoader worker processes")
    p.add_argument("--cache-dir", help="reuse/keep extracted features here")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images with a warning")


def _add_manifold(sub: Any) -> None:
    m = sub.add_parser(
        "manifold",
        help="fit the real set's reference manifold once (exact radii) and save it; pass the folder as REAL later",
    )
    m.add_argument("real", help="real images (folder or .zip) or features (.npy/.npz)")
    m.add_argument("out", help="new or empty folder to write (manifold.json, radii.npz, features.npy)")
    m.add_argument(
        "--no-copy", action="store_true", help="keep only the path of the real .npy instead of copying the features"
    )
    m.add_argument("--overwrite", action="store_true", help="replace OUT when it already holds a manifold")
    _add_images(m)
    _add_common(m)


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
        "feature files (the sampled estimator by default, --exact for exact P&R); `eprmetrics manifold REAL OUT` "
        "fits the real side once (then `eprmetrics OUT FAKE`); `eprmetrics demo`.",
    )
    parser.add_argument("--version", action="version", version=f"eprmetrics {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    _add_run(sub)
    _add_manifold(sub)
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
        "  " + p.format_usage().replace("usage: ", "") for p in (sub.choices[c] for c in COMMANDS)
    )
    return parser
