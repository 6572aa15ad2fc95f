"""Execute every notebook in ``notebooks/`` (quick mode) and check the files are clean.

The notebooks are jupytext percent-format scripts (``notebooks/*.py``): markdown cells are
``# %% [markdown]`` comment blocks holding plain LaTeX, code cells follow ``# %%``. Each is
read with jupytext and runs in a fresh Python 3 kernel of *this* interpreter (ipykernel
from the ``test`` extra; a kernel spec written for ``sys.executable``, so a ``python3`` spec
of another Python in the user's Jupyter folders cannot be picked up) with
``SSM_JAX_QUICK=1`` and the Agg backend; a cell that raises fails the test.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import jupytext
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
CELL_TIMEOUT_S = 300
# A cell that shows widgets replies in well under a second, but nbclient sometimes receives
# that reply only when its wait times out (jupyter/nbclient#312): the next cell then starts
# CELL_TIMEOUT_S late. Such cells get a short wait, which bounds the stall.
WIDGET_CELL_TIMEOUT_S = 60


def cell_timeout(cell) -> int:
    return WIDGET_CELL_TIMEOUT_S if "widgets.interact" in cell.source else CELL_TIMEOUT_S
KERNEL_NAME = "ssm-jax-test-python3"


def kernel_env() -> dict:
    """The kernel's environment: quick mode, headless matplotlib, this interpreter first on
    PATH, and the repository importable even without an editable install."""
    env = dict(os.environ, SSM_JAX_QUICK="1", MPLBACKEND="Agg")
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("XLA_FLAGS", None)
    return env


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory):
    """A folder with one kernel spec: ipykernel on this interpreter."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL_NAME
    spec.mkdir()
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ssm-jax tests)", "language": "python"}))
    return str(root)


def test_the_six_notebooks_are_there():
    assert [path.stem for path in NOTEBOOKS] == [
        "01_quickstart", "02_paper_story", "03_sweeps", "04_meta_gradients", "05_digits",
        "06_schedules_sampling"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_a_clean_percent_script(path):
    text = path.read_text()
    nb = jupytext.reads(text, fmt="py:percent")
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.metadata.jupytext.text_representation.format_name == "percent"
    # Saved exactly as jupytext writes it, so opening and saving in JupyterLab leaves no
    # diff (the header filters out the jupytext version stamp).
    assert jupytext.writes(nb, fmt="py:percent") == text, (
        f"{path.name} is not in jupytext's percent form: run "
        f"`jupytext --to py:percent {path.relative_to(ROOT)}`")
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with its story"
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            # LaTeX is written as is; a doubled backslash is an escaping leftover.
            assert "\\\\" not in cell.source, (path.name, cell.source)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'os.environ.get("SSM_JAX_QUICK") == "1"' in source, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, kernel_dir):
    nb = jupytext.read(path)
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME,
                                 kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernel_dir]))
    client = NotebookClient(
        nb,
        km=manager,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        timeout_func=cell_timeout,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=kernel_env())  # a cell that raises: CellExecutionError naming it
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # Every notebook draws static figures (what a reader without a live kernel sees).
    assert any("image/png" in o.get("data", {}) for o in outputs), path.name
