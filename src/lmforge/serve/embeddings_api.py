"""`POST /v1/embeddings` in OpenAI's format, for every run: an encoder's mean-pooled states, a
decoder's (or classifier's) last-token state, unit length (infer/embedder.py).

    {"input": ["a cat", "ein Hund"]}  ->  {"object": "list", "model": ...,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.012, ...]}, ...],
        "usage": {"prompt_tokens": 7, "total_tokens": 7}}

`input` is a text, a list of texts, a list of token ids or a list of such lists; with
`encoding_format` "base64" each vector is its little-endian float32 bytes in base64 (what the
official client asks for by default). `dimensions` other than the model's width is refused.
A `clip` run also takes images, as items `{"image": base64 or a data: URL}` in the list, with
`{"text": ...}` items beside them; every item's vector lies in the one shared space:

    {"input": [{"image": "data:image/png;base64,iVBOR..."}, {"text": "a red circle"}]}
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field
import torch

from lmforge.errors import UserError
from lmforge.serve.errors import APIError
from lmforge.serve.schemas import _Body, parse

MAX_INPUTS = 2048      # OpenAI's limit per request


class ImageItem(_Body):
    image: str = Field(min_length=1)


class TextItem(_Body):
    text: str = Field(min_length=1)


class EmbeddingsRequest(_Body):
    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]] | list[ImageItem | TextItem] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


def _image_bytes(i: int, item: ImageItem) -> bytes:
    data = item.image
    if data.startswith("data:"):
        head, _, data = data.partition(",")
        if not head.endswith(";base64"):
            raise APIError(400, f"input[{i}].image: a data URL must be base64 (data:image/png;base64,...)",
                           param="input")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"input[{i}].image: not base64 (send the file's bytes in base64, or a data: URL)",
                       param="input") from None


def _items(raw: list, embedder) -> list[list[int] | ImageItem]:
    """Every input form as one list: each text as its token ids, each image item as it is."""
    if all(isinstance(x, int) for x in raw):      # one text as token ids
        return [list(raw)]
    texts = {i: x if isinstance(x, str) else x.text for i, x in enumerate(raw) if isinstance(x, (str, TextItem))}
    if not all(texts.values()):
        raise APIError(400, "input: every text must be non-empty", param="input")
    encoded = dict(zip(texts, embedder.encode(list(texts.values())))) if texts else {}
    return [encoded[i] if i in encoded else x if isinstance(x, ImageItem) else list(x) for i, x in enumerate(raw)]


def _embed(items: list[list[int] | ImageItem], embedder) -> tuple[torch.Tensor, int]:
    """The items' vectors in order, and their texts' token count."""
    images = [i for i, x in enumerate(items) if isinstance(x, ImageItem)]
    texts = [i for i, x in enumerate(items) if not isinstance(x, ImageItem)]
    if images and not embedder.reads_images:
        raise APIError(400, f"input: this model (arch '{embedder.model.cfg.arch}') reads text only; "
                            f"image inputs need a clip run", param="input", code="model_reads_text_only")
    out = torch.zeros(len(items), embedder.dimensions)
    if images:
        out[images] = embedder.embed_images([_image_bytes(i, items[i]) for i in images],
                                             [f"input[{i}].image" for i in images])
    if texts:
        out[texts] = embedder.embed([items[i] for i in texts])
    return out, sum(len(items[i]) for i in texts)


def build_router(state) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/embeddings")
    async def embeddings(request: Request):
        state.guard.authenticate(request)
        body = parse(EmbeddingsRequest, await state.guard.json_body(request))
        embedder = state.ready_embedder()
        state.check_model(body.model)
        if body.dimensions is not None and body.dimensions != embedder.dimensions:
            raise APIError(400, f"dimensions: this model's embeddings have {embedder.dimensions} dimensions "
                                f"(shortening them is not supported)", param="dimensions")
        raw = [body.input] if isinstance(body.input, str) else body.input
        if len(raw) > MAX_INPUTS:
            raise APIError(400, f"input: at most {MAX_INPUTS} inputs per request, got {len(raw)}", param="input")
        try:
            vectors, n = await run_in_threadpool(_embed, _items(raw, embedder), embedder)
        except UserError as e:
            raise APIError(400, str(e), param="input") from None
        if body.encoding_format == "base64":
            encoded = [base64.b64encode(v.numpy().astype("<f4").tobytes()).decode() for v in vectors]
        else:
            encoded = vectors.tolist()
        return {"object": "list", "model": state.model_name,
                "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
                "usage": {"prompt_tokens": n, "total_tokens": n}}

    return router
