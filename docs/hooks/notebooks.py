"""MkDocs hook: the notebooks of ``notebooks/`` become pages of the site.

The notebooks are jupytext percent-format ``.py`` files at the repository root, outside
``docs/``. This hook adds each ``notebooks/NN_*.py`` to the site's files under the same
path, before mkdocs-jupyter claims them (hence the priority), so mkdocs-jupyter renders
them (without executing them) at ``notebooks/NN_*/``, and ``mkdocs serve`` watches them.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

_ROOT = Path(__file__).resolve().parents[2]
_PATTERN = "notebooks/[0-9][0-9]_*.py"


def _notebooks() -> list[Path]:
    return sorted(_ROOT.glob(_PATTERN))


@event_priority(100)  # before mkdocs-jupyter's on_files, which wraps notebook files
def on_files(files, config):
    for path in _notebooks():
        uri = path.relative_to(_ROOT).as_posix()
        files.append(File(uri, src_dir=str(_ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files


def on_serve(server, config, builder):
    server.watch(str(_ROOT / "notebooks"))
    return server
