"""The transformer: HF Llama interop, KV-cache consistency, and every architecture option."""

import pytest
import torch

from lmforge.models.llama import KVCache, LlamaConfig, Transformer


def _model(**kw):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, n_layer=2, n_head=4, d_model=64, max_seq_len=32, zero_init_out=False, **kw)
    return Transformer(cfg).eval()


def test_weights_load_into_hf_llama_and_give_identical_logits():
    transformers = pytest.importorskip("transformers")
    m = _model(mlp="swiglu", n_kv_head=2)
    cfg = m.cfg
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.ff_dim,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.kv_heads,
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps, rope_theta=cfg.rope_theta,
        tie_word_embeddings=False)
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    hf.load_state_dict(m.state_dict(), strict=True)     # same names, no permutation
    x = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        assert torch.allclose(hf(x).logits, m(x), atol=1e-5)


@pytest.mark.parametrize("kw", [dict(), dict(mlp="relu2", qk_norm=True, logit_softcap=15.0),
                                dict(norm="layernorm", positions="learned", mlp="gelu", tie_embeddings=True)])
def test_kv_cache_decoding_matches_full_forward(kw):
    m = _model(**kw)
    x = torch.randint(0, 97, (2, 12))
    with torch.no_grad():
        full = m(x)
        cache = KVCache(m.cfg, 2, 32)
        parts = [m(x[:, :5], cache=cache), m(x[:, 5:9], cache=cache)] + \
                [m(x[:, i:i + 1], cache=cache) for i in range(9, 12)]
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


def test_bidirectional_attends_both_ways_and_causal_does_not():
    x = torch.randint(0, 97, (1, 10))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 97          # change only the last token
    from lmforge.models.bert import BertConfig, BertEncoder
    causal = _model()
    bidir = BertEncoder(BertConfig(vocab_size=97, n_layer=2, n_head=4, d_model=64, max_seq_len=32)).eval()
    with torch.no_grad():
        assert torch.allclose(causal(x)[0, 0], causal(y)[0, 0])
        assert not torch.allclose(bidir(x)[0, 0], bidir(y)[0, 0])


def test_zero_init_output_projections_and_softcap():
    torch.manual_seed(0)
    m = Transformer(LlamaConfig(vocab_size=50, n_layer=1, n_head=2, d_model=32, logit_softcap=5.0))
    assert m.model.layers[0].self_attn.o_proj.weight.abs().sum() == 0
    assert m.model.layers[0].mlp.down_proj.weight.abs().sum() == 0
    m.lm_head.weight.data.mul_(1000)
    assert m(torch.randint(0, 50, (1, 4))).abs().max() <= 5.0


def test_every_preset_builds_on_meta_device():
    for name in LlamaConfig.PRESETS:
        cfg = LlamaConfig(preset=name, vocab_size=1000).resolved()
        cfg.validate()
        assert cfg.num_params() > 0


def test_learned_positions_refuse_sequences_beyond_context():
    m = _model(positions="learned")
    with pytest.raises(ValueError, match="exceeds the model's context of 32"):
        m(torch.zeros(1, 33, dtype=torch.long))


def test_muon_matches_torch_muon_update():
    # several matrices of two shapes (one tall): ours orthogonalises each shape as one batch
    from lmforge.train.muon import Muon
    torch.manual_seed(0)
    shapes = [(24, 16), (16, 40), (24, 16), (16, 40), (24, 16)]
    ours_w = [torch.nn.Parameter(torch.randn(*s)) for s in shapes]
    ref_w = [torch.nn.Parameter(w.detach().clone()) for w in ours_w]
    ours = Muon(ours_w, lr=0.02, weight_decay=0.1, ns_dtype=torch.bfloat16)
    ref = torch.optim.Muon(ref_w, lr=0.02, weight_decay=0.1, adjust_lr_fn="original")
    for _ in range(3):
        for a, b in zip(ours_w, ref_w):
            g = torch.randn_like(a)
            a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    for a, b in zip(ours_w, ref_w):
        assert torch.allclose(a, b, atol=1e-6)


def test_batched_newton_schulz_equals_one_matrix_at_a_time_in_fp32():
    from lmforge.train.muon import NS_COEFFICIENTS, orthogonalize
    a, b, c = NS_COEFFICIENTS

    def one(g):      # the iteration written out for a single matrix
        x = g.T if g.size(0) > g.size(1) else g
        x = x / x.norm()
        for _ in range(5):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
        return x.T if g.size(0) > g.size(1) else x
    torch.manual_seed(1)
    for shape in [(6, 64, 48), (3, 48, 96)]:
        g = torch.randn(*shape)
        batched = orthogonalize(g, 5, torch.float32)
        assert torch.allclose(batched, torch.stack([one(m) for m in g]), atol=1e-5)


