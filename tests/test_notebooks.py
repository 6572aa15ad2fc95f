"""Execute every notebook in ``notebooks/`` (quick mode) and check they are committed clean.

Each notebook runs in a fresh Python 3 kernel of *this* interpreter (ipykernel from the
``test`` extra; a kernel spec written for ``sys.executable``, so a ``python3`` spec of
another Python in the user's Jupyter folders cannot be picked up) with ``SSM_JAX_QUICK=1``
and the Agg backend; a cell that raises fails the test. The committed files must have no
outputs and hold the cells of ``notebooks/make_notebooks.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import sys

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300
KERNEL_NAME = "ssm-jax-test-python3"


def load_generator():
    spec = importlib.util.spec_from_file_location("make_notebooks",
                                                  ROOT / "notebooks" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_every_notebook_is_listed_and_stripped():
    generator = load_generator()
    assert sorted(path.name for path in NOTEBOOKS) == sorted(generator.NOTEBOOKS)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        # The committed cells are the generator's (rerun it after editing the cells).
        expected = generator.build(generator.NOTEBOOKS[path.name]).cells
        assert [(c.cell_type, c.source) for c in nb.cells] == [
            (c.cell_type, c.source) for c in expected], (
            f"{path.name} differs from notebooks/make_notebooks.py: rerun it")
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert 'os.environ.get("SSM_JAX_QUICK") == "1"' in source, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, kernel_dir):
    nb = nbformat.read(path, as_version=4)
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME,
                                 kernel_spec_manager=KernelSpecManager(kernel_dirs=[kernel_dir]))
    client = NotebookClient(
        nb,
        km=manager,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=kernel_env())  # a cell that raises: CellExecutionError naming it
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # Every notebook draws static figures (what a reader without a live kernel sees).
    assert any("image/png" in o.get("data", {}) for o in outputs), path.name
