"""``python -m tests.image_runner SPEC``: extract_features on hostile inputs in a fresh process.

Prints one JSON line per spec: the features' shape or the error (type and message), the warnings raised in
this process, and the growth of peak RSS (``ru_maxrss``) so far over a warm-up extraction of one small PNG (so
lazy imports and thread pools are not counted; a peak, so each line bounds every run before it too). Tests run
it under a ``timeout=`` to catch hangs. SPEC is a JSON list of objects: ``images`` (path or list),
``on_error``, ``cache_dir``, ``workers``, ``batch_size``, ``record`` (False: warnings print to stderr as
usual, for tests counting them across worker processes).
"""

import json
import os
import resource
import sys
import tempfile
import warnings

import numpy as np
import torch

from eprmetrics.features import extract_features


class TinyNet(torch.nn.Module):
    """No parameters, any input size: 2×2 average pool of each channel → 12 features."""

    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(2)

    def forward(self, x):
        return self.pool(x).flatten(1)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(spec: dict) -> dict:
    try:
        feats = extract_features(
            spec["images"],
            name=spec.get("name", "real"),
            extractor=TinyNet(),
            on_error=spec.get("on_error", "raise"),
            cache_dir=spec.get("cache_dir"),
            num_workers=spec.get("workers", 0),
            batch_size=spec.get("batch_size", 1),
            progress=False,
        )
        return {"shape": list(feats.shape)}
    except Exception as exc:  # the test inspects what was raised
        return {"error": f"{type(exc).__name__}: {exc}", "value_error": isinstance(exc, ValueError)}


def main() -> None:
    specs = json.loads(sys.argv[1])
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(os.path.join(tmp, "warm.png"))
        extract_features(os.path.join(tmp, "."), extractor=TinyNet(), progress=False)
    before = _peak_mib()
    for spec in specs:
        if spec.get("record", True):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = _run(spec)
            out["warnings"] = [str(w.message) for w in caught]
        else:
            out = _run(spec)
        out["rss_growth_mib"] = round(_peak_mib() - before, 1)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
