"""MkDocs hook: the benchmark tables of the docs, rendered from the committed results file.

``docs/data/benchmarks.json`` (written by ``benchmarks/run.py``, ``throughput.py``,
``cache.py``, ...; its schema is in ``benchmarks/results_file.py``) holds every published
measurement with the command, commit, machine and date it came from. A page asks for a
table with a marker on a line of its own:

* ``<!-- benchmarks:SECTION/TABLE -->``: the table, then a line naming the command,
  commit, machine and date of its section; the build fails if it does not exist;
* ``<!-- benchmarks?:SECTION/TABLE | COMMAND -->``: the same, or, while the file has no
  such table (e.g. a GPU section nobody has run yet), a note saying so and that
  ``COMMAND`` measures it;
* ``<!-- benchmarks:SECTION/notes -->``: the section's notes as a list.

The file is checked when the build starts, and a malformed file, an unknown section or
table, or a marker that is not one of the above stops the build with an error naming it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from mkdocs.exceptions import PluginError

_ROOT = Path(__file__).resolve().parents[2]
_MARKER = re.compile(r"<!--\s*benchmarks(?P<optional>\?)?:(?P<section>[^/\s]+)/(?P<table>[^\s|]+)"
                     r"(?:\s*\|\s*(?P<command>.*?))?\s*-->")
_ANY = re.compile(r"<!--\s*benchmarks\S*.*?-->")


def _results_module():
    spec = importlib.util.spec_from_file_location("_ssm_jax_results_file",
                                                  _ROOT / "benchmarks" / "results_file.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load() -> dict:
    module = _results_module()
    try:
        return module.load()
    except module.ResultsError as err:
        raise PluginError(f"benchmarks hook: {err}") from None


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return " ".join(text.replace("|", "\\|").split())


def provenance(section: dict) -> str:
    return (f"*Measured by `{section['command']}` at commit `{section['commit']}` on "
            f"{section['machine']}, {section['date']}.*")


def table_markdown(section: dict, table: dict) -> str:
    lines = []
    if table.get("caption"):
        lines += [table["caption"], ""]
    lines.append("| " + " | ".join(_cell(c) for c in table["columns"]) + " |")
    lines.append("|" + " --- |" * len(table["columns"]))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table["rows"]]
    return "\n".join([*lines, "", provenance(section)])


def render(markdown: str, data: dict, page: str = "page") -> str:
    """``markdown`` with its benchmark markers replaced (see the module doc)."""
    sections = data["sections"]

    def replace(match: re.Match) -> str:
        name, table_id = match.group("section"), match.group("table")
        section = sections.get(name)
        missing = section is None or (table_id != "notes"
                                      and table_id not in section.get("tables", {}))
        if missing and match.group("optional"):
            command = match.group("command") or "its benchmark"
            return (f"!!! note \"Not measured yet\"\n    No results for `{name}/{table_id}` "
                    f"are committed yet: `{command}` measures them (on the hardware it "
                    f"needs).")
        if section is None:
            raise PluginError(f"benchmarks hook: {page} asks for section {name!r}, which "
                              f"docs/data/benchmarks.json does not have "
                              f"(it has {sorted(sections)})")
        if table_id == "notes":
            return "\n".join(f"* {note}" for note in section.get("notes", []))
        tables = section.get("tables", {})
        if table_id not in tables:
            raise PluginError(f"benchmarks hook: {page} asks for table {table_id!r} of "
                              f"section {name!r}, which has {sorted(tables)}")
        return table_markdown(section, tables[table_id])

    rendered = _MARKER.sub(replace, markdown)
    stray = _ANY.search(rendered)
    if stray:
        raise PluginError(f"benchmarks hook: {page}: {stray.group(0)!r} is not a marker "
                          f"this hook knows (see docs/hooks/benchmarks.py)")
    return rendered


_DATA: dict = {}


def on_config(config):
    _DATA["results"] = _load()  # a malformed file fails the build here, on every build
    return config


def on_page_markdown(markdown, page, config, files):
    if "benchmarks" not in markdown:
        return markdown
    return render(markdown, _DATA.get("results") or _load(), page.file.src_uri)


def on_serve(server, config, builder):
    server.watch(str(_ROOT / "docs" / "data"))
    return server
