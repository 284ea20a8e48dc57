"""Engine correctness: greedy decoding, batching, sampling, stop strings, logprobs, limits."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from lmforge.errors import UserError
from lmforge.infer.engine import Engine
from lmforge.infer.tiny import make_tiny_run
from lmforge.models.io import load_model

GREEDY = dict(temperature=0, ignore_eos=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def engine(run):
    e = Engine.from_run(run, max_batch=4, prefill_chunk=16)
    e.reference_run = run
    yield e
    e.close()


_reference = {}


def full_forward_logits(engine, ids):
    """Logits of the whole sequence from an independently loaded copy of the model, no cache."""
    run = engine.reference_run
    if run not in _reference:
        _reference[run] = load_model(run)
    with torch.inference_mode():
        return _reference[run](torch.tensor([ids]))[0].float()


def test_greedy_matches_full_recomputation(engine):
    prompt = engine.encode("The json module")
    result = engine.generate(prompt, max_tokens=24, **GREEDY)
    assert result.completion_tokens == 24 and result.finish_reason == "length"
    seq = list(prompt)
    for tid in result.token_ids:
        assert int(full_forward_logits(engine, seq)[-1].argmax()) == tid
        seq.append(tid)


def test_repetition_penalty_matches_hugging_face_step_by_step(engine):
    """Greedy with a repetition penalty: every token equals the argmax of the full recomputation
    after Hugging Face's processor."""
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor
    prompt = list(range(3, 100))   # many distinct tokens seen, so the penalty has work to do
    penalised = engine.generate(prompt, max_tokens=16, repetition_penalty=1.8, **GREEDY).token_ids
    seq, changed = list(prompt), 0
    for tid in penalised:
        raw = full_forward_logits(engine, seq)[-1:]
        logits = RepetitionPenaltyLogitsProcessor(1.8)(torch.tensor([seq]), raw.clone())
        assert int(logits.argmax()) == tid
        changed += int(raw.argmax()) != tid
        seq.append(tid)
    assert changed > 0     # the penalty did decide some of these tokens


def test_filters_reach_the_engine(engine):
    """top_p, min_p and top_k small enough to leave one token make hot sampling greedy."""
    prompt = engine.encode("The json module")
    greedy = engine.generate(prompt, max_tokens=12, **GREEDY).token_ids
    hot = dict(max_tokens=12, temperature=3.0, ignore_eos=True, seed=1)
    for narrow in (dict(top_p=1e-6), dict(min_p=1.0), dict(top_k=1)):
        assert engine.generate(prompt, **hot, **narrow).token_ids == greedy, narrow
    assert engine.generate(prompt, **hot).token_ids != greedy


def test_chunked_prefill_matches_single_pass(run, engine):
    prompt = engine.encode("A long prompt, " * 12)[:80]   # five 16-token chunks
    assert len(prompt) > 40
    whole = Engine.from_run(run, prefill_chunk=1024)
    try:
        # logprobs, not just greedy tokens: a random model's argmax barely reacts to a wrong cache
        kw = dict(max_tokens=12, logprobs=True, top_logprobs=5, **GREEDY)
        a, b = whole.generate(prompt, **kw), engine.generate(prompt, **kw)
        assert a.token_ids == b.token_ids
        for x, y in zip(a.logprobs, b.logprobs):
            assert [v for _, v in x.top] == pytest.approx([v for _, v in y.top], abs=1e-4)
        seq = list(prompt)   # and both equal the uncached forward pass
        for lp in b.logprobs:
            ref = torch.log_softmax(full_forward_logits(engine, seq)[-1], -1)
            assert lp.logprob == pytest.approx(float(ref[lp.token_id]), abs=1e-4)
            seq.append(lp.token_id)
    finally:
        whole.close()


def test_concurrent_requests_match_sequential(engine):
    prompts = ["Hello there", "pathlib offers classes", "Threads are", "collections", "naïve café", "x"]
    options = [dict(GREEDY), dict(temperature=0.9, seed=5, ignore_eos=True), dict(GREEDY, stop=["e"])]
    jobs = [(p, options[i % 3], 8 + 3 * i) for i, p in enumerate(prompts)]
    expected = [engine.generate(p, max_tokens=n, **o) for p, o, n in jobs]
    results = [None] * len(jobs)

    def work(i):
        p, o, n = jobs[i]
        results[i] = engine.generate(p, max_tokens=n, **o)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for got, want in zip(results, expected):
        assert got.token_ids == want.token_ids and got.text == want.text
    assert engine.scheduler.occupancy == 0


def test_seed_reproducible_and_sampling_options(engine):
    kw = dict(max_tokens=20, temperature=1.2, top_k=50, top_p=0.9, min_p=0.02, repetition_penalty=1.3,
              frequency_penalty=0.5, presence_penalty=0.3, ignore_eos=True)
    a = engine.generate("Seeded", seed=123, **kw)
    b = engine.generate("Seeded", seed=123, **kw)
    c = engine.generate("Seeded", seed=124, **kw)
    assert a.token_ids == b.token_ids and a.token_ids != c.token_ids


