"""The terminal chat loop, driven through in-memory streams."""

from __future__ import annotations

import io

import pytest

from lmforge.infer.chat_repl import run_chat
from lmforge.infer.engine import Engine
from lmforge.infer.tiny import make_tiny_run


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    e = Engine.from_run(make_tiny_run(tmp_path_factory.mktemp("run")))
    yield e
    e.close()


def chat(engine, lines: str, **kw):
    out = io.StringIO()
    history = run_chat(engine, stdin=io.StringIO(lines), stdout=out, max_tokens=5, temperature=0, **kw)
    return history, out.getvalue()


def test_conversation_history_and_streamed_replies(engine):
    history, out = chat(engine, "hello\nhow are you\n")
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    expected = engine.chat([{"role": "user", "content": "hello"}], max_tokens=5, temperature=0).text
    assert history[1]["content"] == expected and expected in out


def test_commands(engine):
    history, out = chat(engine, "hi\n/reset\n/system Be kind.\nagain\n/bogus\n/exit\nnever read\n")
    assert "(history cleared)" in out and "system prompt set" in out and "unknown command '/bogus'" in out
    assert [m["content"] for m in history if m["role"] == "user"] == ["again"]
    assert "never read" not in out


def test_context_overflow_is_reported_not_fatal(engine):
    history, out = chat(engine, "word " * 200 + "\nshort\n")
    assert "the model's context is" in out
    assert [m["content"] for m in history if m["role"] == "user"] == ["short"]
