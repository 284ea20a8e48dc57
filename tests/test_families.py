"""Model families: choosing one, refusing what it cannot do, the recurrent state, and an
engine that leaves the model it was given alone (and follows it as it trains)."""

import copy
import math

import numpy as np
import pytest
import torch

from conftest import REPO, lmforge
from lmforge.errors import UserError
from lmforge.infer.engine import Engine
from lmforge.infer.tiny import make_tiny_run
from lmforge.models.bert import BertConfig
from lmforge.models.io import check_arch, list_steps, load_model
from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.models.rnn import RNNConfig, RecurrentLM
from lmforge.recipe import load_recipe
from lmforge.train.batches import StreamBatches
from lmforge.train.objectives import CausalLM
from lmforge.tokenizer.load import load_tokenizer

GREEDY = dict(temperature=0.0, ignore_eos=True)


def test_arch_selects_the_family_dataclass_and_its_default_objective():
    quick = REPO / "recipes" / "quickstart.toml"
    assert type(load_recipe(quick).model) is LlamaConfig
    lstm = load_recipe(quick, ["model.arch=gru", "model.preset=rnn-mini"])
    assert type(lstm.model) is RNNConfig and lstm.model.arch == "gru" and lstm.train.objective == "causal_lm"
    bert = load_recipe(quick, ["model.preset=bert-mini", "model.d_model=256"])   # the preset names the family
    assert type(bert.model) is BertConfig and bert.train.objective == "masked_lm"


@pytest.mark.parametrize("override, expected", [
    ("model.arch=transformer", "allowed: bert, clip, gru, llama, lstm, rnn"),
    ("model.kind=bidirectional", "unknown key 'model.kind'"),
    ("model.n_kv_head=2", None),    # a llama field ...
])
def test_model_table_errors_name_the_key(override, expected):
    quick = REPO / "recipes" / "quickstart.toml"
    if expected is None:   # ... is accepted for llama and refused for an LSTM, naming the key
        load_recipe(quick, [override])
        with pytest.raises(UserError, match="unknown key 'model.n_kv_head'"):
            load_recipe(quick, [override, "model.arch=lstm"])
        return
    with pytest.raises(UserError, match=expected):
        load_recipe(quick, [override])


def test_an_objective_the_family_cannot_train_is_one_line_and_writes_nothing(tmp_path):
    out = lmforge("run", str(REPO / "recipes" / "quickstart.toml"), "--out", str(tmp_path / "r"),
                  "--set", "model.arch=bert", "--set", "train.objective=causal_lm")
    # the quickstart's llama preset is the first thing wrong with that
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "preset of arch 'llama'" in out.stderr
    out = lmforge("run", str(REPO / "recipes" / "quickstart.toml"), "--out", str(tmp_path / "r"),
                  "--set", "model.preset=bert-mini", "--set", "train.objective=causal_lm")
    assert out.returncode == 2
    assert out.stderr.strip() == ("lmforge: error: train.objective = 'causal_lm' cannot train "
                                  "model.arch = 'bert' (it trains: masked_lm, classify)")
    assert not (tmp_path / "r").exists()
    out = lmforge("run", str(REPO / "recipes" / "lstm.toml"), "--out", str(tmp_path / "r"),
                  "--set", "train.objective=masked_lm")
    assert out.returncode == 2 and "model.arch = 'lstm'" in out.stderr and "Traceback" not in out.stderr


def test_a_checkpoint_of_one_family_is_refused_as_another(tmp_path):
    run = make_tiny_run(tmp_path / "llama")
    with pytest.raises(UserError, match="arch 'llama', not 'bert'"):
        check_arch(list_steps(run / "checkpoints")[-1], "bert")


# ---------------------------------------------------------------------------- the engine

def _tiny_llama(vocab: int) -> Transformer:
    torch.manual_seed(0)
    return Transformer(LlamaConfig(preset="tiny", vocab_size=vocab, zero_init_out=False).resolved())


