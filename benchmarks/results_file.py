"""The committed results file of the benchmarks: ``docs/data/benchmarks.json``.

The documentation's performance page is built from it (``docs/hooks/benchmarks.py``), and
the README's headline is copied from it, so every published number has one source. It is a
small JSON file of measured numbers, committed (the docs are built from a clean clone),
holding one **section** per measurement, so that several scripts (``benchmarks/run.py``,
``benchmarks/throughput.py``, ``benchmarks/cache.py``, ``benchmarks/startup.py``; a GPU run
with ``--label gpu`` writes ``run-gpu``) coexist, each with its own provenance::

    {
      "schema": 1,
      "sections": {
        "<name>": {
          "title": "W1-W4 against eager PyTorch",          # a short heading
          "command": "python benchmarks/run.py",            # what to run to remeasure it
          "commit": "1a2b3c4",                              # "-dirty" if the tree was
          "date": "2026-12-01",                             # YYYY-MM-DD
          "machine": "AMD EPYC ..., 2 cores; jax 0.10.2",   # where it ran
          "notes": ["..."],                                 # optional sentences
          "tables": {                                       # optional
            "<id>": {"caption": "...",                      # optional
                     "columns": ["workload", "..."],
                     "rows": [["W1", "6.2", ...], ...]}     # cells: text or numbers
          },
          "headline": [                                     # optional: the README's
            {"label": "W1", "text": "7.8x eager PyTorch"}   # headline ratios, and what
          ],                                                # they all share (optional):
          "headline_context": "compilation included"
        }
      }
    }

A script replaces only its own section (:func:`write_section`), after checking the whole
file (:func:`validate`); the docs hook runs the same check and fails the build on any
error. Raw measurements (every repetition) go to ``benchmarks/results/`` (not committed).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, "docs", "data", "benchmarks.json")
#: Raw measurements (every repetition), one ``<name>.json`` per script; not committed.
RAW = os.path.join(ROOT, "benchmarks", "results")
README = os.path.join(ROOT, "README.md")
SCHEMA = 1
REQUIRED = {"title": str, "command": str, "commit": str, "date": str, "machine": str}
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
HEADLINE_BEGIN = "<!-- benchmarks:headline -->"
HEADLINE_END = "<!-- /benchmarks:headline -->"


class ResultsError(ValueError):
    """The results file does not follow the schema; the message says where."""


def _check_cell(cell, where: str) -> None:
    if cell is not None and not isinstance(cell, (str, int, float)) or isinstance(cell, bool):
        raise ResultsError(f"{where}: a cell must be text, a number or null, got {cell!r}")


def validate(data) -> dict:
    """Check ``data`` (the parsed file) against the schema above; returns it, or raises
    :class:`ResultsError` naming the first problem."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f"top level must be an object with \"schema\": {SCHEMA}")
    sections = data.get("sections")
    if not isinstance(sections, dict):
        raise ResultsError("\"sections\" must be an object of named sections")
    unknown = set(data) - {"schema", "sections"}
    if unknown:
        raise ResultsError(f"unknown top-level keys {sorted(unknown)}")
    for name, section in sections.items():
        where = f"section {name!r}"
        if not NAME.match(name):
            raise ResultsError(f"{where}: names are lower-case letters, digits, - and _")
        if not isinstance(section, dict):
            raise ResultsError(f"{where} must be an object")
        for key, kind in REQUIRED.items():
            if not isinstance(section.get(key), kind) or not section[key].strip():
                raise ResultsError(f"{where}: {key!r} must be non-empty text")
        if not DATE.match(section["date"]):
            raise ResultsError(f"{where}: date {section['date']!r} is not YYYY-MM-DD")
        extra = set(section) - set(REQUIRED) - {"notes", "tables", "headline",
                                                 "headline_context"}
        if extra:
            raise ResultsError(f"{where}: unknown keys {sorted(extra)}")
        notes = section.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ResultsError(f"{where}: notes must be a list of text")
        tables = section.get("tables", {})
        if not isinstance(tables, dict):
            raise ResultsError(f"{where}: tables must be an object of named tables")
        for table_id, table in tables.items():
            at = f"{where}, table {table_id!r}"
            if not NAME.match(table_id) or not isinstance(table, dict):
                raise ResultsError(f"{at}: a table is a named object")
            extra = set(table) - {"caption", "columns", "rows"}
            if extra:
                raise ResultsError(f"{at}: unknown keys {sorted(extra)}")
            columns, rows = table.get("columns"), table.get("rows")
            if (not isinstance(columns, list) or not columns
                    or not all(isinstance(c, str) for c in columns)):
                raise ResultsError(f"{at}: columns must be a non-empty list of text")
            if not isinstance(table.get("caption", ""), str):
                raise ResultsError(f"{at}: caption must be text")
            if not isinstance(rows, list) or not rows:
                raise ResultsError(f"{at}: rows must be a non-empty list")
            for i, row in enumerate(rows):
                if not isinstance(row, list) or len(row) != len(columns):
                    raise ResultsError(f"{at}, row {i}: {len(columns)} cells expected")
                for cell in row:
                    _check_cell(cell, f"{at}, row {i}")
        headline = section.get("headline", [])
        if not isinstance(headline, list) or not all(
                isinstance(h, dict) and set(h) == {"label", "text"}
                and all(isinstance(v, str) and v for v in h.values()) for h in headline):
            raise ResultsError(f"{where}: headline must be a list of {{label, text}} objects")
        if not isinstance(section.get("headline_context", ""), str):
            raise ResultsError(f"{where}: headline_context must be text")
    return data


