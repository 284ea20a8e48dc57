"""The OpenAI-compatible server, driven by the official `openai` client over real HTTP."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time

import httpx
import openai
import pytest
import uvicorn
from fastapi.testclient import TestClient

from lmforge.errors import UserError
from lmforge.infer.engine import Engine
from lmforge.infer.tiny import make_tiny_run
from lmforge.serve.app import create_app, serve
from lmforge.serve.formatting import sse

KEY = "test-key-123"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def engine(run):
    e = Engine.from_run(run, max_batch=4)
    yield e
    e.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app):
    """`app` under uvicorn on a free 127.0.0.1 port in a thread; yields its base URL."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(engine, run):
    with serving(create_app(engine, api_key=KEY, model_name="tiny", max_tokens_limit=64, max_request_bytes=20_000,
                            audit_db=run / "audit.db", audit_hash_prompts=True)) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=30)


def test_models_and_completion(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    out = client.completions.create(model="tiny", prompt="Hello", max_tokens=8, temperature=0,
                                    extra_body={"ignore_eos": True})
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 8 and out.usage.total_tokens == out.usage.prompt_tokens + 8


def test_streaming_equals_non_streaming(client, engine):
    kw = dict(model="tiny", prompt="Stream this", max_tokens=12, temperature=0.8, seed=7,
              extra_body={"ignore_eos": True})
    whole = client.completions.create(**kw).choices[0].text
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole
    assert chunks[-1].usage.completion_tokens == 12
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert whole == engine.generate("Stream this", max_tokens=12, temperature=0.8, seed=7, ignore_eos=True).text


def test_chat_and_chat_stream(client, engine):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    out = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=6, temperature=0,
                                         logprobs=True, top_logprobs=2)
    want = engine.chat(msgs, max_tokens=6, temperature=0)
    assert out.choices[0].message.content == want.text
    assert out.usage.prompt_tokens == want.prompt_tokens
    assert len(out.choices[0].logprobs.content) == want.completion_tokens
    assert all(len(t.top_logprobs) == 2 for t in out.choices[0].logprobs.content)
    stream = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=6, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want.text
    assert chunks[-1].usage.completion_tokens == want.completion_tokens


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "Wire format", "max_tokens": 4}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Wire format"}], "max_tokens": 4}),
])
def test_event_stream_on_the_wire(server, path, body):
    """What curl sees: `data: {json}` events, one blank line after each, the last one `data: [DONE]`
    (the openai client stops at the closed connection, so only the raw bytes show the end marker)."""
    with httpx.stream("POST", server + path, json={**body, "stream": True, "temperature": 0, "ignore_eos": True},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]" and raw.count("[DONE]") == 1
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-2]]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_stream_events_survive_unicode_line_separators():
    # generated text may hold U+2028 or U+0085, which JSON leaves raw and str.splitlines treats as
    # line ends; a client reading the stream line by line must still get whole events
    text = "a\u2028b\x85c\u2029d \u00e9"
    event = sse({"choices": [{"text": text}]})
    lines = event.splitlines()
    assert lines == [event[:-2], ""]
    assert json.loads(lines[0].removeprefix("data: "))["choices"][0]["text"] == text


def test_echo_logprobs_equal_in_process(client, engine):
    text = "The quick brown fox"
    out = client.completions.create(model="tiny", prompt=text, echo=True, max_tokens=0, logprobs=1)
    lp = out.choices[0].logprobs
    want = engine.prompt_logprobs(engine.encode(text))
    assert out.choices[0].text == text
    assert lp.token_logprobs[0] is None and lp.token_logprobs[1:] == pytest.approx(want[1:], abs=1e-4)
    assert len(lp.tokens) == len(lp.text_offset) == len(lp.top_logprobs) == len(want)
    assert lp.text_offset[0] == 0 and lp.top_logprobs[0] is None
    # a batch of token-id prompts, as lm-evaluation-harness sends them
    ids = engine.encode(text)
    batch = client.completions.create(model="tiny", prompt=[ids, ids[:3]], echo=True, max_tokens=0, logprobs=1)
    assert batch.choices[0].logprobs.token_logprobs[1:] == pytest.approx(want[1:], abs=1e-4)
    assert len(batch.choices[1].logprobs.token_logprobs) == 3


