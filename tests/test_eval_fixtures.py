"""Shared fixtures for the evaluation tests: a tiny trained lmforge run and the same model as an
HF LlamaForCausalLM directory, built from scratch so the tests depend on no other stage.

Also checks that both loaders give the same log-likelihoods, which every comparison relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPECIAL = ["<|bos|>", "<|eos|>", "<|pad|>"]


def need_shared_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def corpus() -> list[str]:
    import argparse, collections, json as json_mod, pathlib, textwrap
    docs = [m.__doc__ or "" for m in (argparse, collections, json_mod, pathlib, textwrap)]
    docs += ["The cat sat on the mat. The dog ran in the park. A man rides a horse.",
             "Ein Mann fährt ein Pferd. Die Katze sitzt auf der Matte. Русский текст, 日本語."] * 10
    return docs


def train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    return tok


def train_model(tok, steps: int = 30):
    from lmforge.models.llama import LlamaConfig
    from lmforge.models.llama import Transformer
    torch.manual_seed(0)
    cfg = LlamaConfig(n_layer=2, n_head=2, d_model=64, max_seq_len=64, mlp="swiglu",
                      vocab_size=tok.get_vocab_size(), zero_init_out=False)
    model = Transformer(cfg)
    ids = torch.tensor([i for d in corpus() for i in tok.encode(d).ids + [tok.token_to_id("<|eos|>")]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):   # a brief fit, so the model prefers real text over noise
        starts = torch.randint(0, len(ids) - 65, (8,))
        batch = torch.stack([ids[s:s + 65] for s in starts])
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def write_run(run: Path, tok, model) -> Path:
    from lmforge.train.checkpoint import save_checkpoint
    (run / "tokenizer").mkdir(parents=True)
    tok.save(str(run / "tokenizer" / "tokenizer.json"))
    (run / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>"}))
    save_checkpoint(run / "checkpoints", 60, model.state_dict(), model.cfg, None, {"step": 60})
    return run


def write_hf(out: Path, tok, model) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    cfg = model.cfg
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ff_dim,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        tie_word_embeddings=False, bos_token_id=tok.token_to_id("<|bos|>"),
        eos_token_id=tok.token_to_id("<|eos|>"), pad_token_id=tok.token_to_id("<|pad|>")))
    hf.load_state_dict(model.state_dict(), strict=True)   # identical names: no conversion
    hf.save_pretrained(out)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                            pad_token="<|pad|>").save_pretrained(out)
    return out


_built: dict[str, tuple[Path, Path]] = {}


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> tuple[Path, Path]:
    """(lmforge run dir, HF model dir) holding the same weights.

    Built once per session: test modules import this fixture, and pytest would
    otherwise treat each import as a fixture of its own."""
    if "pair" not in _built:
        root = tmp_path_factory.mktemp("eval_models")
        tok = train_tokenizer()
        model = train_model(tok)
        _built["pair"] = write_run(root / "tiny-run", tok, model), write_hf(root / "tiny-hf", tok, model)
    return _built["pair"]


@pytest.fixture(scope="session")
def tiny_run(tiny_pair) -> Path:
    return tiny_pair[0]


@pytest.fixture(scope="session")
def hf_dir(tiny_pair) -> Path:
    return tiny_pair[1]


def test_both_loaders_agree(tiny_run, hf_dir):
    from lmforge.eval.backends import HFCausalLM, LmforgeLM, load_lm
    ours, theirs = load_lm(tiny_run), load_lm(hf_dir)
    assert isinstance(ours, LmforgeLM) and isinstance(theirs, HFCausalLM)
    assert ours.prefix_token_id == theirs.prefix_token_id and ours.max_length == theirs.max_length == 64
    requests = [("The cat sat on the", " mat."), ("", "Hello world"), ("A man rides", " a horse.")]
    a, b = ours.loglikelihood(requests), theirs.loglikelihood(requests)
    for (la, ga), (lb, gb) in zip(a, b):
        assert la == pytest.approx(lb, abs=1e-4) and ga == gb
    text = "The cat sat on the mat. " * 12    # longer than one 64-token window
    assert ours.loglikelihood_rolling([text])[0] == pytest.approx(theirs.loglikelihood_rolling([text])[0], abs=1e-3)
