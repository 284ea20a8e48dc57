"""Masked-LM corruption: BERT's proportions, special tokens never touched, whole words together,
the same masks for the same step, and an evaluation that beats its unigram baseline only by learning."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers

from lmforge.errors import UserError
from lmforge.train.objectives import MaskedLM
from lmforge.train.objectives.masked_lm import mask_tokens, word_starts

VOCAB = 1000
SPECIAL = torch.zeros(VOCAB, dtype=torch.bool)
SPECIAL[:8] = True          # ids 0-7 are special (bos, eos, pad, mask, chat tokens)
MASK_ID = 3


def test_masking_follows_bert_proportions_and_never_touches_special_tokens():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(8, VOCAB, (256, 128), generator=gen)
    ids[:, ::16] = 0                                    # a special token every 16 positions
    ids[:, 5::16] = 2
    out = mask_tokens(ids, gen, mask_id=MASK_ID, special=SPECIAL, probability=0.15)
    selected = out["labels"] != -100
    special = SPECIAL[ids]
    assert not (selected & special).any()                         # specials never selected ...
    assert torch.equal(out["input_ids"][special], ids[special])    # ... nor changed
    assert torch.equal(out["labels"][selected], ids[selected])     # labels are the original tokens
    assert not (out["input_ids"] != ids)[~selected].any()          # nothing unselected changes
    rate = selected.sum() / (~special).sum()
    assert abs(float(rate) - 0.15) < 0.005
    masked = (out["input_ids"] == MASK_ID) & selected
    replaced = (out["input_ids"] != ids) & selected & ~masked
    kept = (out["input_ids"] == ids) & selected
    n = float(selected.sum())
    assert abs(float(masked.sum()) / n - 0.8) < 0.015
    # 10% random replacements; a random draw equal to the original token counts as kept
    assert abs(float(replaced.sum()) / n - 0.1) < 0.01
    assert abs(float(kept.sum()) / n - 0.1) < 0.01
    assert not SPECIAL[out["input_ids"][replaced]].any()           # never a special token drawn


def test_whole_word_masking_takes_every_piece_of_a_word():
    vocab = {"[special]": 0, "the": 8, "run": 9, "##ning": 10, "##s": 11, "dog": 12}
    special = torch.zeros(13, dtype=torch.bool)
    special[:8] = True
    starts = word_starts(vocab, {0})
    ids = torch.tensor([[8, 9, 10, 11, 12, 9, 10, 0, 9, 11] * 20])
    out = mask_tokens(ids, torch.Generator().manual_seed(1), mask_id=3, special=special, probability=0.3,
                      starts=starts)
    selected = (out["labels"] != -100)[0].tolist()
    row = ids[0].tolist()
    for i in range(1, len(row)):
        if row[i] in (10, 11):     # a continuation piece goes with the piece before it
            assert selected[i] == selected[i - 1]
    assert 0 < sum(selected) < len(row)


def _tokenizer(with_mask: bool) -> Tokenizer:
    vocab = {"<|bos|>": 0, "<|eos|>": 1, "<|pad|>": 2, "<|mask|>": 3, "a": 4, "b": 5, "c": 6, "[UNK]": 7}
    if not with_mask:
        vocab.pop("<|mask|>")
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens([t for t in vocab if t.startswith("<|")])
    return tok


def test_masks_are_a_function_of_the_step_and_the_rows():
    objective = MaskedLM(_tokenizer(True))
    tokens = np.random.default_rng(0).integers(4, 7, 5000).astype(np.uint16)
    one_rank = objective.train_batches(tokens, 16, 4, seed=3, grad_accum=2)
    second_rank = objective.train_batches(tokens, 16, 4, seed=3, grad_accum=1, rank=1, world=2)
    a, b = one_rank.get(7, 1), one_rank.get(7, 1)
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    assert torch.equal(a["input_ids"], second_rank.get(7, 0)["input_ids"])   # 1 x 2 micro == 2 ranks x 1
    assert not torch.equal(a["labels"], one_rank.get(8, 1)["labels"])
    assert set(objective.special.nonzero().flatten().tolist()) == {0, 1, 2, 3}


def test_a_tokenizer_without_a_mask_token_says_what_to_change():
    with pytest.raises(UserError, match="no mask token <\\|mask\\|>.*tokenizer.path"):
        MaskedLM(_tokenizer(False))


def test_evaluation_reports_accuracy_against_the_unigram_baseline():
    from lmforge.eval.masked_lm import evaluate_masked
    from lmforge.models.bert import BertConfig, BertEncoder
    objective = MaskedLM(_tokenizer(True))
    # "a" is the most frequent token; the text alternates a b a c: context tells b from c
    tokens = np.array([4, 5, 4, 6] * 2000, dtype=np.uint16)
    torch.manual_seed(0)
    model = BertEncoder(BertConfig(preset="bert-tiny", vocab_size=8, max_seq_len=16, dropout=0.0))
    before = evaluate_masked(model, objective, tokens, tokens, seq_len=16, windows=32, pll_tokens=64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    batches = objective.train_batches(tokens, 16, 16, seed=0)
    model.train()
    for step in range(200):
        loss, _ = objective.loss(model, batches.get(step, 0))
        loss.backward()
        opt.step()
        opt.zero_grad()
    after = evaluate_masked(model, objective, tokens, tokens, seq_len=16, windows=32, pll_tokens=64)
    assert after["unigram_token"] == 4 and before["unigram_mlm_accuracy"] == after["unigram_mlm_accuracy"]
    assert 0.4 < after["unigram_mlm_accuracy"] < 0.6                 # half the tokens are "a"
    assert after["mlm_accuracy"] > 0.95 > before["mlm_accuracy"]
    assert after["pll_per_token"] < 0.1 < before["pll_per_token"] and after["pll_tokens"] == 64


def test_the_loss_scores_only_the_masked_tokens_and_equals_the_full_head():
    # the head runs on the masked positions alone; loss, accuracy and gradients are those of
    # the full (B, T, vocab) logits with -100 labels ignored
    from lmforge.models.bert import BertConfig, BertEncoder
    from lmforge.train.objectives.causal_lm import token_losses
    torch.manual_seed(0)
    model = BertEncoder(BertConfig(preset="bert-tiny", vocab_size=8, max_seq_len=16, dropout=0.0).resolved())
    objective = MaskedLM(_tokenizer(True), probability=0.3)
    batch = objective.mask(torch.randint(4, 7, (4, 16)), torch.Generator().manual_seed(1))
    loss, metrics = objective.loss(model, batch)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    full = model(batch["input_ids"])
    selected = batch["labels"] != -100
    want = token_losses(full, batch["labels"])
    assert 0 < int(selected.sum()) < selected.numel()
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    for got, ref in zip(grads, torch.autograd.grad(want, list(model.parameters()))):
        assert torch.allclose(got, ref, atol=1e-6)
    accuracy = float((full.argmax(-1)[selected] == batch["labels"][selected]).float().mean())
    assert float(metrics["mlm_accuracy"]) == pytest.approx(accuracy)
    assert model(batch["input_ids"], predict=selected).shape == (int(selected.sum()), 8)
