"""HTML to plain text (and the page's links), with the standard library only.

Used for .html files and crawled pages when trafilatura is not installed: keeps the
visible text, drops scripts, styles and page furniture (nav, header, footer, forms),
and turns block elements into line breaks so paragraphs survive.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP = {"script", "style", "noscript", "nav", "header", "footer", "aside", "form", "svg",
         "template", "iframe", "button", "select"}
_BLOCK = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table",
          "tr", "section", "article", "blockquote", "dd", "dt", "hr", "main", "figcaption"}
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source", "wbr"}


class _Extractor(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)
        if tag in _SKIP and tag not in _VOID:
            self.skip_depth += 1
        if tag == "pre":
            self.pre_depth += 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in _SKIP and self.skip_depth:
            self.skip_depth -= 1
        if tag == "pre" and self.pre_depth:
            self.pre_depth -= 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip_depth:
            return
        # Outside <pre>, source line breaks are layout, not content.
        self.parts.append(data if self.pre_depth else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> tuple[str, list[str]]:
    """Return (visible text, hrefs of the page's links)."""
    parser = _Extractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]*\n[ \t]*", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip(), parser.links


def main_text(html: str) -> str:
    """The page's main text: trafilatura when installed (better boilerplate removal), else ours."""
    try:
        import trafilatura
    except ImportError:
        return html_to_text(html)[0]
    return trafilatura.extract(html) or html_to_text(html)[0]