def load(path: str | None = None) -> dict:
    """The results file (default :data:`PATH`), checked (:func:`validate`); raises
    :class:`ResultsError`."""
    path = path or PATH
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ResultsError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is not JSON ({err})") from None
    try:
        return validate(data)
    except ResultsError as err:
        raise ResultsError(f"{path}: {err}") from None


def write_section(name: str, section: dict, path: str | None = None) -> None:
    """Replace (or add) section ``name`` of the results file (default :data:`PATH`),
    keeping the others; the file is checked before and after, and written atomically."""
    path = path or PATH
    data = load(path) if os.path.exists(path) else {"schema": SCHEMA, "sections": {}}
    data["sections"][name] = section
    validate(data)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".benchmarks-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(dumps(data) + "\n")
    os.replace(tmp, path)


def raw_path(name: str) -> str:
    """``benchmarks/results/<name>.json``, the raw measurements of a script."""
    return os.path.join(RAW, name + ".json")


def save_raw(name: str, results: dict) -> str:
    """Write a script's raw measurements to :func:`raw_path` (numpy numbers as floats);
    returns the path."""
    os.makedirs(RAW, exist_ok=True)
    path = raw_path(name)
    with open(path, "w") as f:
        json.dump(json.loads(json.dumps(results, default=float)), f, indent=1)
    return path


def dumps(value, indent: int = 0) -> str:
    """JSON with one line per list of plain values (a table row, the columns), so that
    the file reads, and diffs, row by row."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + dumps(v, indent + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False)


def commit() -> str:
    """The short hash of HEAD, with ``-dirty`` when tracked files differ from it (other
    than the results file and the README, which the benchmark scripts themselves write)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                    ":(exclude)docs/data/benchmarks.json", ":(exclude)README.md")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(command: str, machine: str, title: str) -> dict:
    """The required keys of a section: command, commit, today's date, machine, title."""
    return {"title": title, "command": command, "commit": commit(),
            "date": time.strftime("%Y-%m-%d"), "machine": machine}


def headline_markdown(data: dict) -> str:
    """The README's headline: every section's headline entries, with their commit."""
    parts = []
    for section in data["sections"].values():
        for item in section.get("headline", []):
            parts.append(f"**{item['label']}** {item['text']}")
        if section.get("headline"):
            context = section.get("headline_context")
            parts[-1] += (f"{', ' + context if context else ''} (`{section['command']}`, "
                          f"commit `{section['commit']}`)")
    if not parts:
        return "Headline ratios: not yet measured with the current `benchmarks/run.py`."
    return "Headline: " + "; ".join(parts) + "."


def readme_block(data: dict, indent: str = "") -> str:
    """The README's headline block, markers included, each line indented by ``indent``."""
    return "\n".join(indent + line for line in (HEADLINE_BEGIN, headline_markdown(data),
                                                 HEADLINE_END))


def update_readme(data: dict, path: str | None = None) -> bool:
    """Rewrite the README's headline block (from the line of its first marker to its second
    marker, indented as the first) from ``data``; returns whether the file changed. A
    README without the markers is left alone."""
    path = path or README
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.find(HEADLINE_BEGIN), text.find(HEADLINE_END)
    if start < 0 or end < start:
        return False
    line_start = text.rfind("\n", 0, start) + 1
    indent = text[line_start:start]
    new = text[:line_start] + readme_block(data, indent) + text[end + len(HEADLINE_END):]
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text
