"""Fresh-clone timing of the README's two commands: `make demo` and `make test` (installation included).

Clones this repository's committed HEAD into a temporary folder, runs each command there from
scratch (its own .venv), and writes benchmarks/results/setup.{json,md}.

    python -m benchmarks.bench_setup        # from the repository root
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.common import REPO, machine, save


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    rows = []
    for target in ("demo", "test"):
        with tempfile.TemporaryDirectory() as tmp:
            clone = os.path.join(tmp, "eprmetrics")
            subprocess.run(["git", "clone", "-q", REPO, clone], check=True)
            t0 = time.perf_counter()
            proc = subprocess.run(["make", target], cwd=clone, capture_output=True, text=True)
            sec = time.perf_counter() - t0
            # pip's warnings go to stderr: report stdout's end, stderr's only on failure
            tail = (proc.stdout if proc.returncode == 0 else proc.stderr).strip().splitlines()[-3:]
            rows.append({"command": f"make {target}", "seconds": sec, "exit": proc.returncode, "tail": tail})
            print(f"make {target}: exit {proc.returncode} in {sec:.0f} s — {tail[-1] if tail else ''}", flush=True)
    md = [
        "# Fresh clone: the README's two commands, installation included",
        "",
        "| command | exit | time | last line |",
        "|---|---|---|---|",
    ]
    md += [
        f"| `{r['command']}` | {r['exit']} | {r['seconds'] / 60:.1f} min | {r['tail'][-1] if r['tail'] else ''} |"
        for r in rows
    ]
    md += ["", f"Machine: `{json.dumps(machine())}`", ""]
    j, m = save("setup", {"machine": machine(), "rows": rows}, "\n".join(md))
    print("\n".join(md))
    print(f"wrote {j}, {m}")
    if any(r["exit"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
