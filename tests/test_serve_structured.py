"""Structured output and tool calls, through the official `openai` client over real HTTP.

The model is a tiny one with random weights: it knows nothing of JSON, so every valid
answer below is the grammar's doing, not the model's."""

from __future__ import annotations

import json
import queue

import httpx
import jsonschema
import openai
import pytest

from lmforge.infer import grammar
from lmforge.infer.engine import Engine
from lmforge.infer.grammar import Constraint
from lmforge.infer.request import Done, Failed
from lmforge.infer.sampling import SamplingParams
from lmforge.infer.tiny import make_tiny_run
from lmforge.models.llama import LlamaConfig
from lmforge.serve.app import create_app
from test_serve_api import serving

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
          "properties": {"name": {"type": "string", "maxLength": 12},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "maxItems": 3}}}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                   "properties": {"city": {"type": "string", "maxLength": 10},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "additionalProperties": False, "properties": {"zone": {"type": "integer", "minimum": -12,
                                                                            "maximum": 14}}}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    cfg = LlamaConfig(preset="llama-mini", n_layer=2, d_model=64, n_head=4, max_seq_len=1024)  # room for tools
    e = Engine.from_run(make_tiny_run(tmp_path_factory.mktemp("run"), cfg), max_batch=8)
    yield e
    e.close()


@pytest.fixture(scope="module")
def server(engine):
    with serving(create_app(engine, model_name="tiny")) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=60)


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def test_json_schema_answers_are_valid_on_100_of_100_requests(client):
    valid = 0
    for seed in range(100):
        out = client.chat.completions.create(model="tiny", messages=ASK, max_tokens=100, temperature=1.0,
                                             seed=seed, response_format=schema_format(PERSON))
        jsonschema.validate(json.loads(out.choices[0].message.content), PERSON)
        assert out.choices[0].finish_reason == "stop"     # the grammar completed, not the budget
        valid += 1
    assert valid == 100


def test_json_object_on_both_endpoints_and_streaming(client, engine):
    # any object: unbounded, so a random model may write a string until the budget ends; a bias
    # towards "{" then "}" makes the empty object the answer, and the request must stop right after it
    chat = client.chat.completions.create(model="tiny", messages=ASK, max_tokens=100, temperature=0.7, seed=1,
                                          response_format={"type": "json_object"},
                                          logit_bias={str(token_of(engine, "{")): 50, str(token_of(engine, "}")): 100})
    assert chat.choices[0].message.content == "{}" and chat.choices[0].finish_reason == "stop"
    plain = client.completions.create(model="tiny", prompt="JSON:", max_tokens=100, temperature=0.7, seed=2,
                                      extra_body={"response_format": schema_format(PERSON)})
    jsonschema.validate(json.loads(plain.choices[0].text), PERSON)
    kw = dict(model="tiny", messages=ASK, max_tokens=100, temperature=0.9, seed=3,
              response_format=schema_format(PERSON))
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(stream=True, **kw))
    assert streamed == client.chat.completions.create(**kw).choices[0].message.content
    jsonschema.validate(json.loads(streamed), PERSON)


def test_a_budget_too_small_for_the_schema_is_cut_like_openai(client):
    out = client.chat.completions.create(model="tiny", messages=ASK, max_tokens=3, temperature=0,
                                         response_format=schema_format(PERSON))
    assert out.choices[0].finish_reason == "length"
    assert out.choices[0].message.content.startswith('{"')


def check_call(call, tools) -> dict:
    spec = {t["function"]["name"]: t["function"].get("parameters", {"type": "object"}) for t in tools}
    assert call.type == "function" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, spec[call.function.name])
    return args


def test_tool_choice_required_and_named_always_call_a_tool_with_valid_arguments(client):
    names = set()
    for seed in range(12):
        out = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER, CLOCK], seed=seed,
                                             tool_choice="required", max_tokens=100, temperature=1.0)
        choice = out.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        check_call(choice.message.tool_calls[0], [WEATHER, CLOCK])
        names.add(choice.message.tool_calls[0].function.name)
    assert names == {"get_weather", "get_time"}       # sampling reaches both tools
    out = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER, CLOCK], max_tokens=100,
                                         tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert out.choices[0].message.tool_calls[0].function.name == "get_weather"
    check_call(out.choices[0].message.tool_calls[0], [WEATHER])


def token_of(engine, text: str) -> int:
    return engine.tokenizer.token_to_id(text)


def test_tool_choice_auto_is_text_or_a_call_as_the_first_character_decides(client, engine):
    brace = token_of(engine, "{")
    call = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER], max_tokens=100,
                                          temperature=0, logit_bias={str(brace): 100})
    assert call.choices[0].finish_reason == "tool_calls"
    check_call(call.choices[0].message.tool_calls[0], [WEATHER])
    text = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER], max_tokens=10,
                                          temperature=0, logit_bias={str(brace): -100})
    assert text.choices[0].message.tool_calls is None and not text.choices[0].message.content.startswith("{")
    none = client.chat.completions.create(model="tiny", messages=ASK, tools=[WEATHER], max_tokens=10,
                                          temperature=0, tool_choice="none", logit_bias={str(brace): 100})
    assert none.choices[0].message.content.startswith("{") and none.choices[0].message.tool_calls is None


