"""The human-evaluation arena: answers cached once, votes and ratings stored, leaderboard, κ,
CSV export, and the page itself driven in headless Chromium."""

from __future__ import annotations

import csv
import io
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from lmforge.eval.arena import create_app, prepare_answers, read_prompts
from lmforge.eval.arena_store import ArenaStore
from test_eval_fixtures import hf_dir, tiny_pair, tiny_run  # noqa: F401  (fixtures)

CHROMIUM = Path("/usr/bin/chromium")
PROMPTS = ["The cat sat on", "A man rides", "Return a new"]


@pytest.fixture(scope="module")
def arena(tiny_run, hf_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("arena")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    store = ArenaStore(root / "arena.db")
    models = prepare_answers(store, [tiny_run, hf_dir], read_prompts(root / "prompts.txt"),
                             max_tokens=6, temperature=0.0)
    return store, models, root


def test_answers_are_generated_once(arena, tiny_run, hf_dir):
    store, models, root = arena
    assert models == ["tiny-run", "tiny-hf"]
    pid = store.prompts()[0][0]
    store.set_answer(pid, "tiny-run", "kept")   # a rerun must reuse, not regenerate
    prepare_answers(store, [tiny_run, hf_dir], PROMPTS, max_tokens=6, temperature=0.0)
    assert store.answer(pid, "tiny-run") == "kept"
    assert all(store.answer(p, m) is not None for p, _ in store.prompts() for m in models)


def test_api_votes_leaderboard_kappa_export(arena, tmp_path):
    from fastapi.testclient import TestClient
    src_store, models, root = arena
    store = ArenaStore(tmp_path / "copy.db")    # a fresh database with the same answers
    store.add_prompts(PROMPTS)
    for pid, _ in store.prompts():
        for m in models:
            store.set_answer(pid, m, f"{m}: {src_store.answer(pid, m)}")   # tell them apart
    client = TestClient(create_app(store, models))
    assert "Which answer is better?" in client.get("/").text
    for rater in ("ann", "bob"):
        for _ in range(3):
            item = client.get("/api/next", params={"rater": rater}).json()
            assert item["prompt"] in PROMPTS and set(item) >= {"token", "answer_a", "answer_b"}
            # both raters always prefer tiny-run, whichever side it is shown on
            side = "a" if item["answer_a"].startswith("tiny-run:") else "b"
            assert client.post("/api/vote", json={"token": item["token"], "rater": rater,
                                                  "outcome": side}).json() == {"ok": True}
        assert client.get("/api/next", params={"rater": rater}).json()["done"] is True
    board = client.get("/api/leaderboard").json()
    assert [r["model"] for r in board["leaderboard"]] == ["tiny-run", "tiny-hf"]
    assert board["leaderboard"][0]["wins"] == 6
    assert board["agreement"] == [{"raters": ["ann", "bob"], "items": 3, "kappa": 1.0}]
    item = client.get("/api/next", params={"rater": "cy"}).json()
    assert client.post("/api/rate", json={"token": item["token"], "rater": "cy", "side": "b",
                                          "score": 4, "comment": "fine"}).status_code == 200
    assert client.post("/api/rate", json={"token": item["token"], "rater": "cy", "side": "b",
                                          "score": 9}).status_code == 422
    assert client.post("/api/vote", json={"token": "forged", "rater": "cy", "outcome": "a"}).status_code == 404
    votes = list(csv.DictReader(io.StringIO(client.get("/api/export/votes.csv").text)))
    assert len(votes) == 6 and {v["rater"] for v in votes} == {"ann", "bob"}
    ratings = list(csv.DictReader(io.StringIO(client.get("/api/export/ratings.csv").text)))
    assert ratings[0]["score"] == "4" and ratings[0]["comment"] == "fine"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_page_in_headless_chromium(arena):
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    import uvicorn
    store, models, root = arena
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(store, models), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#rater", "browser-rater")
            page.dispatch_event("#rater", "change")
            page.wait_for_selector("#item:not([hidden])")
            assert page.text_content("#prompt") in PROMPTS
            assert page.text_content("#leaderboard tbody").count("tiny") == 2
            page.click("#vote-a")
            page.wait_for_function("document.querySelector('#agreement').textContent.includes('1 votes')")
            cells = page.eval_on_selector_all("#leaderboard tbody td", "tds => tds.map(t => t.textContent)")
            assert sum(int(cells[i + 4]) for i in range(0, len(cells), 8)) == 2   # one vote, two models
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