def test_ngram_embeddings_see_exactly_the_last_n_tokens():
    from lmforge.models.llama.ngram import chunk_windows, sequence_windows
    m = _model(ngram_orders=[2, 4], ngram_buckets=10000, ngram_dim=8)   # bigrams exact, 4-grams hashed
    ngrams = m.model.embed_ngrams
    x = torch.randint(0, 97, (1, 12))
    y = x.clone()
    y[0, 3] = (x[0, 3] + 1) % 97      # inside the 4-token windows of positions 3..6 only
    with torch.no_grad():
        ex, ey = (ngrams(sequence_windows(t, 4, 97)) for t in (x, y))
        changed = (ex - ey).abs().amax(-1)[0] > 0
        assert changed.tolist() == [3 <= i <= 6 for i in range(12)]
        # the model's output at a position moves with its n-grams
        assert not torch.allclose(m(x)[0, 5], m(y)[0, 5])
    # the engine's windows for a chunk of a sequence are the training windows at those positions
    assert torch.equal(chunk_windows(x[0].tolist(), 2, 9, 4, 97), sequence_windows(x, 4, 97)[0, 2:9])
    # a KVCache keeps no tokens, so it cannot serve an n-gram model: refuse rather than mis-decode
    with pytest.raises(ValueError, match="predecessors"):
        m(x[:, :2], cache=KVCache(m.cfg, 1, 32))


def test_ngram_dropout_leaves_out_lookups_in_training_only_and_keeps_the_mean():
    m = _model(ngram_orders=[2, 3], ngram_buckets=10000, ngram_dim=8, ngram_dropout=0.5)
    ngrams = m.model.embed_ngrams
    from lmforge.models.llama.ngram import sequence_windows
    windows = sequence_windows(torch.randint(0, 97, (1, 6)), 3, 97)
    with torch.no_grad():
        full = ngrams(windows)
        assert torch.equal(ngrams(windows), full)           # evaluation: every lookup, no noise
        ngrams.train()
        draws = torch.stack([ngrams(windows) for _ in range(4000)])
    # each of a position's two lookups is dropped or scaled by 2: four possible sums, mean = full
    assert (draws - draws[0]).abs().amax() > 0
    assert torch.allclose(draws.mean(0), full, atol=0.05 * full.abs().max().item())


def test_ngram_embedding_gets_its_own_weight_decay_in_both_optimizers():
    from lmforge.train.config import TrainConfig
    from lmforge.train.optim import build_optimizers
    m = _model(ngram_orders=[2, 3], ngram_buckets=1000, ngram_dim=8)
    ngram_params = {id(p) for p in m.model.embed_ngrams.parameters()}
    for optimizer in ("muon", "adamw"):
        opts = build_optimizers(m, TrainConfig(optimizer=optimizer, weight_decay=0.1, ngram_weight_decay=3.0))
        groups = [g for o in opts for g in o.param_groups]
        decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
        assert len(decay_of) == sum(1 for _ in m.parameters())          # every parameter, once
        assert {decay_of[i] for i in ngram_params} == {3.0}
        assert all(w != 3.0 for i, w in decay_of.items() if i not in ngram_params)


@pytest.mark.parametrize("orders", [[1, 2], [2, 2], [9]])
def test_ngram_orders_are_validated(orders):
    with pytest.raises(ValueError, match="ngram_orders"):
        LlamaConfig(ngram_orders=orders).validate()


def test_relu_squared_backward_equals_autograd_of_the_plain_ops():
    from lmforge.models.llama.model import ReluSquared
    x = torch.randn(6, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ReluSquared.apply, (x,))
    g = torch.randn(6, 10, dtype=torch.float64)
    (ours,) = torch.autograd.grad(ReluSquared.apply(x), x, g)
    (plain,) = torch.autograd.grad(torch.nn.functional.relu(x).square(), x, g)
    assert torch.equal(ours, plain)


def test_every_norm_takes_the_fused_kernel_under_bf16_autocast():
    # a float32 norm weight against bf16 activations sends torch to its unfused, slower fallback
    # (it warns "Cannot dispatch to fused implementation"); qk-norm's per-head norms included
    import warnings
    model = _model(qk_norm=True).train()
    ids = torch.randint(0, 97, (2, 16))
    with warnings.catch_warnings(record=True) as caught, torch.autocast("cpu", dtype=torch.bfloat16):
        warnings.simplefilter("always")
        model(ids).float().sum().backward()
    assert not [w for w in caught if "fused" in str(w.message)], [str(w.message) for w in caught]
