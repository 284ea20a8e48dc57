"""`POST /v1/embeddings` through the official `openai` client: an encoder run served for
embeddings only, a decoder run serving both, vectors equal to a forward pass written out here."""

from __future__ import annotations

import httpx
import openai
import pytest
import torch
import torch.nn.functional as F

from lmforge.infer.embedder import Embedder
from lmforge.infer.tiny import make_tiny_run
from lmforge.models.bert import BertConfig
from lmforge.models.io import load_model
from lmforge.serve.app import create_app
from lmforge.tokenizer.load import load_tokenizer
from test_serve_api import serving

TEXTS = ["The json module encodes objects.", "A list", "Ein Mann fährt Fahrrad und die Sonne scheint."]


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("bert") / "run", BertConfig(preset="bert-tiny"))


@pytest.fixture(scope="module")
def decoder_run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("llama") / "run")


def _client(base):
    return openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=30)


def _wait_loaded(base):
    for _ in range(200):
        if httpx.get(base + "/health").status_code == 200:
            return
        __import__("time").sleep(0.05)
    raise AssertionError("the model did not load")


def _by_hand(run, text) -> torch.Tensor:
    """Mean of the encoder's final states over the text's tokens (no padding), unit length."""
    model, tok = load_model(run).eval(), load_tokenizer(run / "tokenizer")
    ids = torch.tensor([tok.encode(text).ids])
    with torch.no_grad():
        states = model.encode(ids, torch.ones_like(ids))[0]
    return F.normalize(states.float().mean(0), dim=-1)


def test_an_encoder_run_serves_mean_pooled_unit_vectors(encoder_run):
    with serving(create_app(encoder_run, model_name="enc")) as base:
        _wait_loaded(base)
        client = _client(base)
        out = client.embeddings.create(model="enc", input=TEXTS)          # the client asks for base64
        floats = client.embeddings.create(model="enc", input=TEXTS, encoding_format="float")
        assert [d.index for d in out.data] == [0, 1, 2] and out.model == "enc"
        tok = load_tokenizer(encoder_run / "tokenizer")
        n_tokens = sum(len(tok.encode(t).ids) for t in TEXTS)
        assert out.usage.prompt_tokens == out.usage.total_tokens == n_tokens
        for text, a, b in zip(TEXTS, out.data, floats.data):
            v = torch.tensor(a.embedding)
            assert len(a.embedding) == load_model(encoder_run).cfg.d_model
            assert torch.allclose(v, torch.tensor(b.embedding), atol=1e-6)     # base64 and float agree
            assert float(v.norm()) == pytest.approx(1.0, abs=1e-5)
            assert torch.allclose(v, _by_hand(encoder_run, text), atol=1e-5)   # padding changes nothing
        one = client.embeddings.create(model="enc", input=TEXTS[1], encoding_format="float").data[0].embedding
        assert one == pytest.approx(floats.data[1].embedding, abs=1e-6)
        ids = tok.encode(TEXTS[0]).ids
        as_ids = client.embeddings.create(model="enc", input=[ids], encoding_format="float").data[0].embedding
        assert as_ids == pytest.approx(floats.data[0].embedding, abs=1e-6)
        # an encoder does not generate, and says where to go instead
        with pytest.raises(openai.BadRequestError, match="this model is an encoder: it does not generate"):
            client.completions.create(model="enc", prompt="x", max_tokens=2)


@pytest.mark.parametrize("body, message", [
    ({"input": []}, "input"),
    ({"input": [""]}, "input: every text must be non-empty"),
    ({"input": "word " * 400}, "the model's context is"),
    ({"input": [[10 ** 9]]}, "token ids must be integers"),
    ({"input": "x", "dimensions": 3}, "dimensions: this model's embeddings have"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "model": "other"}, "not found"),
])
def test_bad_embedding_requests_are_400s_and_the_server_keeps_serving(encoder_run, body, message):
    with serving(create_app(encoder_run, model_name="enc")) as base:
        _wait_loaded(base)
        r = httpx.post(base + "/v1/embeddings", json=body, timeout=30)
        assert r.status_code in (400, 404) and message in r.json()["error"]["message"], r.text
        assert httpx.post(base + "/v1/embeddings", json={"input": "fine"}, timeout=30).status_code == 200


def test_a_decoder_run_serves_last_token_embeddings_beside_completions(decoder_run):
    with serving(create_app(decoder_run, model_name="dec")) as base:
        _wait_loaded(base)
        client = _client(base)
        vectors = client.embeddings.create(model="dec", input=TEXTS[:2], encoding_format="float").data
        model, tok = load_model(decoder_run).eval(), load_tokenizer(decoder_run / "tokenizer")
        for text, got in zip(TEXTS[:2], vectors):
            ids = torch.tensor([tok.encode(text).ids])
            with torch.no_grad():
                want = Embedder(model, tok).family.features(model, ids, torch.ones_like(ids))[0]
            assert torch.allclose(torch.tensor(got.embedding), F.normalize(want.float(), dim=-1), atol=1e-5)
        assert client.completions.create(model="dec", prompt="x", max_tokens=2).usage.completion_tokens >= 1