BAD = [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"model": "gpt-9", "prompt": "x"}), 404, "not found"),
    (json.dumps({"prompt": "x", "max_tokens": -1}), 400, "max_tokens"),
    (json.dumps({"prompt": "x", "max_tokens": 1000}), 400, "at most 64"),
    (json.dumps({"prompt": "x " * 300}), 400, "the model's context is 128"),
    (json.dumps({"prompt": "x", "temperature": "hot"}), 400, "temperature"),
    (json.dumps({"prompt": "x", "top_p": 0}), 400, "top_p"),
    (json.dumps({"prompt": [10 ** 9]}), 400, "token ids"),
    (json.dumps({"prompt": ""}), 400, "empty"),
    (json.dumps({"prompt": "x", "n": 3}), 400, "n=1"),
    (json.dumps({"prompt": "x" * 30_000}), 413, "larger than"),
    (json.dumps({"no_prompt": 1}), 400, "prompt"),
    # hostile bodies that once gave a 500
    (json.dumps({"prompt": "x", "seed": 2 ** 70}), 400, "seed"),
    (b'{"prompt": "\\ud800\\udfff\\ud800"}', 400, "lone surrogate"),
    (b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "nested more than"),
    # numbers JSON cannot hold as floats, and parts of the API that are not implemented
    (b'{"prompt": "x", "temperature": 1e999}', 400, "too large for a float"),
    (b'{"prompt": "x", "temperature": NaN}', 400, "NaN"),
    (json.dumps({"prompt": "x", "tools": [{"type": "function", "function": {"name": "f"}}]}), 400,
     "tools: unknown field"),     # tools are a chat completions feature
    (json.dumps({"prompt": "x", "best_of": 3}), 400, "best_of: unknown field"),
    (json.dumps({"prompt": "x", "response_format": {"type": "xml"}}), 400, "response_format.type"),
    (json.dumps({"prompt": "x", "logit_bias": {"5": 500}}), 400, "logit_bias"),
    (json.dumps({"prompt": "x", "stop": ["a"] * 100}), 400, "at most 16 stop strings"),
    (json.dumps({"prompt": [[1, [2, [3, [4]]]]] * 2}), 400, "prompt"),
]


@pytest.mark.parametrize("body,status,message", BAD)
def test_bad_completion_requests(server, body, status, message):
    r = httpx.post(server + "/v1/completions", content=body, timeout=30,
                   headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert message in err["message"] and set(err) == {"message", "type", "param", "code"}


def test_hostile_bodies_leave_the_connection_serving(server):
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    with httpx.Client(base_url=server, headers=headers, timeout=30) as http:     # one keep-alive connection
        for body, status, _ in BAD[-11:]:   # from the seed beyond 64 bits on
            assert http.post("/v1/completions", content=body).status_code == status
            ok = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})
            assert ok.status_code == 200, ok.text


def test_bad_chat_requests_and_auth(server, client):
    auth = {"Authorization": f"Bearer {KEY}"}
    cases = [
        ({"messages": []}, auth, 400),
        ({"messages": [{"role": "robot", "content": "x"}]}, auth, 400),
        ({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 99}, auth, 400),
        ({"messages": [{"role": "user", "content": "x"}]}, {}, 401),
        ({"messages": [{"role": "user", "content": "x"}]}, {"Authorization": "Bearer wrong"}, 401),
    ]
    for body, headers, status in cases:
        r = httpx.post(server + "/v1/chat/completions", json=body, headers=headers, timeout=30)
        assert r.status_code == status, (body, r.text)
        assert "error" in r.json()
    assert httpx.get(server + "/v1/nothing-here", headers=auth).status_code == 404
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="nope", max_retries=0).models.list()
    # after all of that the server still serves
    assert client.completions.create(model="tiny", prompt="still alive", max_tokens=2).usage.completion_tokens >= 1


def test_tokenize_detokenize_health_metrics(server, engine):
    auth = {"Authorization": f"Bearer {KEY}"}
    ids = httpx.post(server + "/tokenize", json={"prompt": "héllo"}, headers=auth).json()["tokens"]
    assert ids == engine.encode("héllo")
    assert httpx.post(server + "/detokenize", json={"tokens": ids}, headers=auth).json()["prompt"] == "héllo"
    assert httpx.get(server + "/health").json()["status"] == "ok"
    metrics = httpx.get(server + "/metrics").text
    for name in ("lmforge_requests_total", "lmforge_completion_tokens_total", "lmforge_time_to_first_token_seconds",
                 "lmforge_request_latency_seconds", "lmforge_batch_occupancy"):
        assert name in metrics


