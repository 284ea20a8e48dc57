"""SFT packing: several conversations per window compute exactly what each computes alone, and the
loss sees only the assistant's tokens."""

import torch

from lmforge.models.llama import LlamaConfig, Transformer
from lmforge.train.objectives.sft import SFT, pack, window_batch


def _examples():
    g = torch.Generator().manual_seed(0)
    out = []
    for n, trained_from in ((9, 5), (6, 3), (4, 1), (15, 10)):
        ids = torch.randint(5, 60, (n,), generator=g).tolist()
        out.append((ids, [i >= trained_from for i in range(n)]))
    return out


def test_conversations_are_packed_in_order_while_they_fit():
    assert pack([9, 6, 4, 15], 12) == [[0], [1, 2], [3]]
    assert pack([3, 3, 3, 3], 12) == [[0, 1, 2, 3]]
    assert pack([20, 2], 12) == [[0], [1]]         # an over-long example fills a window by itself


def test_a_packed_conversation_computes_what_it_computes_alone():
    torch.manual_seed(0)
    model = Transformer(LlamaConfig(preset="llama-mini", n_layer=2, d_model=64, n_head=4, vocab_size=64,
                                    max_seq_len=16, zero_init_out=False)).eval()
    examples = _examples()
    batch = window_batch(examples, [[1, 2]], 12, pad_id=0)      # 6 + 4 tokens, 2 of padding
    with torch.no_grad():
        packed = model(batch["input_ids"], position_ids=batch["position_ids"], mask=batch["attend"])[0]
        alone = [model(torch.tensor([examples[i][0]]))[0] for i in (1, 2)]
    torch.testing.assert_close(packed[:6], alone[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(packed[6:10], alone[1], rtol=0, atol=1e-5)
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 0, 0]


def test_labels_are_the_next_token_exactly_where_it_is_trained():
    examples = _examples()
    batch = window_batch(examples, [[1, 2]], 12, pad_id=0)
    labels = batch["labels"][0].tolist()
    ids1, mask1 = examples[1]
    ids2, mask2 = examples[2]
    expected = [ids1[t + 1] if mask1[t + 1] else -100 for t in range(5)] + [-100] + \
               [ids2[t + 1] if mask2[t + 1] else -100 for t in range(3)] + [-100, -100, -100]
    assert labels == expected
    # no position predicts across a conversation boundary or into padding
    assert labels[5] == -100 and labels[9:] == [-100, -100, -100]


def test_batches_are_reproducible_and_cover_every_window_each_pass():
    examples = _examples() * 6
    objective = SFT(examples, examples[:2], pad_id=0, seq_len=12)
    batches = objective.train_batches(None, 12, 2, seed=3)
    assert torch.equal(batches.get(4, 0)["input_ids"], batches.get(4, 0)["input_ids"])
    windows = pack([len(ids) for ids, _ in examples], 12)
    assert batches.n_items == len(windows)
    per_pass = len(windows) // 2
    seen = {tuple(batches.get(s, 0)["input_ids"][r].tolist()) for s in range(per_pass) for r in range(2)}
    assert len(seen) == len({tuple(window_batch(examples, [w], 12, 0)["input_ids"][0].tolist())
                             for w in windows})
    assert objective.truncated == 6                        # the 15-token example, six times
    model = Transformer(LlamaConfig(preset="tiny", vocab_size=64, max_seq_len=16))
    loss, _ = objective.loss(model, batches.get(0, 0))
    assert torch.isfinite(loss)


def test_an_over_long_conversation_keeps_its_answer():
    prompt, answer = list(range(10, 40)), [7, 8, 9]
    example = (prompt + answer, [False] * len(prompt) + [True] * len(answer))
    batch = window_batch([example], [[0]], 12, 0)
    assert batch["input_ids"][0].tolist() == (prompt + answer)[-12:]
    assert [t for t in batch["labels"][0].tolist() if t != -100] == answer
    nothing = (prompt, [False] * len(prompt))
    objective = SFT([nothing], [nothing], pad_id=0, seq_len=12)
    model = Transformer(LlamaConfig(preset="tiny", vocab_size=64, max_seq_len=16))
    loss, _ = objective.loss(model, window_batch([nothing], [[0]], 12, 0))
    assert float(loss.detach()) == 0.0            # no trained token: zero, not NaN


def test_the_packed_loss_is_the_loss_of_each_conversation_alone():
    import torch.nn.functional as F
    torch.manual_seed(0)
    model = Transformer(LlamaConfig(preset="llama-mini", n_layer=2, d_model=64, n_head=4, vocab_size=64,
                                    max_seq_len=16, zero_init_out=False)).eval()
    examples = _examples()
    objective = SFT(examples, examples, pad_id=0, seq_len=12)
    batch = window_batch(examples, [[1, 2]], 12, pad_id=0)
    with torch.no_grad():
        loss, _ = objective.loss(model, batch)
        logits, labels = [], []
        for i in (1, 2):
            ids, trained = examples[i]
            logits.append(model(torch.tensor([ids]))[0][:-1])
            labels += [t if keep else -100 for t, keep in zip(ids[1:], trained[1:])]
        expected = F.cross_entropy(torch.cat(logits), torch.tensor(labels), ignore_index=-100)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_example_objectives_hand_their_rank_and_window_to_the_batches():
    from lmforge.train.objectives import DPO, Classify
    examples = _examples()
    pairs = [(ids, mask, ids, mask) for ids, mask in examples]
    for objective in (SFT(examples, examples, pad_id=0, seq_len=12),
                      Classify([(ids, 1) for ids, _ in examples], [(ids, 0) for ids, _ in examples], pad_id=0, seq_len=12),
                      DPO(pairs, pairs, [[0.0, 0.0]] * 4, [[0.0, 0.0]] * 4, pad_id=0)):
        plain = objective.train_batches(None, 12, 2, seed=1)
        assert (plain.seq_len, plain.global_batch, plain.rank, plain.world) == (12, 2, 0, 1), objective.name
        ranked = objective.train_batches(None, 12, 2, seed=1, grad_accum=2, rank=1, world=2)
        assert (ranked.grad_accum, ranked.rank, ranked.world, ranked.global_batch) == (2, 1, 2, 8), objective.name
