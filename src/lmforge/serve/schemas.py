"""Request bodies of the OpenAI-compatible endpoints, validated with pydantic.

Unknown fields are ignored (clients send many we do not use), except the parts of OpenAI's
API this server does not implement — tools, functions, a response_format other than text —
which are a 400 naming them rather than silently ignored; wrong types and out-of-range values
(a seed torch cannot take, more than MAX_STOP stop strings) become a 400 naming the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lmforge.infer.sampling import SamplingParams
from lmforge.serve.errors import APIError


MAX_STOP = 16


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StreamOptions(_Body):
    include_usage: bool = False


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
    # parts of OpenAI's API this server does not implement: a 400 naming them, not silence
    tools: list | None = None
    tool_choice: object = None
    functions: list | None = None
    function_call: object = None
    response_format: dict | None = None

    @model_validator(mode="after")
    def _supported(self):
        for name in ("tools", "functions"):
            if getattr(self, name):
                raise APIError(400, f"{name}: tool calling is not supported by this server", param=name)
        for name in ("tool_choice", "function_call"):
            if getattr(self, name) not in (None, "none", "auto"):
                raise APIError(400, f"{name}: tool calling is not supported by this server", param=name)
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise APIError(400, f"response_format: type {self.response_format.get('type')!r} is not supported "
                                f"(only 'text')", param="response_format")
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP:
            raise APIError(400, f"stop: at most {MAX_STOP} stop strings, got {len(self.stop)}", param="stop")
        return self
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    user: str | None = None

    def sampling(self, max_tokens: int, logprobs: bool, top_logprobs: int, echo: bool = False) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        return SamplingParams(
            max_tokens=max_tokens, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
            min_p=self.min_p, repetition_penalty=self.repetition_penalty,
            frequency_penalty=self.frequency_penalty, presence_penalty=self.presence_penalty,
            stop=tuple(stop), seed=self.seed, logprobs=logprobs, top_logprobs=top_logprobs, echo=echo,
            ignore_eos=self.ignore_eos)

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


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart] | None = None

    def as_dict(self) -> dict:
        content = self.content if isinstance(self.content, str) else "".join(
            part.text for part in self.content or [])
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


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
        raise APIError(400, f"{param or 'body'}: {first['msg']}", param=param) from None
