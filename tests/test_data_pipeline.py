"""The whole data pipeline on small crafted inputs: formats, bad input, sharding, resume."""

from __future__ import annotations

import gzip
import importlib.util
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lmforge.data.config import DataConfig, SourceConfig
from lmforge.data.datacard import length_histogram
from lmforge.data.merge import merge_shards
from lmforge.data.pipeline import run_pipeline
from lmforge.errors import UserError

PARA = ("Rivers carry water from the hills to the sea, and along the way they shape valleys, feed "
        "farms and give towns a reason to exist. Number {n} of a small test corpus.")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "a.txt").write_text(PARA.format(n=1) + "\nMail me at someone@example.com.")
    (d / "b.md").write_text("# Title\n\n" + PARA.format(n=2))
    (d / "c.html").write_text(f"<html><head><script>var x=1;</script></head><body><nav>Menu</nav>"
                              f"<p>{PARA.format(n=3)}</p></body></html>")
    (d / "d.jsonl").write_text("\n".join(json.dumps({"text": PARA.format(n=i)}) for i in (4, 5, 4)))
    (d / "e.csv").write_text('id,text\n1,"' + PARA.format(n=6) + '"\n')
    with gzip.open(d / "f.txt.gz", "wt") as f:
        f.write(PARA.format(n=7))
    (d / "g.txt").write_bytes(PARA.format(n=8).encode() + b" broken \xff\xfe bytes")
    (d / "h.bin").write_bytes(bytes(range(256)) * 4)
    (d / "i.json").write_text(json.dumps([{"text": PARA.format(n=9)}]))
    return d


def files(path, **kw) -> DataConfig:
    return DataConfig(sources=[SourceConfig(kind="files", path=str(path), licence="CC0-1.0", name="mine")], **kw)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_files_all_formats_stats_and_card(corpus, tmp_path):
    out = tmp_path / "out"
    stats = run_pipeline(files(corpus), out, workers=1)
    docs = read_jsonl(out / "documents.jsonl")
    assert len(docs) == 10 - 1          # 10 texts, one exact duplicate (line 3 of d.jsonl)
    assert not list(out.glob(".*.tmp"))       # atomic writes left no temporary files
    assert {"id", "text", "source", "path", "licence", "sha256", "retrieved_at"} <= docs[0].keys()
    assert all(d["licence"] == "CC0-1.0" and d["source"] == "mine" for d in docs)
    html = next(d for d in docs if d["path"].endswith("c.html"))
    assert "var x" not in html["text"] and "Menu" not in html["text"] and "Number 3" in html["text"]
    assert any("<EMAIL>" in d["text"] for d in docs) and stats["pii"] == {"email": 1}
    assert stats["steps"][0]["counts"]["invalid_utf8_bytes"] == 2
    removed = read_jsonl(out / "removed.jsonl")
    assert {r["step"] for r in removed} == {"extract", "exact_dedup"}
    assert any(r["path"].endswith("h.bin") and "binary" in r["reason"] for r in removed)
    card = (out / "data_card.md").read_text()
    for section in ("Motivation", "Composition", "Collection process", "Preprocessing", "Uses",
                    "Distribution", "Maintenance"):
        assert f"## {section}" in card
    edges, counts = length_histogram(stats)
    assert sum(counts) == 9 and len(edges) == len(counts) + 1


def test_parallel_run_matches_single_process(corpus, tmp_path):
    cfg = files(corpus, steps=["normalize", "exact_dedup", "minhash", "pii"])
    one = run_pipeline(cfg, tmp_path / "one", workers=1)
    two = run_pipeline(cfg, tmp_path / "two", workers=2)
    assert (tmp_path / "one" / "documents.jsonl").read_text().count("\n") == \
        (tmp_path / "two" / "documents.jsonl").read_text().count("\n")
    assert one["steps"] == two["steps"]


def test_shards_merge_and_resume(corpus, tmp_path):
    cfg = files(corpus)
    dirs = [tmp_path / f"shard{i}" for i in range(3)]
    for i, d in enumerate(dirs):
        run_pipeline(cfg, d, workers=1, shard=(i, 3))
    before = (dirs[0] / "stats.json").stat().st_mtime_ns
    run_pipeline(cfg, dirs[0], workers=1, shard=(0, 3))      # complete: not redone
    assert (dirs[0] / "stats.json").stat().st_mtime_ns == before
    merged = merge_shards(dirs, tmp_path / "merged")
    whole = run_pipeline(cfg, tmp_path / "whole", workers=1)
    assert merged["output"]["documents"] == whole["output"]["documents"]
    assert sorted(d["sha256"] for d in read_jsonl(tmp_path / "merged" / "documents.jsonl")) == \
        sorted(d["sha256"] for d in read_jsonl(tmp_path / "whole" / "documents.jsonl"))