def test_engine_leaves_the_model_alone_and_follows_its_training(tmp_path):
    tok = load_tokenizer(make_tiny_run(tmp_path / "run") / "tokenizer")
    model = _tiny_llama(tok.get_vocab_size())
    before = {n: (p, p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}
    engine = Engine(model, tok)
    try:
        first = engine.generate("The list", max_tokens=5, logprobs=True, **GREEDY)
        for name, p in model.named_parameters():   # the same tensors, values and gradient flags
            same, values, grad = before[name]
            assert p is same and p.requires_grad == grad and torch.equal(p.detach(), values), name
        # one more training step: the engine's next answer comes from the new weights
        opt = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
        ids = torch.tensor([engine.encode("The list of values")])
        torch.nn.functional.cross_entropy(model(ids)[0, :-1], ids[0, 1:]).backward()
        opt.step()
        after = engine.generate("The list", max_tokens=5, logprobs=True, **GREEDY)
        assert after.logprobs[0].logprob != first.logprobs[0].logprob
        fresh = Engine(copy.deepcopy(model), tok, copy_model=False)
        try:
            expected = fresh.generate("The list", max_tokens=5, logprobs=True, **GREEDY)
        finally:
            fresh.close()
        assert after.token_ids == expected.token_ids
        assert [lp.logprob for lp in after.logprobs] == pytest.approx([lp.logprob for lp in expected.logprobs],
                                                                      abs=1e-5)
        with torch.no_grad():   # an in-place edit outside any optimizer is followed too
            model.lm_head.weight.zero_()
        flat = engine.generate("The list", max_tokens=1, logprobs=True, **GREEDY)
        assert flat.logprobs[0].logprob == pytest.approx(-math.log(tok.get_vocab_size()), abs=1e-4)
    finally:
        engine.close()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_recurrent_models_generate_through_the_engine_as_their_forward_predicts(tmp_path, cell):
    tok = load_tokenizer(make_tiny_run(tmp_path / "run") / "tokenizer")
    torch.manual_seed(0)
    model = RecurrentLM(RNNConfig(arch=cell, n_layer=2, d_model=48, vocab_size=tok.get_vocab_size())).eval()
    engine = Engine(model, tok, max_batch=2)
    try:
        prompts = ["The list", "Return the value of"]
        results = [engine.generate(p, max_tokens=12, **GREEDY) for p in prompts]
    finally:
        engine.close()
    with torch.no_grad():
        for prompt, result in zip(prompts, results):
            seq = tok.encode(prompt).ids
            for tid in result.token_ids:
                assert int(model(torch.tensor([seq]))[0, -1].argmax()) == tid
                seq.append(tid)


def test_encoders_are_not_generative(tmp_path):
    run = make_tiny_run(tmp_path / "bert", BertConfig(preset="bert-tiny"))
    with pytest.raises(UserError, match="arch 'bert' is not generative"):
        Engine.from_run(run)
    for verb in (["generate", str(run), "--prompt", "x"], ["chat", str(run)]):   # (serve gives it embeddings)
        out = lmforge(*verb)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "not generative" in out.stderr
    # benchmark tasks score next-token likelihoods, which an encoder does not have
    out = lmforge("eval", str(run), "--task", "piqa")
    assert out.returncode == 2 and "scores next-token likelihoods" in out.stderr
    out = lmforge("fill-mask", str(run), "--text", "no mask here")
    assert out.returncode == 2 and "has no mask token" in out.stderr
    out = lmforge("fill-mask", str(run), "--text", "The [MASK] of a list", "--top-k", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("mask 1: ") and out.stdout.count(" 0.") == 3


# ---------------------------------------------------------------------------- recurrent state

def test_resets_zero_the_state_exactly_where_a_document_starts():
    torch.manual_seed(0)
    model = RecurrentLM(RNNConfig(arch="lstm", n_layer=2, d_model=16, vocab_size=50, dropout=0.0)).eval()
    x = torch.randint(0, 50, (2, 12))
    resets = torch.zeros(2, 12, dtype=torch.bool)
    resets[0, 5] = True                                  # row 0: a document starts at position 5
    start = model.zero_state(2) + torch.randn(model.zero_state(2).shape)   # some carried state
    with torch.no_grad():
        out, state = model.hidden(x, start, resets)
        plain, plain_state = model.hidden(x, start)
        fresh, fresh_state = model.hidden(x[:1, 5:])
    torch.testing.assert_close(out[1], plain[1])                         # row 1 runs on untouched
    torch.testing.assert_close(out[0, :5], plain[0, :5])                 # row 0 until the reset
    torch.testing.assert_close(out[0, 5:], fresh[0], rtol=1e-5, atol=1e-6)   # then as if from zero
    torch.testing.assert_close(state[:, :, 0], fresh_state[:, :, 0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state[:, :, 1], plain_state[:, :, 1])


def test_stream_batches_continue_each_stream_and_restart_each_pass():
    tokens = np.arange(1000, dtype=np.uint16)
    b = StreamBatches(tokens, seq_len=10, batch_size=2, bos_id=None, grad_accum=2)
    assert b.stream_len == 249 and b.windows_per_pass == 24
    first, second = b.get(0, 1), b.get(1, 1)
    assert first["restart"] and not second["restart"] and first["stream"] == 1
    assert first["input_ids"][:, 0].tolist() == [2 * 249, 3 * 249]      # micro-batch 1 holds streams 2, 3
    assert torch.equal(second["input_ids"], first["input_ids"] + 10)    # the next window of the same streams
    assert torch.equal(first["labels"], first["input_ids"] + 1)
    assert b.get(24, 0)["restart"] and torch.equal(b.get(24, 0)["input_ids"], b.get(0, 0)["input_ids"])


def test_causal_lm_carries_the_state_from_window_to_window():
    torch.manual_seed(0)
    model = RecurrentLM(RNNConfig(arch="gru", n_layer=1, d_model=16, vocab_size=40, dropout=0.0))
    tokens = np.random.default_rng(0).integers(1, 40, 400).astype(np.uint16)
    objective = CausalLM(recurrent=True, bos_id=0)
    batches = objective.train_batches(tokens, 8, 2, seed=0)
    with torch.no_grad():
        objective.loss(model, batches.get(0, 0))
        carried, _ = objective.loss(model, batches.get(1, 0))
        both = torch.cat([batches.get(0, 0)["input_ids"], batches.get(1, 0)["input_ids"]], dim=1)
        logits = model(both)[:, 8:]
        expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 40), batches.get(1, 0)["labels"].reshape(-1))
        restarted = CausalLM(recurrent=True, bos_id=0)
        cold, _ = restarted.loss(model, {**batches.get(1, 0), "restart": True})
    torch.testing.assert_close(carried, expected)
    assert abs(float(cold) - float(carried)) > 1e-4                    # the carried state mattered
    saved = objective.state_dict()
    again = CausalLM(recurrent=True, bos_id=0)
    again.load_state_dict(saved)
    assert torch.equal(again.carried[0], objective.carried[0])


def test_int8_weights_stay_close_and_follow_the_model(tmp_path):
    from lmforge.models.llama.decode import _Int8Projection
    run = make_tiny_run(tmp_path / "run", LlamaConfig(preset="llama-mini", n_layer=1, d_model=512, n_head=8,
                                                      max_seq_len=64))
    tok = load_tokenizer(run / "tokenizer")
    model = load_model(run)
    exact, int8 = Engine(model, tok), Engine(model, tok, int8=True)
    try:
        layer = int8.decoder.layers[0]
        assert isinstance(layer.qkv, _Int8Projection) and isinstance(layer.up, _Int8Projection)
        ids = exact.encode("A list is a mutable sequence of values.")
        a, b = exact.prompt_logprobs(ids)[1:], int8.prompt_logprobs(ids)[1:]
        assert max(abs(x - y) for x, y in zip(a, b)) < 0.05 and a != b
        with torch.no_grad():
            model.lm_head.weight.zero_()        # the int8 copy is rebuilt from the new weights
        flat = int8.generate("A list", max_tokens=1, logprobs=True, **GREEDY)
        assert flat.logprobs[0].logprob == pytest.approx(-math.log(tok.get_vocab_size()), abs=1e-3)
    finally:
        exact.close()
        int8.close()
    lstm = make_tiny_run(tmp_path / "lstm", RNNConfig(arch="lstm", n_layer=1, d_model=32))
    out = lmforge("generate", str(lstm), "--prompt", "x", "--dtype", "int8")
    assert out.returncode == 2 and "int8 weights are not available for arch 'lstm'" in out.stderr
