"""The walkthrough notebook runs top to bottom, offline (its code cells executed in order in one namespace)."""

import json
import pathlib
import warnings

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "notebooks" / "walkthrough.ipynb"


def test_walkthrough_notebook_runs(capsys):
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cell in cells:
            if cell["cell_type"] == "code":
                exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "psi=1.0" in out and "relative error P" in out
    assert namespace["smp"].precision_ci[0] <= namespace["res"].precision <= namespace["smp"].precision_ci[1]
