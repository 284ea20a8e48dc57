"""The shapes of the server's successful answers, as pydantic models for /openapi.json.

The handlers build their answers as plain dicts (a streamed token costs no validation);
these models document them, and the fuzzing test checks every answer against them, so
a field that drifts from the document fails a test rather than a client.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: Literal["stop", "length"] | None      # None in a stream until the last chunk


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[TokenLogprob]


class CalledFunction(BaseModel):
    name: str
    arguments: str        # JSON text


class CalledTool(BaseModel):
    id: str
    type: Literal["function"]
    function: CalledFunction


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[CalledTool] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: Literal["stop", "length", "tool_calls"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


class Tokens(BaseModel):
    tokens: list[int]
    count: int
    max_model_len: int


class Text(BaseModel):
    prompt: str


class Classification(BaseModel):
    index: int
    label: str
    scores: dict[str, float]


class Classifications(BaseModel):
    object: Literal["list"]
    model: str
    data: list[Classification]


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str          # a base64 string with encoding_format "base64"


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class Embeddings(BaseModel):
    object: Literal["list"]
    model: str
    data: list[Embedding]
    usage: EmbeddingUsage


class Health(BaseModel):
    status: Literal["ok", "loading", "error"]
    model: str | None = None
    detail: str | None = None


STREAMS = ("/v1/completions", "/v1/chat/completions")    # also answer text/event-stream with stream=true
ANSWERS = {"/v1/completions": Completion, "/v1/chat/completions": ChatCompletion, "/v1/models": ModelList,
           "/tokenize": Tokens, "/detokenize": Text, "/v1/classify": Classifications,
           "/v1/embeddings": Embeddings, "/health": Health}
