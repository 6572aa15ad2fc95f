"""MkDocs hook: the command-line reference, generated from the real argument parser.

At build time this walks ``ssm_jax.cli.build_parser()``: every subcommand, its argument
groups and every action in them (flags, metavar or choices, default, help), and adds the
page ``cli-reference.md`` to the site. The page is never written to the source tree, so it
cannot fall out of step with the options the CLI accepts.
"""

from __future__ import annotations

import argparse
import html

from mkdocs.structure.files import File

PAGE = "cli-reference.md"
_WIDTH = 88  # usage lines are wrapped as in an 88-column terminal, whatever the build's


def _escape(text: str) -> str:
    """Text safe inside a Markdown table cell (no emphasis, links, maths or cell breaks)."""
    text = html.escape(" ".join(text.split()), quote=False)
    for char in "\\`*_[]|$":
        text = text.replace(char, "\\" + char)
    return text


def _subcommands(parser: argparse.ArgumentParser):
    """(name, one-line help, parser) of each subcommand, in the CLI's help order."""
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _value(action: argparse.Action) -> str:
    """What follows the flag: its choices, its metavar, or nothing for a switch."""
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return "{" + ", ".join(map(str, action.choices)) + "}"
    if action.metavar is not None:
        return str(action.metavar)
    return action.dest.upper()


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    default = action.default
    shown = default not in (None, False, argparse.SUPPRESS) and action.nargs != 0
    if shown and "default" not in text:
        text = f"{text} (default: {default})".strip()
    return text


def _action_row(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    names = ", ".join(action.option_strings) or (action.metavar or action.dest)
    value = _value(action)
    cell = f"`{names}`" + (f" `{value}`" if value else "")
    return f"| {cell} | {_escape(_help(parser, action))} |"


def _section(name: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `ssm-jax {name}`", "", _escape(summary).capitalize() + "." if summary else ""]
    lines += ["", "```text", _usage(parser), "```", ""]
    if parser.description:
        lines += [_escape(parser.description), ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS
                   and not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        lines += [f"**{group.title.capitalize()}**", "", "| option | meaning |", "| --- | --- |"]
        lines += [_action_row(parser, a) for a in actions]
        lines.append("")
    return lines


def reference_markdown() -> str:
    """The whole reference page, one section per subcommand."""
    from ssm_jax.cli import build_parser

    parser = build_parser()
    lines = [
        "# Command-line reference",
        "",
        "Generated when the site is built, from the parser that `ssm-jax` itself uses "
        "(`ssm_jax.cli.build_parser`), so every option below is one the command accepts. "
        "`ssm-jax COMMAND --help` prints the same text. What the commands write, and their "
        "exit statuses, are described in [Command line](cli.md).",
        "",
    ]
    for name, summary, sub in _subcommands(parser):
        lines += _section(name, summary, sub)
    return "\n".join(lines)


def on_files(files, config):
    files.append(File.generated(config, PAGE, content=reference_markdown()))
    return files


OPTIONS_MARKER = "<!-- run-options -->"


def run_options_markdown() -> str:
    """A table of the run options by group, from their declarations
    (``ssm_jax.config.OPTIONS``): flag, choices, default, kind and where it applies."""
    from ssm_jax.config import OPTIONS

    lines = ["| option | values | default | kind | has an effect |",
             "| --- | --- | --- | --- | --- |"]
    groups: dict[str, list] = {}
    for opt in OPTIONS.values():
        groups.setdefault(opt.group, []).append(opt)
    for group, members in groups.items():
        lines.append(f"| **{group}** | | | | |")
        for opt in members:
            allowed = opt.allowed()
            values = ", ".join(allowed) if allowed else (
                "switch" if opt.switch else opt.parse.__name__.replace("parse_", ""))
            default = opt.default
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            lines.append(f"| `{opt.flag}` | {_escape(values)} | {_escape(str(shown))} | "
                         f"{opt.kind} | {_escape(opt.describe_effect())} |")
    return "\n".join(lines)


def on_page_markdown(markdown, page, config, files):
    """Fill the run-options table of the page that asks for it."""
    if OPTIONS_MARKER in markdown:
        markdown = markdown.replace(OPTIONS_MARKER, run_options_markdown())
    return markdown
