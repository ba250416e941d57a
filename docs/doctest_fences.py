"""A griffe extension: docstring examples (``>>>`` blocks) are shown as Python console code.

Our docstrings are plain prose with doctests run by pytest; without fences Markdown would read
an output like ``[0.0, 0.05]`` as a link.
"""

from __future__ import annotations

import griffe


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
            obj.docstring.value = fence_doctests(obj.docstring.value)
