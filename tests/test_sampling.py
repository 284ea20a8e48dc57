"""The sampler against references: Hugging Face's logits processors for top-k, top-p, min-p
and the repetition penalty, OpenAI's published formula for the frequency and presence
penalties, and the empirical distribution of many seeded draws."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                                                     TemperatureLogitsWarper, TopKLogitsWarper,
                                                     TopPLogitsWarper)

from lmforge.errors import UserError
from lmforge.infer.sampling import Penalties, SamplingParams, filter_logits, make_generator, sample_batch

V = 50


def random_logits(seed: int) -> torch.Tensor:
    return torch.randn(V, generator=torch.Generator().manual_seed(seed)) * 3


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.isfinite(logits).nonzero().flatten().tolist())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("params, warper", [
    (SamplingParams(top_k=7), TopKLogitsWarper(7)),
    (SamplingParams(top_p=0.6), TopPLogitsWarper(0.6)),
    (SamplingParams(top_p=0.95), TopPLogitsWarper(0.95)),
    (SamplingParams(min_p=0.1), MinPLogitsWarper(0.1)),
])
def test_filters_keep_the_same_tokens_as_hugging_face(seed, params, warper):
    logits = random_logits(seed)
    ours = filter_logits(logits, params)
    theirs = warper(torch.zeros(1, 1, dtype=torch.long), logits.unsqueeze(0).clone())[0]
    assert kept(ours) == kept(theirs)
    assert 0 < len(kept(ours)) < V           # the filter did something on these logits
    assert torch.equal(ours[list(kept(ours))], logits[list(kept(ours))])   # survivors are untouched


def test_filters_compose_in_order_k_then_p_then_min_p():
    logits = random_logits(11)
    p = SamplingParams(top_k=10, top_p=0.7, min_p=0.2)
    ids = torch.zeros(1, 1, dtype=torch.long)
    theirs = logits.unsqueeze(0).clone()
    for warper in (TopKLogitsWarper(10), TopPLogitsWarper(0.7), MinPLogitsWarper(0.2)):
        theirs = warper(ids, theirs)
    assert kept(filter_logits(logits, p)) == kept(theirs[0])


def test_top_p_keeps_the_smallest_set_that_reaches_it():
    # four equal tokens: exactly half the mass is two of them (a token whose predecessors already
    # hold top_p is dropped, as Hugging Face's warper drops it)
    assert len(kept(filter_logits(torch.zeros(4), SamplingParams(top_p=0.5)))) == 2
    assert len(kept(filter_logits(torch.zeros(4), SamplingParams(top_p=0.51)))) == 3


def test_default_settings_filter_nothing():
    logits = torch.tensor([30.0, 0.0, -5.0, -9.0])   # float32 mass rounds to 1 after the first token
    assert torch.equal(filter_logits(logits, SamplingParams()), logits)


@pytest.mark.parametrize("penalty", [1.7, 2.0])
def test_repetition_penalty_equals_hugging_face(penalty):
    logits, prompt = random_logits(3), [1, 4, 9, 9, 16]
    pen = Penalties(SamplingParams(repetition_penalty=penalty), V, prompt)
    pen.add(25)
    theirs = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([prompt + [25]]), logits.unsqueeze(0).clone())[0]
    assert torch.allclose(pen.apply(logits), theirs)
    assert not torch.allclose(pen.apply(logits), logits)


def test_frequency_and_presence_penalties_follow_openai_formula():
    # OpenAI: mu[j] - c[j] * frequency_penalty - (c[j] > 0) * presence_penalty, over completion tokens only
    logits = random_logits(4)
    pen = Penalties(SamplingParams(frequency_penalty=0.5, presence_penalty=0.25), V, prompt_ids=[2, 3])
    for t in (7, 7, 7, 8):
        pen.add(t)
    expected = logits.clone()
    expected[7] -= 3 * 0.5 + 0.25
    expected[8] -= 1 * 0.5 + 0.25
    assert torch.allclose(pen.apply(logits), expected)     # prompt tokens 2 and 3 are not penalised


def draws(logits: torch.Tensor, params: SamplingParams, n: int, penalties=None) -> list[int]:
    rows = logits.unsqueeze(0).expand(n, -1).contiguous()
    ps = [SamplingParams(**{**params.__dict__, "seed": i}) for i in range(n)]
    return sample_batch(rows, ps, [make_generator(i) for i in range(n)], [penalties] * n)


def test_sampled_frequencies_match_the_filtered_distribution():
    logits = random_logits(5)
    params = SamplingParams(temperature=0.8, top_p=0.9)
    n = 4000
    tokens = torch.tensor(draws(logits, params, n))
    filtered = filter_logits(logits / 0.8, params)
    probs = filtered.softmax(-1)
    assert set(tokens.tolist()) <= kept(filtered)            # nothing outside the nucleus is ever drawn
    freq = torch.bincount(tokens, minlength=V).float() / n
    assert (freq - probs).abs().max() < 4 * (0.25 / n) ** 0.5   # within four binomial standard errors


def test_tiny_top_p_or_full_min_p_leave_only_the_argmax():
    logits = random_logits(6)
    best = int(logits.argmax())
    for params in (SamplingParams(temperature=5.0, top_p=1e-6), SamplingParams(temperature=5.0, min_p=1.0),
                   SamplingParams(temperature=5.0, top_k=1)):
        assert set(draws(logits, params, 200)) == {best}
    assert len(set(draws(logits, SamplingParams(temperature=5.0), 200))) > 10   # unfiltered, it spreads


def test_penalties_and_logit_bias_change_the_greedy_choice():
    logits = torch.zeros(V)
    logits[3], logits[5] = 2.0, 1.0
    greedy = SamplingParams(temperature=0)
    assert sample_batch(logits.unsqueeze(0), [greedy], [make_generator(0)], [None]) == [3]
    pen = Penalties(SamplingParams(temperature=0, presence_penalty=1.5), V, prompt_ids=[])
    pen.add(3)
    assert sample_batch(logits.unsqueeze(0), [pen.params], [make_generator(0)], [pen]) == [5]
    rep = Penalties(SamplingParams(temperature=0, repetition_penalty=4.0), V, prompt_ids=[3])
    assert sample_batch(logits.unsqueeze(0), [rep.params], [make_generator(0)], [rep]) == [5]   # 2/4 < 1
    biased = SamplingParams(temperature=0, logit_bias=((7, 10.0),))
    assert sample_batch(logits.unsqueeze(0), [biased], [make_generator(0)], [None]) == [7]
    added = SamplingParams(temperature=0, logit_bias=((5, 1.5),))     # the bias adds to the logit: 2.5 > 2
    assert sample_batch(logits.unsqueeze(0), [added], [make_generator(0)], [None]) == [5]


def test_greedy_rows_with_a_seed_stay_greedy_beside_sampled_rows():
    logits = torch.randn(16, V, generator=torch.Generator().manual_seed(12)) * 0.1   # nearly flat: noise would show
    params = [SamplingParams(temperature=0, seed=i) for i in range(8)] + \
        [SamplingParams(temperature=2.0, seed=i) for i in range(8)]
    picks = sample_batch(logits, params, [make_generator(p.seed) for p in params], [None] * 16)
    assert picks[:8] == logits[:8].argmax(-1).tolist() and picks[8:] != logits[8:].argmax(-1).tolist()


def test_unseeded_sampling_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    sample_batch(torch.stack([random_logits(13)] * 3), [SamplingParams(temperature=1.0)] * 3,
                 [make_generator(None) for _ in range(3)], [None] * 3)
    assert torch.equal(torch.get_rng_state(), before)


def test_temperature_divides_the_logits_like_hugging_face():
    logits = random_logits(8)
    theirs = TemperatureLogitsWarper(0.5)(torch.zeros(1, 1, dtype=torch.long), logits.unsqueeze(0).clone())[0]
    n = 4000
    tokens = torch.tensor(draws(logits, SamplingParams(temperature=0.5), n))
    freq = torch.bincount(tokens, minlength=V).float() / n
    assert (freq - theirs.softmax(-1)).abs().max() < 4 * (0.25 / n) ** 0.5
    assert (freq - logits.softmax(-1)).abs().max() > 0.05    # and differs from temperature 1


def test_seeded_rows_do_not_depend_on_their_neighbours():
    logits = torch.stack([random_logits(9), random_logits(10)])
    seeded = SamplingParams(temperature=1.0, seed=42)
    alone = sample_batch(logits[:1], [seeded], [make_generator(42)], [None])
    together = sample_batch(logits, [seeded, SamplingParams(temperature=1.0)],
                            [make_generator(42), make_generator(None)], [None, None])
    assert together[0] == alone[0]
    # two seeded rows: each draws from its own generator, the second one too
    rows = torch.stack([random_logits(20 + i) * 0.1 for i in range(2)])
    pair, single = [], []
    for a, b in [(42 + k, 7 + k) for k in range(10)]:
        seeds = [SamplingParams(temperature=1.0, seed=a), SamplingParams(temperature=1.0, seed=b)]
        pair.append(sample_batch(rows, seeds, [make_generator(a), make_generator(b)], [None, None])[1])
        single.append(sample_batch(rows[1:], seeds[1:], [make_generator(b)], [None])[0])
    assert pair == single


@pytest.mark.parametrize("field, value, message", [
    ("top_p", 0.0, "top_p must be in \\(0, 1\\]"), ("top_p", 1.5, "top_p"), ("min_p", -0.1, "min_p"),
    ("min_p", 1.5, "min_p must be in \\[0, 1\\]"), ("frequency_penalty", -2.5, "frequency_penalty"),
    ("presence_penalty", 2.5, "presence_penalty must be in \\[-2, 2\\]"),
    ("temperature", -1.0, "temperature"), ("top_k", -1, "top_k"), ("repetition_penalty", 0.0, "repetition"),
    ("frequency_penalty", 2.5, "frequency_penalty"), ("presence_penalty", -3.0, "presence_penalty"),
    ("top_logprobs", 21, "top_logprobs"), ("max_tokens", -1, "max_tokens"),
])
def test_out_of_range_settings_are_refused(field, value, message):
    with pytest.raises(UserError, match=message):
        SamplingParams(**{field: value}).validate()


def test_the_edges_of_every_range_are_allowed():
    for edge in (dict(max_tokens=0), dict(temperature=0.0), dict(top_k=0), dict(top_p=1.0), dict(top_p=1e-9),
                 dict(min_p=0.0), dict(min_p=1.0), dict(repetition_penalty=1e-3), dict(frequency_penalty=-2.0),
                 dict(frequency_penalty=2.0), dict(presence_penalty=-2.0), dict(presence_penalty=2.0),
                 dict(top_logprobs=0), dict(top_logprobs=20), dict(stop=("a", "\n\n"))):
        SamplingParams(**edge).validate()
    with pytest.raises(UserError, match="^stop strings must be non-empty strings$"):
        SamplingParams(stop=("",)).validate()