def test_bad_inputs_are_one_line_user_errors(tmp_path):
    empty = tmp_path / "binonly"
    empty.mkdir()
    (empty / "x.bin").write_bytes(b"\x00\x01" * 100)
    with pytest.raises(UserError, match=r"source 'mine' \(.*binonly\) yielded no documents"):
        run_pipeline(files(empty), tmp_path / "o1", workers=1)
    assert not (tmp_path / "o1" / "documents.jsonl").exists() and not list((tmp_path / "o1").glob(".*"))
    with pytest.raises(UserError, match="path not found"):
        run_pipeline(files(tmp_path / "missing"), tmp_path / "o2", workers=1)
    short = tmp_path / "short.txt"
    short.write_text("Too short to pass the quality rules.")
    with pytest.raises(UserError, match="removed all 1 documents; step 'quality'"):
        run_pipeline(files(short, steps=["normalize", "quality"]), tmp_path / "o3", workers=1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl line 1: no field 'text' \(found: body\)"):
        run_pipeline(files(bad), tmp_path / "o4", workers=1)


def test_python_docs_builtin_corpus(tmp_path):
    stats = run_pipeline(DataConfig(max_docs=30), tmp_path / "py", workers=1)
    docs = read_jsonl(tmp_path / "py" / "documents.jsonl")
    assert len(docs) == 30 and docs[0]["licence"] == "PSF-2.0"
    assert stats["sources"]["python_docs"]["docs_read"] == 30


def test_hf_source_reads_local_files_or_explains_what_is_missing(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps({"body": PARA.format(n=i)}) for i in range(3)))
    cfg = DataConfig(sources=[SourceConfig(kind="hf", path=str(data), text_field="body")], steps=["normalize"])
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(UserError, match="needs the 'datasets' package"):
            run_pipeline(cfg, tmp_path / "hf", workers=1)
        return
    stats = run_pipeline(cfg, tmp_path / "hf", workers=1)
    assert stats["output"]["documents"] == 3


def test_crawler_honours_robots_and_stays_on_site(tmp_path):
    site = tmp_path / "site"
    (site / "private").mkdir(parents=True)
    (site / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    (site / "index.html").write_text(f'<p>{PARA.format(n=1)}</p><a href="a.html">a</a>'
                                     '<a href="private/p.html">p</a><a href="http://example.com/">x</a>'
                                     '<a href="img.png">img</a>')
    (site / "a.html").write_text(f'<p>{PARA.format(n=2)}</p><a href="b.html">b</a>')
    (site / "b.html").write_text(f"<p>{PARA.format(n=3)}</p>")
    (site / "private" / "p.html").write_text("<p>secret page</p>")
    (site / "img.png").write_bytes(b"\x89PNG....")
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        cfg = DataConfig(sources=[SourceConfig(kind="url", path=url, delay_s=0, max_depth=1, max_pages=10)],
                         steps=["normalize"])
        run_pipeline(cfg, tmp_path / "web", workers=1)
    finally:
        server.shutdown()
    docs = read_jsonl(tmp_path / "web" / "documents.jsonl")
    assert [Path(d["path"]).name for d in docs] == ["index.html", "a.html"]    # b.html is depth 2
    reasons = {Path(r["path"]).name: r["reason"] for r in read_jsonl(tmp_path / "web" / "removed.jsonl")}
    assert reasons == {"p.html": "disallowed by robots.txt", "img.png": "content type image/png"}


def test_big_jsonl_is_split_into_byte_ranges(tmp_path, monkeypatch):
    from lmforge.data import sources
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": PARA.format(n=i)}) + "\n" for i in range(50)))
    monkeypatch.setattr(sources, "PART_BYTES", 1000)      # ~5 records per part, cut mid-line
    stats = run_pipeline(files(path, steps=["normalize"]), tmp_path / "out", workers=1)
    assert stats["sources"]["mine"]["units"] > 5
    texts = [d["text"] for d in read_jsonl(tmp_path / "out" / "documents.jsonl")]
    assert texts == [PARA.format(n=i) for i in range(50)]
