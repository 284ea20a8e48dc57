"""The pretraining objectives in process: causal LM (transformer and recurrent) and masked LM,
their batches and losses against computations written out here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models

from lmforge.errors import UserError
from lmforge.models.llama import LlamaConfig
from lmforge.models.registry import build_model
from lmforge.models.rnn.config import RNNConfig
from lmforge.models.rnn.model import RecurrentLM
from lmforge.train.batches import StreamBatches, TokenBatches
from lmforge.train.objectives import CausalLM, MaskedLM
from lmforge.train.objectives.masked_lm import mask_tokens, word_starts

V = 40
TOKENS = np.random.default_rng(0).integers(1, V, 600).astype(np.uint16)


def tiny_llama():
    torch.manual_seed(0)
    return build_model(LlamaConfig(preset="tiny", vocab_size=V, max_seq_len=16).resolved())


def test_causal_lm_windows_and_loss_for_a_transformer():
    objective = CausalLM(bos_id=0)
    assert not objective.recurrent
    batches = objective.train_batches(TOKENS, 8, 3, seed=4)
    reference = TokenBatches(TOKENS, 8, 3, 4)
    assert batches.global_batch == 3 and batches.seq_len == 8
    assert torch.equal(batches.get(5, 0)["input_ids"], reference.get(5, 0)["input_ids"])
    ranked = objective.train_batches(TOKENS, 8, 3, seed=4, grad_accum=2, rank=1, world=2)
    assert torch.equal(ranked.get(5, 1)["input_ids"], TokenBatches(TOKENS, 8, 3, 4, 2, 1, 2).get(5, 1)["input_ids"])
    model = tiny_llama()
    batch = batches.get(2, 0)
    batch["labels"] = batch["labels"].clone()
    batch["labels"][0, :4] = -100                      # ignored positions do not count
    loss, metrics = objective.loss(model, batch)
    logits = model(batch["input_ids"]).float()
    keep = batch["labels"] != -100
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], batch["labels"][keep]))
    assert metrics == {}


def test_a_recurrent_objective_scores_a_plain_batch_without_state():
    torch.manual_seed(0)
    model = RecurrentLM(RNNConfig(arch="gru", n_layer=1, d_model=16, vocab_size=V, dropout=0.0))
    objective = CausalLM(recurrent=True, bos_id=0)
    batch = TokenBatches(TOKENS, 8, 2, 1).get(0, 0)             # validation windows carry no stream
    loss, _ = objective.loss(model, batch)
    torch.testing.assert_close(loss, F.cross_entropy(model(batch["input_ids"]).reshape(-1, V), batch["labels"].reshape(-1)))
    assert objective.carried == {}
    objective.load_state_dict({})                                 # a checkpoint from before any state
    assert objective.carried == {}


def test_recurrent_batches_are_the_streams_with_resets_at_bos():
    tokens = TOKENS.copy()
    tokens[::5] = 0                                               # documents start with BOS 0
    objective = CausalLM(recurrent=True, bos_id=0)
    batches = objective.train_batches(tokens, 8, 2, seed=0, grad_accum=2, rank=1, world=2)
    reference = StreamBatches(tokens, 8, 2, 0, 2, 1, 2)
    got, want = batches.get(3, 1), reference.get(3, 1)
    assert torch.equal(got["input_ids"], want["input_ids"]) and got["stream"] == want["stream"]
    assert torch.equal(got["resets"], got["input_ids"] == 0) and bool(got["resets"].any())


def test_a_restart_drops_the_carried_state_and_resets_reach_the_model():
    torch.manual_seed(0)
    model = RecurrentLM(RNNConfig(arch="gru", n_layer=1, d_model=16, vocab_size=V, dropout=0.0))
    objective = CausalLM(recurrent=True, bos_id=0)
    batches = objective.train_batches(TOKENS, 8, 2, seed=0)
    with torch.no_grad():
        objective.loss(model, batches.get(0, 0))
        second = batches.get(1, 0)
        restarted, _ = objective.loss(model, {**second, "restart": True})
        cold, _ = CausalLM(recurrent=True, bos_id=0).loss(model, second)
        torch.testing.assert_close(restarted, cold)
        resets = torch.zeros_like(second["resets"])
        resets[:, 4] = True
        with_resets, _ = CausalLM(recurrent=True, bos_id=0).loss(model, {**second, "resets": resets})
        logits = torch.cat([model(second["input_ids"][:, :4]), model(second["input_ids"][:, 4:])], dim=1)
    torch.testing.assert_close(with_resets, F.cross_entropy(logits.reshape(-1, V), second["labels"].reshape(-1)),
                               rtol=1e-5, atol=1e-6)


VOCABS = {
    "wordpiece": {"<|bos|>": 0, "the": 1, "##s": 2, "cat": 3, ",": 4, "a,": 5},
    "bpe": {"<|bos|>": 0, "Ġthe": 1, "s": 2, "Ġcat": 3, ",": 4, "a,": 5, "ab": 6},
    "unigram": {"<|bos|>": 0, "▁the": 1, "s": 2, "▁cat": 3, ",": 4},
}


@pytest.mark.parametrize("kind, expected", [
    ("wordpiece", [True, True, False, True, True, True]),
    ("bpe", [True, True, False, True, True, False, False]),       # "a," starts with a letter: a continuation
    ("unigram", [True, True, False, True, True]),
])
def test_word_starts_read_each_tokenizers_marks(kind, expected):
    starts = word_starts(VOCABS[kind], {0})
    assert starts.tolist() == expected


def test_word_starts_mark_specials_and_refuse_an_unmarked_vocabulary():
    assert word_starts({"<|bos|>": 0, "##a": 1, "b": 2}, {0})[0]           # a special always begins a word
    assert word_starts({"Ġa": 0, "b": 1, "<|x|>": 2}, {1}).tolist() == [True, True, True]
    with pytest.raises(UserError) as e:
        word_starts({"a": 0, "b": 1}, set())
    assert str(e.value) == ("train.whole_word_masking needs a WordPiece, byte-level BPE or unigram tokenizer "
                            "(it finds words by their '##', 'Ġ' or '▁' marks); set it to false")


SPECIAL = torch.zeros(V, dtype=torch.bool)
SPECIAL[:3] = True                                 # ids 0-2 are special; 3 is the mask token's stand-in


def test_masking_never_selects_specials_and_always_selects_something():
    ids = torch.randint(3, V, (4, 16), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 0
    ids[:, -1] = 1
    for seed in range(5):
        out = mask_tokens(ids, torch.Generator().manual_seed(seed), mask_id=3, special=SPECIAL, probability=0.3)
        assert (out["labels"][:, [0, -1]] == -100).all()
        assert torch.equal(out["input_ids"][:, [0, -1]], ids[:, [0, -1]])
    none = mask_tokens(ids, torch.Generator().manual_seed(1), mask_id=3, special=SPECIAL, probability=0.0)
    assert int((none["labels"] != -100).sum()) == 1       # a loss needs at least one target: exactly one
    position = int(torch.nonzero(none["labels"].flatten() != -100))
    assert not SPECIAL[ids.flatten()[position]]
    torch.manual_seed(123)
    again = mask_tokens(ids, torch.Generator().manual_seed(1), mask_id=3, special=SPECIAL, probability=0.0)
    assert torch.equal(again["labels"], none["labels"])   # the generator alone decides, not torch's global state


def test_masking_is_a_function_of_the_generator_and_splits_80_10_10():
    ids = torch.randint(3, V, (64, 64), generator=torch.Generator().manual_seed(0))
    starts = torch.ones(V, dtype=torch.bool)
    for whole in (None, starts):
        a = mask_tokens(ids, torch.Generator().manual_seed(9), mask_id=3, special=SPECIAL, probability=0.15, starts=whole)
        torch.manual_seed(99)
        b = mask_tokens(ids, torch.Generator().manual_seed(9), mask_id=3, special=SPECIAL, probability=0.15, starts=whole)
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    selected = a["labels"] != -100
    n = int(selected.sum())
    assert n == pytest.approx(0.15 * ids.numel(), abs=4 * (0.15 * 0.85 * ids.numel()) ** 0.5)
    masked = (a["input_ids"] == 3) & selected
    kept = (a["input_ids"] == ids) & selected
    assert masked.sum() / n == pytest.approx(0.8, abs=0.05) and kept.sum() / n == pytest.approx(0.1, abs=0.04)
    assert not SPECIAL[a["input_ids"][selected & ~masked & ~kept]].any()    # random replacements are ordinary


def test_whole_word_masking_takes_every_piece_of_a_word_and_words_independently():
    starts = torch.zeros(V, dtype=torch.bool)
    starts[3:20] = True                                   # ids 3-19 begin words, 20-39 continue them
    gen = torch.Generator().manual_seed(0)
    rows = []
    for _ in range(40):                                   # rows of 10 words of 3 pieces each, no specials
        rows.append(torch.stack([torch.tensor([int(torch.randint(3, 20, (1,), generator=gen)),
                                               int(torch.randint(20, V, (1,), generator=gen)),
                                               int(torch.randint(20, V, (1,), generator=gen))]) for _ in range(10)]).flatten())
    ids = torch.stack(rows)
    out = mask_tokens(ids, torch.Generator().manual_seed(2), mask_id=3, special=SPECIAL, probability=0.4, starts=starts)
    selected = (out["labels"] != -100).view(40, 10, 3)
    assert (selected.all(dim=2) | ~selected.any(dim=2)).all()          # all three pieces, or none
    words = selected[:, :, 0]
    mixed = (words.any(dim=1) & ~words.all(dim=1)).float().mean()
    assert mixed > 0.9                                                  # words of one row are chosen one by one


def _tokenizer_with_late_specials() -> Tokenizer:
    tok = Tokenizer(models.WordLevel({"a": 0, "b": 1, "c": 2, "<unk>": 3}, unk_token="<unk>"))
    tok.add_special_tokens(["<|bos|>", "<|mask|>"])       # added after the vocabulary, as tokenizer.path does
    return tok


def test_masked_lm_loss_accuracy_and_defaults():
    tok = _tokenizer_with_late_specials()
    objective = MaskedLM(tok, probability=0.5)
    assert objective.special.shape[0] == 6 and objective.special[[4, 5]].all() and not objective.special[:4].any()
    batches = objective.train_batches(TOKENS % 4, 8, 3, seed=1)
    assert batches.global_batch == 3
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, requires_grad=True)
    model = lambda ids, predict: logits[predict]            # noqa: E731  (a fixed model, scoring where asked)
    labels = torch.tensor([[-100, 2, -100, 0, 1], [3, -100, -100, -100, 2]])
    loss, metrics = objective.loss(model, {"input_ids": torch.zeros(2, 5, dtype=torch.long), "labels": labels})
    keep = labels != -100
    torch.testing.assert_close(loss, F.cross_entropy(logits[keep], labels[keep]))
    expected = float((logits.argmax(-1)[keep] == labels[keep]).float().mean())
    assert set(metrics) == {"mlm_accuracy"} and float(metrics["mlm_accuracy"]) == pytest.approx(expected)
    perfect = torch.nn.functional.one_hot(labels.clamp_min(0), 6).float() * 10
    _, m = objective.loss(lambda ids, predict: perfect[predict], {"input_ids": torch.zeros(2, 5, dtype=torch.long), "labels": labels})
    assert float(m["mlm_accuracy"]) == 1.0
    with pytest.raises(UserError, match=r"^the tokenizer has no mask token <\|mask\|>, which masked-LM training "
                                        r"needs: train one with lmforge \(leave tokenizer.path empty\) or give "
                                        r"tokenizer.path a tokenizer.json that has <\|mask\|>$"):
        MaskedLM(Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>")))


def test_masked_lm_uses_whole_words_when_asked():
    tok = Tokenizer(models.WordPiece({"<|bos|>": 0, "<|mask|>": 1, "the": 2, "##s": 3, "cat": 4, "[UNK]": 5},
                                     unk_token="[UNK]"))
    tok.add_special_tokens(["<|bos|>", "<|mask|>"])
    objective = MaskedLM(tok, probability=0.5, whole_word=True)
    assert objective.starts.tolist() == [True, True, True, False, True, True]
    ids = torch.tensor([[2, 3, 4, 2, 3, 4, 2, 3] * 4])
    out = objective.mask(ids, torch.Generator().manual_seed(0))
    selected = out["labels"] != -100
    continuation = torch.nonzero(ids[0] == 3).flatten()
    assert torch.equal(selected[0, continuation], selected[0, continuation - 1])    # "##s" goes with its word


def test_window_objectives_pass_the_language_mix_on_and_recurrent_ones_refuse_it():
    from lmforge.data.language_mix import LanguageMix, LanguageSegments
    from lmforge.train.objectives.base import Objective
    from lmforge.train.batches import fixed_windows
    mix = LanguageMix(LanguageSegments([("en", 0, 300), ("de", 300, 600)]), 0.5, 600, 8)
    expected = mix.starts(3, torch.Generator().manual_seed(4 * 1_000_003 + 2))
    for objective in (CausalLM(bos_id=0), MaskedLM(_tokenizer_with_late_specials())):
        batches = objective.train_batches(TOKENS, 8, 3, seed=4, mix=mix)
        source = getattr(batches, "source", batches)           # masked LM wraps the windows
        assert source.mix is mix
    assert TokenBatches(TOKENS, 8, 3, 4, mix=mix).get(2, 0)["input_ids"][:, 0].tolist() == \
        [int(TOKENS[s]) for s in expected]
    with pytest.raises(ValueError) as e:
        CausalLM(recurrent=True, bos_id=0).train_batches(TOKENS, 8, 2, seed=0, mix=mix)
    assert str(e.value) == ("data.language_alpha below 1 needs window batches; a recurrent model reads its streams "
                            "in order (set data.language_alpha = 1)")
    proportional = LanguageMix(LanguageSegments([("en", 0, 300), ("de", 300, 600)]), 1.0, 600, 8)
    assert isinstance(CausalLM(recurrent=True, bos_id=0).train_batches(TOKENS, 8, 2, seed=0, mix=proportional),
                      StreamBatches)
    val = Objective().val_batches(TOKENS, 8, 4, 2, seed=5)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(val, fixed_windows(TOKENS, 8, 4, 2, seed=5)))
    assert not torch.equal(val[0]["input_ids"], fixed_windows(TOKENS, 8, 4, 2, seed=0)[0]["input_ids"])


def test_whole_words_with_specials_added_after_the_vocabulary_and_a_single_target():
    tok = Tokenizer(models.WordPiece({"the": 0, "##s": 1, "cat": 2, "[UNK]": 3}, unk_token="[UNK]"))
    tok.add_special_tokens(["<|bos|>", "<|mask|>"])
    objective = MaskedLM(tok, whole_word=True)
    assert objective.starts.tolist() == [True, False, True, True, True, True]
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 2, 1]]), 6).float() * 10
    labels = torch.tensor([[-100, 2, -100]])
    _, m = objective.loss(lambda ids, predict: logits[predict], {"input_ids": torch.zeros(1, 3, dtype=torch.long), "labels": labels})
    assert float(m["mlm_accuracy"]) == 1.0                     # one target, predicted right
