"""Feature-extraction throughput (images/s) for VGG-16 and Inception-v3, from a folder and from a tensor.

Weights are randomly initialised (throughput does not depend on their values) so the
benchmark runs offline. Writes benchmarks/results/features_<device>.{json,md}.

From the repository root:

    python -m benchmarks.bench_features --n 64 --size 256
    python -m benchmarks.bench_features --device cuda --n 2048 --batch-size 128 --workers 8
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from benchmarks.common import machine, save
from eprmetrics.engine import resolve_device
from eprmetrics.features import extract_features


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    import torchvision
    from PIL import Image

    dev = resolve_device(args.device)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(args.n, args.size, args.size, 3), dtype=np.uint8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, im in enumerate(imgs):
            Image.fromarray(im).save(os.path.join(tmp, f"{i:05d}.png"))
        tensor = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
        for name, ctor in (
            ("vgg16", lambda: torchvision.models.vgg16(weights=None)),
            ("inception", lambda: torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)),
        ):
            wpath = os.path.join(tmp, f"{name}.pt")
            torch.manual_seed(0)
            torch.save(ctor().state_dict(), wpath)
            extract_features(
                tensor[: args.batch_size],
                extractor=name,
                weights=wpath,
                device=dev,
                batch_size=args.batch_size,
                progress=False,
            )  # warm-up
            for source, value in (("uint8 tensor", tensor), ("PNG folder", tmp)):
                t0 = time.perf_counter()
                feats = extract_features(
                    value,
                    extractor=name,
                    weights=wpath,
                    device=dev,
                    batch_size=args.batch_size,
                    num_workers=args.workers,
                    progress=False,
                )
                sec = time.perf_counter() - t0
                rows.append(
                    {
                        "extractor": name,
                        "source": source,
                        "n": args.n,
                        "size": args.size,
                        "seconds": sec,
                        "images_per_s": args.n / sec,
                        "dim": feats.shape[1],
                    }
                )
                print(f"{name:10s} {source:13s} {args.n / sec:8.1f} images/s", flush=True)
    md = [
        f"# Feature-extraction throughput ({dev}; {args.n} images of {args.size}×{args.size}, batch {args.batch_size}, "
        f"{args.workers} workers)",
        "",
        "| extractor | source | images/s | dim |",
        "|---|---|---|---|",
    ]
    md += [f"| {r['extractor']} | {r['source']} | {r['images_per_s']:.1f} | {r['dim']} |" for r in rows]
    md += ["", f"Machine: `{json.dumps(machine())}`", ""]
    j, m = save(f"features_{dev.type}", {"machine": machine(), "args": vars(args), "rows": rows}, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {j}, {m}")


if __name__ == "__main__":
    main()
