"""Tool calls in OpenAI's format, built on constrained decoding.

The model sees the tools as a system message (their names, descriptions and JSON-schema
parameters, and how to call one: answer with only {"name": ..., "arguments": {...}}), so
this works with any chat template. A call is then decoded under a grammar, so it always
names a tool and its arguments validate against that tool's schema:

- tool_choice "required", or a named function: the whole answer is a call;
- "auto" (the default with tools): the answer is free text, or, when its first character
  is "{", a call — the grammar allows either, and commits once the model has chosen;
- "none": plain text, the tools are still shown.

One call per answer (parallel_tool_calls is accepted; at most one call is made). Earlier
turns go back to the model as it would have written them: an assistant's tool_calls as
the same JSON, a tool's result as a user message naming the call.
"""

from __future__ import annotations

import json
import secrets

from lmforge.errors import UserError
from lmforge.infer import grammar
from lmforge.serve.errors import APIError

CALL_INSTRUCTIONS = ("You can call these tools. To call one, answer with only a JSON object "
                     '{"name": <tool name>, "arguments": <its arguments>}, and nothing else.')


def system_text(tools: list) -> str:
    specs = [{"name": t.function.name, **({"description": t.function.description} if t.function.description else {}),
              "parameters": t.function.parameters or {"type": "object"}} for t in tools]
    return CALL_INSTRUCTIONS + "\n" + json.dumps(specs, ensure_ascii=False, separators=(",", ":"))


def history(messages: list, tools: list | None) -> list[dict]:
    """The request's messages as the chat template takes them (system, user, assistant)."""
    out = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "user", "content": f"Result of tool call {m.tool_call_id}: {m.text()}"})
        elif m.role == "assistant" and m.tool_calls:
            calls = [{"name": c.function.name, "arguments": _arguments(c.function.arguments)} for c in m.tool_calls]
            out.append({"role": "assistant", "content": "\n".join(json.dumps(c, ensure_ascii=False) for c in calls)})
        else:
            out.append({"role": "system" if m.role == "developer" else m.role, "content": m.text()})
    if tools:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + system_text(tools)}
        else:
            out.insert(0, {"role": "system", "content": system_text(tools)})
    return out


def _arguments(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise APIError(400, "messages: a tool call's function.arguments must be a JSON string",
                       param="messages") from None


def _call_schema(tool) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["name", "arguments"],
            "properties": {"name": {"const": tool.function.name},
                           "arguments": tool.function.parameters or {"type": "object"}}}


def call_grammar(tools: list | None, choice) -> str | None:
    """The grammar the answer must follow, or None for free text."""
    if not tools or choice == "none":
        return None
    try:
        if choice == "auto" or choice is None:
            calls = {"anyOf": [_call_schema(t) for t in tools]}
            return grammar.lark("start: TEXT | call\nTEXT: /[^{][\\s\\S]*/\n"
                                f"call: %json {json.dumps(grammar.compact_schema(calls))}")
        chosen = tools if choice == "required" else [t for t in tools if t.function.name == choice.function.name]
        return grammar.json_schema({"anyOf": [_call_schema(t) for t in chosen]})
    except UserError as e:      # a tool's parameters are not a usable JSON schema
        raise APIError(400, f"tools: {e}", param="tools") from None


def parse_call(text: str, tools: list | None) -> dict | None:
    """The OpenAI tool_calls entry for an answer that is a complete call, else None."""
    if not tools or not text.startswith("{"):
        return None
    try:
        call = json.loads(text)
    except json.JSONDecodeError:      # cut off by max_tokens: the answer stays text
        return None
    return {"id": "call_" + secrets.token_hex(12), "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)}}
