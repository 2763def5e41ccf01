"""A griffe extension for the API reference (`mkdocs.yml`, mkdocstrings' python handler).

The package's docstrings are written in reST habits: roles such as :class:`LocalEngine` or
:meth:`resolve`, and ``.. code-block:: python`` directives. mkdocstrings renders Markdown, where
those would show up verbatim. This extension rewrites them before rendering:

- a role becomes a cross-reference to the object it names, resolved the way Python would
  from where the docstring sits (``~`` keeps only the last name, as in Sphinx). The reference
  is optional: a target that has no page in the reference renders as plain code;
- a ``code-block`` directive with its indented body becomes a fenced block.

The docstrings themselves stay as they are: they are read in editors and with ``help()`` too.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Iterator
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|data|attr|mod|exc|obj):`(?P<tilde>~?)(?P<name>[^`]+)`"
)
_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. code-block:: (?P<lang>\w+)\s*$")


class ReSTRoles(griffe.Extension):
    """Rewrites reST roles and code-block directives in every docstring of the package."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "durable_futures":
            return  # the standard library, loaded to resolve base classes
        for obj in _objects(pkg):
            if obj.docstring is not None:
                text = _code_blocks(obj.docstring.value)
                obj.docstring.value = _ROLE.sub(lambda m, o=obj: _reference(o, m), text)


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _objects(member)  # type: ignore[arg-type]


def _reference(obj: griffe.Object, match: re.Match[str]) -> str:
    name = match["name"].strip().removesuffix("()").lstrip(".")
    title = name.rsplit(".", 1)[-1] if match["tilde"] else name
    target = _resolve(obj, name)
    code = f"<code>{html.escape(title)}</code>"
    if target is None:
        return code
    return f'<autoref identifier="{html.escape(target)}" optional>{code}</autoref>'


def _resolve(obj: griffe.Object, name: str) -> str | None:
    if name.startswith("durable_futures"):
        return name
    scope = obj if (obj.is_class or obj.is_module) else obj.parent
    if scope is None:
        return None
    first, _, rest = name.partition(".")
    try:
        base = scope.resolve(first)
    except griffe.NameResolutionError:
        return None
    return f"{base}.{rest}" if rest else base


def _code_blocks(text: str) -> str:
    """``.. code-block:: lang`` and the indented lines under it, as a fenced block."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        found = _DIRECTIVE.match(lines[i])
        if found is None:
            out.append(lines[i])
            i += 1
            continue
        indent = found["indent"]
        body: list[str] = []
        i += 1
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)
        ):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        code = textwrap.dedent("\n".join(body)).strip("\n")
        out.append(f"{indent}```{found['lang']}")
        out.extend(f"{indent}{line}" if line else "" for line in code.splitlines())
        out.append(f"{indent}```")
        out.append("")
    return "\n".join(out)