def test_streamed_tool_calls_arrive_in_openai_chunks(client, engine):
    kw = dict(model="tiny", messages=ASK, tools=[WEATHER], max_tokens=100, temperature=0.8, seed=5)
    whole = client.chat.completions.create(tool_choice="required", **kw).choices[0].message.tool_calls[0]
    chunks = list(client.chat.completions.create(stream=True, tool_choice="required", **kw))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].index == 0
    assert calls[0].function.arguments == whole.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    text = list(client.chat.completions.create(stream=True, logit_bias={str(token_of(engine, "{")): -100}, **kw))
    assert "".join(c.choices[0].delta.content or "" for c in text if c.choices)
    assert not any(c.choices[0].delta.tool_calls for c in text if c.choices)


def test_a_tool_conversation_goes_back_to_the_model(server, client):
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": json.dumps({"city": "Paris", "unit": "celsius"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees and sunny"}]
    out = client.chat.completions.create(model="tiny", messages=history, tools=[WEATHER], max_tokens=5)
    assert out.choices[0].finish_reason in ("stop", "length", "tool_calls")
    ids = httpx.post(server + "/tokenize", json={"messages": history}).json()["tokens"]
    prompt = httpx.post(server + "/detokenize", json={"tokens": ids}).json()["prompt"]
    assert '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}' in prompt
    assert "Result of tool call call_1: 18 degrees and sunny" in prompt


@pytest.mark.parametrize("body,message", [
    ({"response_format": {"type": "json_schema"}}, "needs a json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frog"}}}},
     "response_format: invalid JSON schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "frog"}}}]},
     "tools: invalid"),
    ({"tool_choice": "required"}, "tool_choice: needs tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "no tool named"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0.function.name"),
    ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "cannot be combined"),
    ({"audio": {"voice": "alloy"}}, "audio: unknown field"),
    ({"messages": [{"role": "user", "content": "x", "mood": "happy"}]}, "messages.0.mood: unknown field"),
    ({"logit_bias": {"999999": 1}}, "logit_bias token ids"),
])
def test_bad_structured_requests_are_400s_naming_the_field(server, body, message):
    r = httpx.post(server + "/v1/chat/completions", json={"messages": ASK, "max_tokens": 4, **body}, timeout=30)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
    assert httpx.post(server + "/v1/chat/completions", json={"messages": ASK, "max_tokens": 1}).status_code == 200


def test_logit_bias_moves_the_greedy_choice(engine):
    free = engine.generate("Hello", max_tokens=4, temperature=0)
    forced = engine.generate("Hello", max_tokens=4, temperature=0, logit_bias=((42, 100.0),), ignore_eos=True)
    assert forced.token_ids == [42] * 4 != free.token_ids


def test_engine_regex_and_lark_grammars(engine):
    out = engine.generate("Code:", max_tokens=20, temperature=1.0, seed=0, grammar=grammar.regex(r"[A-Z]{3}-[0-9]{4}"))
    assert out.finish_reason == "stop" and len(out.text) == 8 and out.text[3] == "-" and out.text[4:].isdigit()
    out = engine.generate("Answer:", max_tokens=10, temperature=1.0, seed=0,
                          grammar=grammar.lark('start: "yes" | "no"'))
    assert out.text in ("yes", "no") and out.finish_reason == "stop"
    assert out.token_ids[-1] not in engine.stop_ids      # stopped when complete, no end-of-text step


def test_a_request_whose_grammar_fails_leaves_its_batch_running(engine, monkeypatch):
    def refuse(self, token_id):
        raise RuntimeError("the grammar refused a token")
    monkeypatch.setattr(Constraint, "advance", refuse)
    inbox = queue.SimpleQueue()
    free = engine.submit("Hello", SamplingParams(max_tokens=40, temperature=0, ignore_eos=True), inbox.put)
    engine.submit("Hello", SamplingParams(max_tokens=40, grammar=grammar.json_object()), inbox.put)
    ends = {}
    while len(ends) < 2:
        event = inbox.get(timeout=30)
        if isinstance(event, (Done, Failed)):
            ends["done" if isinstance(event, Done) else "failed"] = event
    assert str(ends["failed"].error) == "the grammar refused a token"
    assert ends["done"].result.completion_tokens == 40 and free.finish_reason == "length"


def test_streamed_auto_text_keeps_the_logprob_of_every_token(client, engine):
    chunks = list(client.chat.completions.create(
        model="tiny", messages=ASK, tools=[WEATHER], max_tokens=8, temperature=0, stream=True, logprobs=True,
        stream_options={"include_usage": True}, logit_bias={str(token_of(engine, "{")): -100}))
    logprobs = [lp for c in chunks if c.choices and c.choices[0].logprobs for lp in c.choices[0].logprobs.content]
    assert len(logprobs) == chunks[-1].usage.completion_tokens > 0     # the held-back first ones too
