"""The committed benchmark results (``docs/data/benchmarks.json``): its schema, the docs hook
that renders it, and the README's headline copied from it. No timing happens here."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "benchmarks"))  # appended: nothing here shadows another module

import results_file  # noqa: E402

SECTION = {"title": "t", "command": "python benchmarks/x.py", "commit": "abc1234",
           "date": "2026-12-01", "machine": "a CPU",
           "tables": {"main": {"columns": ["a", "b"], "rows": [["1", 2.5], [None, "x"]]}},
           "notes": ["a note"], "headline": [{"label": "W1", "text": "9.9x eager PyTorch"}],
           "headline_context": "compilation included"}


def valid() -> dict:
    return {"schema": 1, "sections": {"x": copy.deepcopy(SECTION)}}


def by_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hook():
    pytest.importorskip("mkdocs")
    return by_path("benchmarks_hook", ROOT / "docs" / "hooks" / "benchmarks.py")


def test_the_committed_file_follows_the_schema():
    data = results_file.load()
    assert data["schema"] == results_file.SCHEMA and data["sections"]
    for section in data["sections"].values():
        assert section["commit"] and section["command"].split()[0] in ("python", "bash",
                                                                       "PYTHON=python3")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("schema"), "schema"),
    (lambda d: d["sections"]["x"].pop("commit"), "'commit' must be non-empty text"),
    (lambda d: d["sections"]["x"].update(date="1 Dec 2026"), "is not YYYY-MM-DD"),
    (lambda d: d["sections"]["x"].update(colour="red"), "unknown keys ['colour']"),
    (lambda d: d["sections"]["x"]["tables"]["main"]["rows"].append(["1"]), "2 cells expected"),
    (lambda d: d["sections"]["x"]["tables"]["main"]["rows"].append([[1], "2"]), "a cell must"),
    (lambda d: d["sections"]["x"]["tables"]["main"].update(rows=[]), "non-empty list"),
    (lambda d: d["sections"]["x"].update(headline=[{"label": "W1"}]), "headline"),
    (lambda d: d["sections"]["x"].update(headline_context=3), "headline_context"),
    (lambda d: d["sections"].update({"Bad Name": copy.deepcopy(SECTION)}), "lower-case"),
])
def test_malformed_files_are_refused(change, message):
    data = valid()
    results_file.validate(data)
    change(data)
    with pytest.raises(results_file.ResultsError, match=message.replace("[", r"\[")):
        results_file.validate(data)


def test_write_section_keeps_the_other_sections(tmp_path):
    path = tmp_path / "benchmarks.json"
    results_file.write_section("one", SECTION, str(path))
    results_file.write_section("two", {**SECTION, "commit": "def5678"}, str(path))
    results_file.write_section("one", {**SECTION, "date": "2026-12-02"}, str(path))
    data = results_file.load(str(path))
    assert list(data["sections"]) == ["one", "two"]
    assert data["sections"]["one"]["date"] == "2026-12-02"
    assert json.loads(path.read_text()) == data  # plain JSON, rows one a line
    assert '["1", 2.5]' in path.read_text()
    with pytest.raises(results_file.ResultsError):  # nothing malformed is written
        results_file.write_section("three", {"title": "t"}, str(path))
    assert list(results_file.load(str(path))["sections"]) == ["one", "two"]
    path.write_text("{not json")
    with pytest.raises(results_file.ResultsError, match="is not JSON"):
        results_file.load(str(path))


def test_readme_headline_is_the_files():
    """``benchmarks/run.py`` copies the headline into the README; they agree."""
    data = results_file.load()
    text = (ROOT / "README.md").read_text()
    start = text.index(results_file.HEADLINE_BEGIN)
    indent = text[text.rfind("\n", 0, start) + 1:start]
    assert results_file.readme_block(data, indent) in text


def test_update_readme_rewrites_only_the_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n* item\n  <!-- benchmarks:headline -->\n  old\n"
                      "  <!-- /benchmarks:headline -->\n* next\n")
    assert results_file.update_readme(valid(), str(readme))
    text = readme.read_text()
    assert text.startswith("# x\n\n* item\n  <!-- benchmarks:headline -->\n  Headline: **W1** "
                           "9.9x eager PyTorch, compilation included (`python benchmarks/x.py`, "
                           "commit `abc1234`).")
    assert text.endswith("  <!-- /benchmarks:headline -->\n* next\n")
    assert not results_file.update_readme(valid(), str(readme))  # nothing left to change


def test_the_hook_renders_tables_with_their_provenance():
    module = hook()
    page = ("<!-- benchmarks:x/main -->\n\n<!-- benchmarks:x/notes -->\n\n"
            "<!-- benchmarks?:gpu/main | bash benchmarks/gpu.sh -->\n"
            "<!-- benchmarks?:x/other | python benchmarks/x.py -->\n")
    out = module.render(page, valid())
    assert "| a | b |\n| --- | --- |\n| 1 | 2.5 |\n|  | x |" in out
    assert ("*Measured by `python benchmarks/x.py` at commit `abc1234` on a CPU, "
            "2026-12-01.*") in out
    assert "* a note" in out
    assert out.count('!!! note "Not measured yet"') == 2 and "`bash benchmarks/gpu.sh`" in out
    for bad, message in (("<!-- benchmarks:nothing/main -->", "section 'nothing'"),
                         ("<!-- benchmarks:x/nothing -->", "table 'nothing'"),
                         ("<!-- benchmarks x/main -->", "not a marker")):
        with pytest.raises(module.PluginError, match=message):
            module.render(bad, valid())


def test_every_marker_of_the_docs_resolves():
    """The pages' markers against the committed file (what the strict build does)."""
    module = hook()
    data = results_file.load()
    for page in (ROOT / "docs").glob("*.md"):
        text = page.read_text()
        rendered = module.render(text, data, page.name)
        assert "<!-- benchmarks" not in rendered


def test_cache_script_publishes_its_section(tmp_path, monkeypatch):
    cache = by_path("benchmarks_cache", ROOT / "benchmarks" / "cache.py")
    monkeypatch.setattr(results_file, "PATH", str(tmp_path / "benchmarks.json"))
    results = {"command": "python benchmarks/cache.py --reps 2", "machine": "a CPU", "reps": 2,
               "help_s": 5.8, "simulate": {"cold_s": [9.9, 13.1], "warm_s": [4.7, 9.2],
                                           "warm_over_cold": 0.48}}
    cache.publish(results, ["simulate"])
    section = results_file.load(str(tmp_path / "benchmarks.json"))["sections"]["cache"]
    assert section["tables"]["commands"]["rows"] == [
        ["`ssm-jax simulate` (defaults)", "9.90 [13.10]", "4.70 [9.20]", "0.48", "<= 0.40"]]

