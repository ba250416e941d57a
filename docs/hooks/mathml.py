"""MkDocs hook: the site's math as MathML, converted at build time, so pages need no network.

``pymdownx.arithmatex`` (generic mode) marks each formula as ``<span class="arithmatex">\\(...\\)
</span>`` or ``<div class="arithmatex">\\[...\\]</div>``; this hook replaces the marked TeX with
the MathML that ``latex2mathml`` (a pure-Python package, in the ``docs`` extra) writes for it.
Browsers draw MathML themselves (MathML Core), so no script and no CDN is involved. A formula
that ``latex2mathml`` cannot convert fails the build, naming the page and the formula.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*\\(?P<open>[(\[])(?P<tex>.*?)\\[)\]]\s*</(?P=tag)>',
    re.S,
)


def _mathml(match: re.Match, page) -> str:
    tex = html.unescape(match["tex"]).strip()
    display = "block" if match["open"] == "[" else "inline"
    try:
        return convert(tex, display=display)
    except Exception as error:  # latex2mathml raises its own exception types
        where = f"{page.file.src_uri}: cannot convert the formula {tex!r}"
        raise ValueError(f"{where}: {error}") from error


def on_page_content(content: str, page, config, files) -> str:
    return _MATH.sub(lambda m: _mathml(m, page), content)
