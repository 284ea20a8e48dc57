"""A small, polite web crawler: robots.txt, one site, a pause between requests, bounded size.

Breadth-first from the start URL, at most `max_pages` pages and `max_depth` link hops.
Only text/html and text/plain responses are kept; the main text of each page is one document.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.robotparser
from collections import deque
from typing import Iterator

from lmforge.data.htmltext import html_to_text, main_text

USER_AGENT = "lmforge-crawler/1.0"
_TIMEOUT_S = 20
_MAX_BYTES = 5_000_000


def _fetch(url: str) -> tuple[str, bytes, str]:
    """Return (content type, body, final URL) or raise OSError/ValueError."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp:
        ctype = resp.headers.get_content_type()
        charset = resp.headers.get_content_charset() or "utf-8"
        body = resp.read(_MAX_BYTES)
        return f"{ctype};{charset}", body, resp.geturl()


def _robots(start: str) -> urllib.robotparser.RobotFileParser:
    parts = urllib.parse.urlsplit(start)
    rp = urllib.robotparser.RobotFileParser(f"{parts.scheme}://{parts.netloc}/robots.txt")
    try:
        _, body, _ = _fetch(rp.url)
        rp.parse(body.decode("utf-8", "replace").splitlines())
    except urllib.error.HTTPError as e:
        # As in the robots standard: no robots.txt (4xx) allows all; a server error denies all.
        rp.parse([] if 400 <= e.code < 500 else ["User-agent: *", "Disallow: /"])
    except (OSError, ValueError):
        rp.parse(["User-agent: *", "Disallow: /"])
    return rp


def crawl(start: str, *, max_pages: int, max_depth: int, delay_s: float,
          same_site: bool) -> Iterator[tuple[str, str] | tuple[str, None, str]]:
    """Yield (url, text) for each page kept, or (url, None, reason) for each page skipped."""
    robots = _robots(start)
    host = urllib.parse.urlsplit(start).netloc
    queue: deque[tuple[str, int]] = deque([(start, 0)])
    seen = {start}
    fetched = 0
    last_request = 0.0
    while queue and fetched < max_pages:
        url, depth = queue.popleft()
        if not robots.can_fetch(USER_AGENT, url):
            yield url, None, "disallowed by robots.txt"
            continue
        pause = robots.crawl_delay(USER_AGENT) or delay_s
        time.sleep(max(0.0, last_request + float(pause) - time.monotonic()))
        last_request = time.monotonic()
        fetched += 1
        try:
            ctype, body, final = _fetch(url)
        except (OSError, ValueError) as e:
            yield url, None, f"fetch failed: {e}"
            continue
        kind, _, charset = ctype.partition(";")
        if kind not in ("text/html", "text/plain"):
            yield url, None, f"content type {kind}"
            continue
        page = body.decode(charset, "replace") if _known(charset) else body.decode("utf-8", "replace")
        if kind == "text/plain":
            yield final, page
            continue
        yield final, main_text(page)
        if depth >= max_depth:
            continue
        for href in html_to_text(page)[1]:
            link = urllib.parse.urldefrag(urllib.parse.urljoin(final, href))[0]
            parts = urllib.parse.urlsplit(link)
            if parts.scheme not in ("http", "https") or link in seen:
                continue
            if same_site and parts.netloc != host:
                continue
            seen.add(link)
            queue.append((link, depth + 1))


def _known(charset: str) -> bool:
    try:
        "".encode(charset)
        return True
    except LookupError:
        return False