def test_stop_string_spanning_tokens(engine):
    full = engine.generate("Stop strings", max_tokens=30, **GREEDY)
    pieces = [engine.decode([t]) for t in full.token_ids]
    # a stop string made of the end of one token and the start of the next
    i = next(i for i in range(3, len(pieces) - 1) if pieces[i] and pieces[i + 1])
    stop = pieces[i][-1] + pieces[i + 1][0]
    cut = full.text.find(stop)
    result = engine.generate("Stop strings", max_tokens=30, stop=[stop], **GREEDY)
    assert result.finish_reason == "stop" and result.text == full.text[:cut]
    streamed = "".join(engine.stream("Stop strings", max_tokens=30, stop=[stop], **GREEDY))
    assert streamed == result.text


def test_stream_is_utf8_safe_and_equals_generate(engine):
    kw = dict(max_tokens=40, temperature=1.0, seed=3, ignore_eos=True)
    pieces = list(engine.stream("日本語 🙂", **kw))
    assert "".join(pieces) == engine.generate("日本語 🙂", **kw).text
    prompt = engine.encode("emoji 🙂🚀 Ελληνικά")
    from lmforge.infer.detokenize import IncrementalDecoder
    dec = IncrementalDecoder(engine.tokenizer)
    out = [dec.push(t) for t in prompt]
    assert all("\ufffd" not in piece for piece in out)
    assert "".join(out) + dec.flush() == engine.decode(prompt)


def test_logprobs_equal_log_softmax(engine):
    prompt = engine.encode("Log probabilities")
    result = engine.generate(prompt, max_tokens=6, temperature=0.7, seed=1, logprobs=True,
                             top_logprobs=3, ignore_eos=True)
    seq = list(prompt)
    for lp in result.logprobs:
        ref = torch.log_softmax(full_forward_logits(engine, seq)[-1], -1)
        assert lp.logprob == pytest.approx(float(ref[lp.token_id]), abs=1e-4)
        assert [v for _, v in lp.top] == pytest.approx(ref.topk(3).values.tolist(), abs=1e-4)
        seq.append(lp.token_id)


def test_prompt_logprobs_and_echo(engine):
    prompt = engine.encode("Echo the prompt and score every token of it, " * 3)[:100]
    ref = torch.log_softmax(full_forward_logits(engine, prompt), -1)
    want = [float(ref[i, prompt[i + 1]]) for i in range(len(prompt) - 1)]
    got = engine.prompt_logprobs(prompt)
    assert got[0] is None and got[1:] == pytest.approx(want, abs=1e-4)
    echoed = engine.generate("Echo me", max_tokens=0, echo=True)
    assert echoed.text == "Echo me" and echoed.completion_tokens == 0


def test_context_limits(engine):
    ctx = engine.context
    with pytest.raises(UserError, match=f"prompt is {ctx + 1} tokens; the model's context is {ctx}"):
        engine.generate([5] * (ctx + 1))
    result = engine.generate([5] * (ctx - 3), max_tokens=50, **GREEDY)
    assert result.finish_reason == "length" and result.completion_tokens == 3
    with pytest.raises(UserError, match="max_tokens"):
        engine.generate("x", max_tokens=-1)
    with pytest.raises(UserError, match="unknown generation option"):
        engine.generate("x", temprature=1)


def test_closing_a_stream_cancels_the_request(engine):
    it = engine.stream("Cancel me", max_tokens=100, **GREEDY)
    next(it)
    it.close()
    deadline = time.time() + 10
    while engine.scheduler.occupancy and time.time() < deadline:   # dropped at the next step
        time.sleep(0.01)
    assert engine.scheduler.occupancy == 0
    assert engine.generate("after", max_tokens=2).completion_tokens >= 1


def test_chat_uses_template(engine):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    ids = engine.apply_chat_template(msgs)
    text = engine.decode(ids, skip_special_tokens=False)
    assert text == "<|bos|><|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"
    assert engine.chat(msgs, max_tokens=5, **GREEDY).prompt_tokens == len(ids)
    with pytest.raises(UserError, match="messages"):
        engine.chat([{"role": "wizard", "content": "x"}])


def test_long_prompt_does_not_stall_running_requests(run):
    from lmforge.infer.request import Delta
    from lmforge.infer.sampling import SamplingParams
    engine = Engine.from_run(run, prefill_chunk=8)
    order, done = [], threading.Event()

    def sink(name):
        def put(event):
            if isinstance(event, Delta):
                order.append(name)
            elif name == "long":
                done.set()
        return put
    try:
        engine.submit("short", SamplingParams(max_tokens=30, temperature=0, ignore_eos=True), sink("short"))
        engine.submit([7] * 100, SamplingParams(max_tokens=1, temperature=0, ignore_eos=True), sink("long"))
        assert done.wait(30)
        # the 100-token prompt needs 13 chunks of 8; the short request decodes during them
        assert order.index("long") >= 10
    finally:
        engine.close()


