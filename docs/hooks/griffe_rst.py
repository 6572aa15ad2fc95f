"""Griffe extension: read the package's reStructuredText markup as Markdown.

The docstrings of ``ssm_jax`` are Google style but keep a few reST constructs (``.. math::``
blocks, ``:math:`` and ``:func:``-style roles), as optax's do. mkdocstrings renders
docstrings as Markdown, so those would show as literal text. This extension rewrites them
when griffe loads the package, for the documentation build only (the sources are not
touched): maths becomes arithmatex's ``$...$`` / ``$$...$$``, which MathJax typesets, and a
cross-reference role becomes inline code.
"""

from __future__ import annotations

import re
import textwrap

import griffe

# `.. math:: first line` followed by lines indented deeper than the directive.
_MATH_BLOCK = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<first>.*)\n"
                         r"(?P<rest>(?:(?P=indent)[ \t]+.*\n|[ \t]*\n)*)", re.MULTILINE)
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`")


def _math_block(match: re.Match) -> str:
    indent = match.group("indent")
    body = textwrap.dedent(match.group("rest")).strip("\n")
    lines = [match.group("first").strip(), *body.splitlines()]
    tex = "\n".join(f"{indent}{line.strip()}" for line in lines if line.strip())
    return f"{indent}$$\n{tex}\n{indent}$$\n\n"


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with its reST maths and roles written as Markdown."""
    text = _MATH_BLOCK.sub(_math_block, text if text.endswith("\n") else text + "\n")
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    return _XREF_ROLE.sub(lambda m: f"`{m.group(1)}`", text).rstrip("\n")


class RestructuredMarkup(griffe.Extension):
    """Rewrite every loaded docstring with :func:`rst_to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
