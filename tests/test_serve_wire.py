"""The server's answers as bytes on the wire, where the `openai` client forgives too much:
every field of the response objects, the logprob objects, the guard's exact errors and
boundaries, and the audit log's storage."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time

import httpx
import pytest

from lmforge.serve.app import create_app
from lmforge.serve.audit import AuditLog
from lmforge.serve.limits import MAX_DEPTH, RateLimiter, resolve_keys
from test_serve_api import KEY, engine, run, server  # noqa: F401  (fixtures)

AUTH = {"Authorization": f"Bearer {KEY}"}


def post(server, path, body=None, headers=AUTH, **kw):
    kw.setdefault("json", body)
    return httpx.post(server + path, headers=headers, timeout=30, **kw)


def test_completion_object_fields(server, engine):
    t0 = int(time.time())
    r = post(server, "/v1/completions", {"prompt": "Fields", "max_tokens": 3, "temperature": 0, "ignore_eos": True,
                                         "logprobs": 2, "echo": True}).json()
    assert set(r) == {"id", "object", "created", "model", "choices", "usage"}
    assert re.fullmatch(r"cmpl-[0-9a-f]{24}", r["id"]) and r["object"] == "text_completion"
    assert r["model"] == "tiny" and t0 <= r["created"] <= time.time()
    lp = r["choices"][0]["logprobs"]
    assert "".join(lp["tokens"]) == r["choices"][0]["text"]           # the pieces spell the text
    assert lp["text_offset"] == [sum(len(t) for t in lp["tokens"][:i]) for i in range(len(lp["tokens"]))]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None   # the first prompt token
    for token, logprob, top in list(zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]))[1:]:
        assert 1 <= len(top) <= 2 and logprob <= 0 and all(v <= 0 for v in top.values())   # a dict: pieces may repeat
        assert logprob <= max(top.values()) + 1e-6 and all(isinstance(k, str) and k for k in top)
    for token, logprob, top in list(zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]))[-3:]:
        assert top[token] == pytest.approx(logprob, abs=1e-5)     # greedy: the chosen token is the top one


def test_chat_object_and_logprob_fields(server, engine):
    r = post(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Fields"}], "max_tokens": 3,
                                              "temperature": 0, "ignore_eos": True, "logprobs": True,
                                              "top_logprobs": 2}).json()
    assert set(r) == {"id", "object", "created", "model", "choices", "usage"}
    assert re.fullmatch(r"chatcmpl-[0-9a-f]{24}", r["id"]) and r["object"] == "chat.completion"
    content = r["choices"][0]["logprobs"]["content"]
    assert "".join(e["token"] for e in content) == r["choices"][0]["message"]["content"]
    for e in content:
        assert set(e) == {"token", "logprob", "bytes", "top_logprobs"}
        assert e["bytes"] == list(e["token"].encode("utf-8")) and e["logprob"] <= 0
        assert len(e["top_logprobs"]) == 2
        for alt in e["top_logprobs"]:
            assert set(alt) == {"token", "logprob", "bytes"} and alt["bytes"] == list(alt["token"].encode())
        assert e["top_logprobs"][0]["logprob"] == pytest.approx(e["logprob"], abs=1e-5)   # greedy: the top one


def test_stream_chunks_share_one_id_and_creation_time(server):
    with httpx.stream("POST", server + "/v1/chat/completions", headers=AUTH, timeout=30,
                      json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 3, "stream": True}) as r:
        events = [e.removeprefix("data: ") for e in r.read().decode().split("\n\n") if e]
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert chunks[0]["id"].startswith("chatcmpl-")


@pytest.mark.parametrize("headers, message", [
    ({}, "missing API key: send 'Authorization: Bearer <key>'"),
    ({"Authorization": f"Basic {KEY}"}, "missing API key: send 'Authorization: Bearer <key>'"),
    ({"Authorization": "Bearer"}, "missing API key: send 'Authorization: Bearer <key>'"),
    ({"Authorization": "Bearer nope"}, "invalid API key"),
    ({"Authorization": f"Bearer {KEY} extra"}, "invalid API key"),
])
def test_authentication_errors(server, headers, message):
    r = httpx.get(server + "/v1/models", headers=headers, timeout=30)
    assert r.status_code == 401
    assert r.json()["error"] == {"message": message, "type": "authentication_error", "param": None,
                                 "code": "invalid_api_key"}


def test_key_list_from_the_environment(monkeypatch):
    monkeypatch.setenv("LMFORGE_API_KEY", " a, b ,,c ")
    assert resolve_keys(None) == ["a", "b", "c"]
    assert resolve_keys("x,y") == ["x", "y"] and resolve_keys(["k"]) == ["k"] and resolve_keys("") == []


def test_a_limit_of_one_request_per_minute_is_a_limit():
    limiter = RateLimiter(per_minute=1)
    limiter.check("k")
    with pytest.raises(Exception, match="rate limit of 1 requests per minute reached; retry in 6[01] s"):
        limiter.check("k")


def test_without_keys_each_client_address_has_its_own_limit(engine):
    import asyncio
    app = create_app(engine, rate_limit=1)

    async def codes():
        out = []
        for host in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
            transport = httpx.ASGITransport(app=app, client=(host, 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                out.append((await c.get("/v1/models")).status_code)
        return out
    assert asyncio.run(codes()) == [200, 429, 200]


def test_body_size_limit_is_inclusive(server):
    # the server's limit is 20,000 bytes: a body of exactly that size is read, one byte more is refused
    head = b'{"prompt": "x", "max_tokens": 1, "user": "'
    exact = head + b"u" * (20_000 - len(head) - 2) + b'"}'
    assert len(exact) == 20_000
    assert post(server, "/v1/completions", content=exact).status_code == 200
    over = post(server, "/v1/completions", content=exact[:-2] + b'u"}')
    assert over.status_code == 413 and over.json()["error"]["code"] == "request_too_large"
    assert over.json()["error"]["message"] == "request body is larger than 20000 bytes"


def _nested(levels: int) -> bytes:
    # levels of JSON containers counting the body itself: {"prompt": "x", "user": ..., "stop": [[...]]}
    return b'{"prompt": "x", "max_tokens": 1, "stop": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"


def test_nesting_limit_boundary(server):
    ok = post(server, "/v1/completions", content=_nested(MAX_DEPTH))
    assert "nested" not in ok.text
    deep = post(server, "/v1/completions", content=_nested(MAX_DEPTH + 1))
    assert deep.status_code == 400
    assert deep.json()["error"]["message"] == f"request body is nested more than {MAX_DEPTH} levels deep"
    assert post(server, "/v1/completions", content=_nested(40)).json()["error"]["message"].startswith(
        "request body is nested more than")


def test_lone_surrogate_is_found_beside_later_containers(server):
    # the surrogate sits in an earlier field than another container, so every branch must be walked
    body = b'{"prompt": "x", "stop": ["\\ud800"], "logit_bias": {"1": 0}, "stream_options": null}'
    r = post(server, "/v1/completions", content=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "stop" and err["message"].startswith("stop: holds a lone surrogate")
    assert post(server, "/v1/completions", content=b'{"prompt": "\\ud800"}').json()["error"]["param"] == "prompt"
    before_a_list = post(server, "/v1/completions", content=b'{"prompt": "\\ud800", "stop": ["a"]}')
    assert before_a_list.status_code == 400 and before_a_list.json()["error"]["param"] == "prompt"


def test_a_body_declared_too_large_is_refused_before_it_is_read(server):
    import socket
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 50000\r\n\r\n{".encode())
        reply = s.recv(4096).decode()        # answered at once: no wait for 50,000 bytes that never come
    assert reply.startswith("HTTP/1.1 413") and "request body is larger than 20000 bytes" in reply


def test_json_array_body_message(server):
    r = post(server, "/v1/completions", content=b"[1, 2]")
    assert r.json()["error"]["message"] == "request body must be a JSON object"


def test_audit_log_storage(tmp_path):
    path = tmp_path / "nested" / "dir" / "audit.db"
    for hash_prompts in (True, False):
        log = AuditLog(path, hash_prompts=hash_prompts)
        log.record(key_id="k1", endpoint="/v1/completions", status=200, prompt_tokens=5, completion_tokens=7,
                   latency_s=0.25, prompt_sha256="ab" * 32)
        # another connection sees the row at once (autocommit) and the log is in WAL mode
        other = sqlite3.connect(path)
        row = other.execute("SELECT key_id, endpoint, status, prompt_tokens, completion_tokens, latency_s, "
                            "prompt_sha256 FROM requests ORDER BY id DESC LIMIT 1").fetchone()
        assert row == ("k1", "/v1/completions", 200, 5, 7, 0.25, "ab" * 32 if hash_prompts else None)
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        other.close()
        log.close()


def test_audit_rows_without_keys_have_no_key_id(engine, tmp_path):
    from fastapi.testclient import TestClient
    app = create_app(engine, audit_db=tmp_path / "a.db", audit_hash_prompts=True)
    with TestClient(app) as c:
        assert c.post("/v1/completions", json={"prompt": "héllo", "max_tokens": 1}).status_code == 200
    row = sqlite3.connect(tmp_path / "a.db").execute("SELECT key_id, prompt_sha256 FROM requests").fetchone()
    assert row == (None, hashlib.sha256("héllo".encode()).hexdigest())