VARIANTS = {
    "gpt2": dict(preset="gpt2-char", bias=True),            # learned positions, LayerNorm, GELU, tied head
    "modern": dict(preset="tiny", logit_softcap=15.0),      # ReLU², QK-norm, soft-capped logits
    "gqa": dict(preset="llama-mini", n_layer=2, d_model=64, n_head=4, n_kv_head=2),
    "ngram": dict(preset="tiny", ngram_orders=[2, 3], ngram_buckets=257, ngram_dim=8),  # hashed n-gram inputs
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_decode_matches_model_for_every_architecture(engine, variant):
    import copy
    from lmforge.infer.request import Delta, Done
    from lmforge.infer.sampling import SamplingParams
    from lmforge.models.llama import LlamaConfig, Transformer
    torch.manual_seed(0)
    cfg = LlamaConfig(**VARIANTS[variant], vocab_size=engine.vocab_size, zero_init_out=False).resolved()
    model = Transformer(cfg).eval()
    reference = copy.deepcopy(model)
    e = Engine(model, engine.tokenizer, max_batch=2)
    decoder = e.scheduler.decoder
    mixed = []     # the second prompt is prefilled in the same pass as the first one's decode steps
    decode_and_prefill = decoder.decode_and_prefill
    decoder.decode_and_prefill = lambda *args: mixed.append(1) or decode_and_prefill(*args)
    try:
        prompts = [[5, 17, 99], [42] * 7]
        results, finished = [None, None], [threading.Event(), threading.Event()]

        def sink(i):
            deltas = []

            def put(event):
                if isinstance(event, Delta):
                    deltas.append(event)
                    if i == 0 and len(deltas) == 3:   # the first request is decoding: send the second
                        e.submit(prompts[1], SamplingParams(max_tokens=20, **GREEDY), sink(1))
                elif isinstance(event, Done):
                    results[i] = event.result
                    finished[i].set()
            return put
        e.submit(prompts[0], SamplingParams(max_tokens=40, **GREEDY), sink(0))
        assert finished[0].wait(60) and finished[1].wait(60)
        assert mixed, "the second request was never prefilled alongside a decode step"
        for prompt, result in zip(prompts, results):
            seq = list(prompt)
            with torch.inference_mode():
                for tid in result.token_ids:
                    assert int(reference(torch.tensor([seq]))[0, -1].argmax()) == tid
                    seq.append(tid)
    finally:
        e.close()


@pytest.mark.parametrize("variant", VARIANTS)
def test_single_row_decode_on_two_threads_equals_one_thread(engine, variant):
    # one sequence's products are split over two threads (by output rows); every logit must be
    # bit-identical to the one-thread product, or greedy output would depend on the thread count
    from lmforge.models.llama import LlamaConfig, Transformer
    from lmforge.models.llama.decode import FusedDecoder
    torch.manual_seed(0)
    cfg = LlamaConfig(**VARIANTS[variant], vocab_size=engine.vocab_size, zero_init_out=False).resolved()
    decoder = FusedDecoder(Transformer(cfg).eval())
    threads = torch.get_num_threads()
    logits = {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            cache = decoder.make_cache(1)
            seq = [5, 17, 99, 42, 7, 300]
            with torch.inference_mode():
                decoder.prefill(decoder.inputs(seq, 0, 3), 0, cache)
                cache.move(cache.prefill_row, 0, 3)
                logits[n] = [decoder.decode(decoder.inputs(seq, p, p + 1), [p], cache)
                             for p in range(3, len(seq))]
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(logits[1], logits[2]):
        assert torch.equal(one, two)


def test_ngram_model_round_trips_through_a_checkpoint_into_the_engine(tmp_path):
    from safetensors.torch import load_file
    from lmforge.models.llama import LlamaConfig, Transformer
    run = make_tiny_run(tmp_path, LlamaConfig(preset="tiny", ngram_orders=[2, 3], ngram_buckets=1021, ngram_dim=8))
    loaded = load_model(run)
    # a reference built the ordinary way (not on the meta device) from the very same tensors
    reference = Transformer(loaded.cfg).eval()
    reference.load_state_dict(load_file(str(run / "checkpoints" / "step-000000" / "model.safetensors")))
    e = Engine.from_run(run)
    try:
        prompt = e.encode("hashed n-grams")
        result = e.generate(prompt, max_tokens=10, **GREEDY)
        seq = list(prompt)
        with torch.inference_mode():
            assert torch.equal(loaded(torch.tensor([seq])), reference(torch.tensor([seq])))
            for tid in result.token_ids:
                assert int(reference(torch.tensor([seq]))[0, -1].argmax()) == tid
                seq.append(tid)
    finally:
        e.close()
