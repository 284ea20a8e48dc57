"""The web chat in a real headless Chromium: type a message, see a streamed answer."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
import uvicorn

from lmforge.infer.engine import Engine
from lmforge.infer.tiny import make_tiny_run
from lmforge.serve.app import create_app

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    engine = Engine.from_run(make_tiny_run(tmp_path_factory.mktemp("run")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(engine, api_key="web-key"), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)
    engine.close()


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def test_chat_streams_an_answer(server, page):
    page.goto(server + "/")
    page.fill("#api-key", "web-key")
    page.dispatch_event("#api-key", "change")
    page.wait_for_function("document.getElementById('model-name').textContent.includes('context')")
    page.fill("#system", "You are terse.")
    page.fill("#max-tokens", "20")
    page.fill("#input", "Hello there")
    page.press("#input", "Enter")
    page.wait_for_selector(".message.user")
    assert page.inner_text(".message.user") == "Hello there"
    page.wait_for_selector(".message.assistant:not(.streaming)")
    first = page.inner_text(".message.assistant")
    assert first.strip()
    # regenerate replaces the last answer (sampling at temperature 0.7 gives a new one)
    page.click("#regenerate")
    page.wait_for_selector(".message.assistant:not(.streaming)")
    assert page.locator(".message.assistant").count() == 1
    assert page.is_hidden("#error")


def test_wrong_key_shows_error(server, page):
    page.goto(server + "/")
    page.fill("#api-key", "bad")
    page.dispatch_event("#api-key", "change")
    page.wait_for_selector("#error:not([hidden])")
    assert "API key" in page.inner_text("#error")
