"""The package's layers (pyproject.toml, [tool.importlinter]): imports only point down, and
no two sibling modules import each other, checked by import-linter on the source tree."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    command = [str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")]
    done = subprocess.run(command, cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "2 kept, 0 broken" in report, report