def test_audit_log(server, run, client):
    import hashlib
    t0 = time.time()
    out = client.completions.create(model="tiny", prompt="audited", max_tokens=2, extra_body={"ignore_eos": True})
    msgs = [{"role": "user", "content": "audité chat"}]
    chat = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=3, extra_body={"ignore_eos": True})
    httpx.post(server + "/v1/completions", json={"prompt": "x"}, headers={"Authorization": "Bearer wrong"})
    db = sqlite3.connect(run / "audit.db")
    db.row_factory = sqlite3.Row
    deadline = time.time() + 10
    while True:    # a row is written once its response has been sent: wait for the last one
        rows = [dict(r) for r in db.execute("SELECT * FROM requests WHERE time >= ? ORDER BY id", (t0,))]
        if len(rows) >= 3 or time.time() > deadline:
            break
        time.sleep(0.05)
    completion, chatted, refused = rows[-3:]
    sha = lambda text: hashlib.sha256(text.encode()).hexdigest()   # noqa: E731
    assert completion["key_id"] == sha(KEY)[:16] and completion["endpoint"] == "/v1/completions"
    assert completion["status"] == 200 and completion["prompt_tokens"] == out.usage.prompt_tokens
    assert completion["completion_tokens"] == 2 and 0 < completion["latency_s"] < time.time() - t0
    assert completion["prompt_sha256"] == sha("audited")          # what a holder of the prompt computes
    assert chatted["endpoint"] == "/v1/chat/completions" and chatted["completion_tokens"] == 3
    assert chatted["prompt_tokens"] == chat.usage.prompt_tokens
    assert chatted["prompt_sha256"] == sha(json.dumps(msgs, ensure_ascii=False, sort_keys=True, separators=(",", ":")))
    assert refused["status"] == 401 and refused["key_id"] is None and refused["prompt_sha256"] is None
    assert t0 <= completion["time"] <= chatted["time"] <= refused["time"] <= time.time()
    assert all(KEY not in str(r) for r in rows)


def test_rate_limit(engine):
    app = create_app(engine, api_key=["a", "b"], rate_limit=2)
    with TestClient(app) as c:
        codes = [c.get("/v1/models", headers={"Authorization": "Bearer a"}).status_code for _ in range(3)]
        other = c.get("/v1/models", headers={"Authorization": "Bearer b"})
        limited = c.get("/v1/models", headers={"Authorization": "Bearer a"})
    assert codes == [200, 200, 429] and other.status_code == 200
    assert limited.headers["Retry-After"] and limited.json()["error"]["type"] == "rate_limit_error"


def test_rate_limit_window_slides_and_retry_after_counts_down(monkeypatch):
    from lmforge.serve import limits
    from lmforge.serve.errors import APIError
    now = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    limiter = limits.RateLimiter(per_minute=2)

    def at(t):
        now[0] = 1000.0 + t
        try:
            limiter.check("k")
            return "ok"
        except APIError as e:
            assert e.status == 429 and e.code == "rate_limit_exceeded"
            return int(e.headers["Retry-After"])
    # hits at 0 s and 10 s fill the minute; the one at 0 s leaves it at 60 s
    assert [at(0), at(10), at(20), at(59.5)] == ["ok", "ok", 41, 1]
    assert at(60) == "ok"              # the first hit expired: a place again
    assert at(65) == 6                 # the 10-s hit is the oldest now: free at 70 s
    assert at(70) == "ok"
    limiter.check("another key")       # each key has its own window
    unlimited = limits.RateLimiter(per_minute=0)
    for _ in range(1000):
        unlimited.check("k")


def test_sagemaker_routes(engine):
    with TestClient(create_app(engine, api_key=KEY, sagemaker_mode=True)) as c:
        assert c.get("/ping").status_code == 200
        out = c.post("/invocations", json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
        assert out.status_code == 200 and out.json()["object"] == "chat.completion"
        out = c.post("/invocations", json={"prompt": "hi", "max_tokens": 3})
        assert out.json()["object"] == "text_completion"


def test_health_reports_load_failure(tmp_path):
    with TestClient(create_app(tmp_path / "missing")) as c:
        deadline = time.time() + 30
        while c.get("/health").json()["status"] == "loading" and time.time() < deadline:
            time.sleep(0.05)
        r = c.get("/health")
        assert r.status_code == 503 and "not found" in r.json()["detail"]
        assert c.post("/v1/completions", json={"prompt": "x"}).status_code == 503


def test_serve_refuses_public_host_without_key(run, monkeypatch):
    monkeypatch.delenv("LMFORGE_API_KEY", raising=False)
    with pytest.raises(UserError, match="without an API key"):
        serve(run, host="0.0.0.0")


def test_client_disconnect_frees_the_sequence(server, engine):
    body = {"model": "tiny", "prompt": "Disconnect", "max_tokens": 60, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", server + "/v1/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        next(r.iter_lines())
    deadline = time.time() + 10
    while engine.scheduler.occupancy and time.time() < deadline:
        time.sleep(0.02)
    assert engine.scheduler.occupancy == 0


def test_the_api_documents_its_bodies_and_errors(engine):
    with TestClient(create_app(engine, model_name="tiny")) as client:
        spec = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatRequest")
    assert {"400", "401", "404", "413", "429", "503"} <= set(chat["responses"]) and "422" not in chat["responses"]
    body = spec["components"]["schemas"]["ChatRequest"]
    assert "messages" in body["required"] and "seed" in body["properties"]
    assert spec["components"]["schemas"]["ErrorBody"]["properties"]["error"]
