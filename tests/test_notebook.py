"""The walkthrough notebook runs top to bottom, headless and offline, in a Jupyter kernel (nbclient)."""

import pathlib

import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "notebooks" / "walkthrough.ipynb"


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def test_walkthrough_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not any(o.get("output_type") == "error" for o in c.outputs) for c in code)
    out = "\n".join(_text(c) for c in code)
    assert "relative error P" in out and "psi=1.0" in out and "on the frontier:" in out
    assert "sampled interval holds the exact precision: True" in out
    assert "extractors:" in out and "dinov2" in out and "'precision'" in out
    images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the ψ curve and the hubness histogram, shown inline


def test_walkthrough_notebook_is_committed_with_its_outputs():
    """A reader on GitHub sees what every cell prints (the run above checks that it still runs)."""
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs for c in code), "re-run the notebook and save it with its outputs"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert "on the frontier:" in "\n".join(_text(c) for c in code)
    assert sum("image/png" in o.get("data", {}) for c in code for o in c.outputs) == 2
