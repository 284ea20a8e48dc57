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


class Recording:
    """The real engine, with the conversations it was asked to continue written down."""

    def __init__(self, engine):
        self.engine, self.asked = engine, []

    def chat_stream(self, messages, **sampling):
        self.asked.append([dict(m) for m in messages])
        return self.engine.chat_stream(messages, **sampling)


def test_every_turn_sends_the_system_prompt_and_the_whole_history(engine):
    spy = Recording(engine)
    history, _ = chat(spy, "first question\nsecond question\n", system="Answer in French.")
    first_answer = history[1]["content"]
    assert spy.asked == [
        [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "first question"}],
        [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "first question"},
         {"role": "assistant", "content": first_answer}, {"role": "user", "content": "second question"}],
    ]
    # and the second reply is the model's continuation of that whole conversation
    assert history[3]["content"] == engine.chat(spy.asked[1], max_tokens=5, temperature=0).text


def test_the_exact_transcript(engine):
    from lmforge.infer.chat_repl import HELP
    history, out = chat(engine, "\n/system\nhello\n/bogus\n/reset\n/system Be kind.\nhi\n")
    first = engine.chat([{"role": "user", "content": "hello"}], max_tokens=5, temperature=0).text
    second = engine.chat([{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hi"}],
                         max_tokens=5, temperature=0).text
    assert HELP == "Commands: /reset, /system TEXT, /exit"
    assert out == (f"{HELP}\n"
                   "you> "                                                   # an empty line asks again
                   "you> (system prompt cleared; history cleared)\n"
                   f"you> model> {first}\n"
                   f"you> unknown command '/bogus'. {HELP}\n"
                   "you> (history cleared)\n"
                   "you> (system prompt set; history cleared)\n"
                   f"you> model> {second}\n"
                   "you> ")
    assert history == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": second}]
