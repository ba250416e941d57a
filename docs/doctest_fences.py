"""A griffe extension: our reStructuredText-flavoured docstrings shown as Markdown.

Docstrings are prose with doctests run by pytest; without fences Markdown would read an output
like ``[0.0, 0.05]`` as a link. ``:math:`` roles and ``.. math::`` blocks become MathJax, and
``:func:`~a.b``` style cross-references become code.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|obj):`~?([^`]+)`")
MATH = re.compile(r":math:`([^`]+)`")


def rst_to_markdown(text: str) -> str:
    """Inline math and cross-references, then ``.. math::`` blocks (with continuation lines)."""
    text = MATH.sub(lambda m: "\\(" + m.group(1) + "\\)", text)
    text = ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1]}`", text)
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith(".. math::"):
            indent = line[: len(line) - len(line.lstrip())]
            body = [line.lstrip()[len(".. math::") :].strip()]
            i += 1
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent + " "):
                body.append(lines[i].strip())
                i += 1
            out += [f"{indent}\\[", *(f"{indent}{b}" for b in body if b), f"{indent}\\]"]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def fence_doctests(text: str) -> str:
    """Wraps each run of ``>>>`` lines and their output (up to a blank line) in a pycon fence."""
    out, inside = [], False
    for line in text.splitlines():
        starts = line.lstrip().startswith(">>>")
        if starts and not inside:
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```pycon")
            inside = True
        elif inside and not line.strip():
            out.append(f"{indent}```")
            inside = False
        out.append(line)
    if inside:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(rst_to_markdown(obj.docstring.value))
