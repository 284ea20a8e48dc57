"""Request bodies of the OpenAI-compatible endpoints, validated with pydantic.

A field this server does not know is a 400 naming it (a client that asked for something
must not get a silent no); the OpenAI fields that change nothing here (store, metadata,
service_tier, user, ...) are accepted. Wrong types and out-of-range values (a seed torch
cannot take, more than MAX_STOP stop strings, a logit_bias beyond +-100) become a 400
naming the field. response_format (json_object, json_schema) and tools are implemented
by constrained decoding (infer/grammar.py, serve/tools.py).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmforge.errors import UserError
from lmforge.infer import grammar
from lmforge.infer.sampling import SamplingParams
from lmforge.serve.tools import history
from lmforge.serve.errors import APIError


MAX_STOP = 16


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Body):
    include_usage: bool = False


class JSONSchemaSpec(_Body):
    name: str = Field(max_length=64)
    description: str | None = None
    schema_: dict = Field(default_factory=lambda: {"type": "object"}, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaSpec | None = None

    def grammar(self) -> str | None:
        if self.type == "json_schema":
            if self.json_schema is None:
                raise APIError(400, "response_format: type json_schema needs a json_schema object",
                               param="response_format")
            try:
                return grammar.json_schema(self.json_schema.schema_)
            except UserError as e:
                raise APIError(400, f"response_format: {e}", param="response_format") from None
        return grammar.json_object() if self.type == "json_object" else None


class _Sampling(_Body):
    model: str | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2 ** 63), le=2 ** 64 - 1)    # what torch's generators take
    logit_bias: dict[str, float] | None = None     # token id (as a string) -> bias in [-100, 100]
    response_format: ResponseFormat | None = None
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    user: str | None = None
    # OpenAI fields that change nothing on this server
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    @model_validator(mode="after")
    def _limits(self):
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP:
            raise APIError(400, f"stop: at most {MAX_STOP} stop strings, got {len(self.stop)}", param="stop")
        for key, bias in (self.logit_bias or {}).items():
            if not re.fullmatch(r"[0-9]{1,9}", key) or not -100 <= bias <= 100:
                raise APIError(400, f"logit_bias: keys are token ids and biases are in [-100, 100], "
                                    f"got {key!r}: {bias}", param="logit_bias")
        return self

    def sampling(self, max_tokens: int, logprobs: bool, top_logprobs: int, echo: bool = False,
                 grammar: str | None = None) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return SamplingParams(
            max_tokens=max_tokens, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
            min_p=self.min_p, repetition_penalty=self.repetition_penalty,
            frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
            stop=tuple(stop), seed=self.seed, logprobs=logprobs, top_logprobs=top_logprobs, echo=echo,
            ignore_eos=self.ignore_eos,
            logit_bias=tuple((int(k), float(v)) for k, v in (self.logit_bias or {}).items()),
            grammar=grammar if grammar is not None else (self.response_format and self.response_format.grammar()))

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = 16
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str) or (p and isinstance(p[0], int)):
            return [p]
        if not p:
            raise APIError(400, "prompt must not be empty", param="prompt")
        return list(p)


class ContentPart(_Body):
    type: Literal["text"]
    text: str


class FunctionCall(_Body):
    name: str
    arguments: str          # JSON text, as OpenAI sends it


class ToolCall(_Body):
    index: int | None = None      # present when a client sends back streamed calls as it got them
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None      # an assistant's earlier calls
    tool_call_id: str | None = None               # the call a tool message answers

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content or [])


class FunctionSpec(_Body):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict | None = None      # JSON Schema of the arguments
    strict: bool | None = None


class Tool(_Body):
    type: Literal["function"]
    function: FunctionSpec


class ChosenFunction(_Body):
    name: str


class ToolChoice(_Body):
    type: Literal["function"]
    function: ChosenFunction


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | ToolChoice | None = None
    parallel_tool_calls: bool | None = None       # accepted; an answer makes at most one call

    @model_validator(mode="after")
    def _tools(self):
        if self.tool_choice not in (None, "none") and not self.tools:
            raise APIError(400, "tool_choice: needs tools", param="tool_choice")
        if isinstance(self.tool_choice, ToolChoice) and self.tool_choice.function.name not in {
                t.function.name for t in self.tools}:
            raise APIError(400, f"tool_choice: no tool named {self.tool_choice.function.name!r}",
                           param="tool_choice")
        if self.tools and self.response_format and self.response_format.type != "text":
            raise APIError(400, "response_format: cannot be combined with tools", param="response_format")
        return self

    @property
    def messages_for_template(self) -> list[dict]:
        return history(self.messages, self.tools)


class TokenizeRequest(_Body):
    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True


class DetokenizeRequest(_Body):
    model: str | None = None
    tokens: list[int]


def parse(model: type[BaseModel], data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        param = str(first["loc"][0]) if first["loc"] else None
        where = ".".join(map(str, first["loc"])) or "body"
        message = "unknown field (not supported by this server)" if first["type"] == "extra_forbidden" \
            else first["msg"]
        raise APIError(400, f"{where}: {message}", param=param) from None
