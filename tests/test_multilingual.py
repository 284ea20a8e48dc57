"""Multilingual runs: declared languages, temperature sampling of languages (p ∝ n^alpha), the
tokenizer's balanced mix, the token shards' language runs, per-language bits per byte, and
cross-lingual retrieval."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SHARED_DATA, lmforge, tiny_corpus_dir
from lmforge.data.language_mix import (LanguageMix, LanguageSegments, language_weights, read_languages,
                                       repeat_rates, resample)
from lmforge.errors import UserError
from lmforge.eval.retrieval import recall_at_k
from lmforge.train.batches import TokenBatches

GERMAN = "der die das und ist nicht ein eine Haus Hund Katze Stadt Wasser heute morgen schnell groß klein".split()
RUSSIAN = "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой".split()


def test_language_weights_follow_the_temperature():
    sizes = {"en": 900, "de": 100}
    assert language_weights(sizes, 1.0) == pytest.approx({"en": 0.9, "de": 0.1})
    assert language_weights(sizes, 0.0) == pytest.approx({"en": 0.5, "de": 0.5})
    # alpha = 0.5: 30 : 10
    assert language_weights(sizes, 0.5) == pytest.approx({"en": 0.75, "de": 0.25})
    assert language_weights({"en": 5, "xx": 0}, 0.3) == {"en": 1.0}      # a language without data is not drawn
    assert language_weights({"en": 5, "de": 1}, 1.0) == pytest.approx({"en": 5 / 6, "de": 1 / 6})


def test_repeat_rates_keep_the_text_size_and_give_the_sampled_mix():
    sizes = {"en": 9000.0, "de": 1000.0}
    rates = repeat_rates(sizes, 0.5)
    assert sum(sizes[k] * r for k, r in rates.items()) == pytest.approx(sum(sizes.values()))
    assert rates["en"] * 9000 / 10000 == pytest.approx(0.75) and rates["de"] * 1000 / 10000 == pytest.approx(0.25)
    docs = [("en", i) for i in range(900)] + [("de", i) for i in range(100)]
    copies = Counter(resample(docs, lambda d: d[0], rates, seed=3))
    # rate 2.5: every German document twice, a third time with probability 1/2; English 0.83: once or never
    assert {copies[d] for d in docs[900:]} == {2, 3} and {copies[d] for d in docs[:900]} == {0, 1}
    used = Counter()
    for (lang, _), n in copies.items():
        used[lang] += n
    assert used["de"] == pytest.approx(250, abs=4 * math.sqrt(100 * 0.25))
    assert used["en"] == pytest.approx(750, abs=4 * math.sqrt(900 * 0.83 * 0.17))
    assert Counter(resample(docs, lambda d: d[0], rates, seed=3)) == copies      # seeded: the same every time
    assert list(resample([("ja", 1), ("ja", 2)], lambda d: d[0], rates, seed=3)) == [("ja", 1), ("ja", 2)]


def test_windows_sample_each_language_as_often_as_alpha_says():
    runs = [("en", 0, 60_000), ("de", 60_000, 66_000), ("en", 66_000, 90_000), ("ja", 90_000, 91_000)]
    tokens = np.zeros(91_000, dtype=np.uint16)
    seq_len = 32
    mix = LanguageMix(LanguageSegments(runs), 0.3, len(tokens), seq_len)
    # the last full window starts at 91000 - 33: ja keeps 1000 - 33 start positions
    sizes = {"en": 84_000, "de": 6_000, "ja": 1_000 - seq_len - 1}
    expected = {k: v ** 0.3 for k, v in sizes.items()}
    expected = {k: v / sum(expected.values()) for k, v in expected.items()}
    assert mix.weights == pytest.approx(expected)

    batches = TokenBatches(tokens, seq_len, batch_size=50, seed=11, mix=mix)
    seen = Counter()
    n = 0
    for step in range(200):
        gen = torch.Generator().manual_seed(batches.seed * 1_000_003 + step)
        for start in mix.starts(batches.global_batch, gen):
            lang = next(lang for lang, a, b in runs if a <= start < b)
            seen[lang] += 1
            n += 1
            assert start + seq_len + 1 <= len(tokens)
    for lang, p in expected.items():
        assert seen[lang] / n == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n))
    # the batch is a pure function of the step: resume sees the same windows
    first = batches.get(7, 0)["input_ids"]
    torch.manual_seed(1234)                                # torch's global generator plays no part
    assert torch.equal(first, batches.get(7, 0)["input_ids"])
    assert mix.alpha == 0.3


def test_window_starts_cover_each_run_of_a_language_and_nothing_else():
    seq_len = 8
    # ja: two runs with one start position each; de: a run that begins where no window fits any more
    runs = [("en", 0, 500), ("ja", 500, 501), ("en", 501, 900), ("ja", 900, 901), ("en", 901, 1000),
            ("de", 1000 - seq_len - 1, 1000)]
    mix = LanguageMix(LanguageSegments(runs), 0.0, 1000, seq_len)
    assert set(mix.weights) == {"en", "ja"}
    starts = mix.starts(4000, torch.Generator().manual_seed(5))
    ja = [s for s in starts if s in (500, 900)]
    assert len(ja) == pytest.approx(2000, abs=4 * 1000 ** 0.5) and set(ja) == {500, 900}
    en = [s for s in starts if s not in (500, 900)]
    assert all(0 <= s < 500 or 501 <= s < 900 or 901 <= s < 1000 - seq_len - 1 for s in en)
    assert len(set(en)) > 700 and abs(np.mean(en) - 495) < 30         # spread over all of English


def test_uniform_alpha_draws_a_small_language_as_often_as_a_large_one():
    runs = [("en", 0, 50_000), ("de", 50_000, 51_000)]
    mix = LanguageMix(LanguageSegments(runs), 0.0, 60_000, 16)
    gen = torch.Generator().manual_seed(0)
    starts = mix.starts(4000, gen)
    share = sum(s >= 50_000 for s in starts) / len(starts)
    assert share == pytest.approx(0.5, abs=4 * math.sqrt(0.25 / 4000))


def _write_corpus(root: Path) -> dict[str, Path]:
    rng = random.Random(5)
    english = [line for text in (p.read_text() for p in sorted(tiny_corpus_dir(root).iterdir())[:25])
               for line in text.splitlines() if len(line.split()) >= 4][:600]
    files = {"en": root / "en.txt", "de": root / "de.txt", "ru": root / "ru.txt"}
    files["en"].write_text("\n".join(english) + "\n")
    files["de"].write_text("\n\n".join(" ".join(rng.choices(GERMAN, k=rng.randint(5, 12))) + "."
                                       for _ in range(150)) + "\n")
    files["ru"].write_text("\n".join(" ".join(rng.choices(RUSSIAN, k=rng.randint(5, 12))) + "."
                                     for _ in range(80)) + "\n")
    return files


def _recipe(root: Path, files: dict[str, Path], alpha: float) -> Path:
    sources = ", ".join(f'{{ kind = "files", name = "{lang}", path = "{path}", lines = true, language = "{lang}" }}'
                        for lang, path in files.items())
    text = f"""name = "multi"
seed = 3
[data]
sources = [{sources}]
steps = ["normalize", "langid"]
language_alpha = {alpha}
[data.langid]
allow = ["en", "de", "ru"]
[tokenizer]
kind = "bpe"
vocab_size = 400
val_fraction = 0.1
[model]
preset = "tiny"
max_seq_len = 64
[train]
batch_size = 8
seq_len = 64
max_steps = 6
eval_every = 6
eval_batches = 1
checkpoint_every = 6
warmup_steps = 2
dtype = "float32"
[eval]
samples = 0
"""
    path = root / "multi.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("multi")
    out = root / "run"
    result = lmforge("run", str(_recipe(root, _write_corpus(root), 0.5)), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_documents_keep_their_sources_language_and_the_shards_record_where_each_lies(multi_run):
    from lmforge.tokenizer.load import load_tokenizer, special_ids
    from lmforge.tokenizer.shards import validation_indices
    docs = [json.loads(line) for line in (multi_run / "data" / "documents.jsonl").open()]
    # declared languages survive the langid step, even for the synthetic German and Russian lines
    assert Counter(d["language"] for d in docs) == {"en": 600, "de": 150, "ru": 80}
    assert all("language_score" not in d for d in docs)
    assert docs[0]["path"].endswith("en.txt:1")

    meta = json.loads((multi_run / "tokens" / "meta.json").read_text())
    languages = read_languages(multi_run / "tokens")
    counts = languages["counts"]
    for split in ("train", "val"):
        for what in ("tokens", "docs", "bytes"):
            assert sum(c[f"{split}_{what}"] for c in counts.values()) == meta[f"{split}_{what}"]
    # the validation stream of each language is its validation documents, encoded, in order
    tok = load_tokenizer(multi_run / "tokenizer")
    ids = special_ids(tok)
    val = np.fromfile(multi_run / "tokens" / "val.bin", dtype=np.uint16)
    is_val = set(validation_indices(len(docs), 0.1, 3).tolist())
    for lang in ("en", "de", "ru"):
        expected = [t for i, d in enumerate(docs) if i in is_val and d["language"] == lang
                    for t in [ids["bos"], *tok.encode(d["text"], add_special_tokens=False).ids, ids["eos"]]]
        assert languages["val"].stream(val, lang).tolist() == expected
    train_runs = languages["train"].runs
    assert train_runs[0][1] == 0 and train_runs[-1][2] == meta["train_tokens"]
    assert all(a[2] == b[1] for a, b in zip(train_runs, train_runs[1:]))      # contiguous, no gaps


def test_training_and_evaluation_report_each_language(multi_run):
    from lmforge.models.io import load_model
    manifest = json.loads((multi_run / "manifest.json").read_text())
    counts = read_languages(multi_run / "tokens")["counts"]
    expected = language_weights({k: c["train_tokens"] for k, c in counts.items()}, 0.5)
    assert manifest["stages"]["train"]["language_weights"] == pytest.approx(expected, abs=0.02)

    result = json.loads((multi_run / "eval" / "pretrain.json").read_text())
    table = result["languages"]
    assert table["language_alpha"] == 0.5 and set(table["by_language"]) == {"de", "en", "ru"}
    # bits per byte = the language's validation stream scored by a plain forward pass / (ln 2 x its bytes)
    model = load_model(multi_run).eval()
    val = np.fromfile(multi_run / "tokens" / "val.bin", dtype=np.uint16).astype(np.int64)
    languages = read_languages(multi_run / "tokens")
    bpb = {}
    for lang, row in table["by_language"].items():
        stream = torch.from_numpy(languages["val"].stream(val, lang))
        nll = 0.0
        with torch.no_grad():
            for s in range(0, len(stream) - 1, 64):
                x, y = stream[s:s + 64], stream[s + 1:s + 65]
                nll += float(F.cross_entropy(model(x[None, :len(y)])[0].float(), y, reduction="sum"))
        bpb[lang] = nll / math.log(2) / counts[lang]["val_bytes"]
        assert row["bits_per_byte"] == pytest.approx(bpb[lang], rel=1e-3)
        c = counts[lang]
        ordinary = c["train_tokens"] + c["val_tokens"] - 2 * (c["train_docs"] + c["val_docs"])
        assert row["bytes_per_token"] == pytest.approx((c["train_bytes"] + c["val_bytes"]) / ordinary, abs=1e-4)
        assert row["sampled_share"] == pytest.approx(expected[lang], abs=1e-4)
    assert table["bits_per_byte_spread"] == pytest.approx(max(bpb.values()) - min(bpb.values()), abs=2e-3)
    card = (multi_run / "model_card.md").read_text()
    assert "### By language" in card and "p ∝ n^0.5" in card
    row = next(line for line in card.splitlines() if line.startswith("| ru |"))
    assert f"| {table['by_language']['ru']['bits_per_byte']} |" in row
    assert "By language" in (multi_run / "report.html").read_text()


def test_the_tokenizer_trains_on_the_sampled_mix(tmp_path):
    from lmforge.tokenizer.train import iter_texts
    docs = tmp_path / "documents.jsonl"
    rows = [{"text": "english text " * 9, "language": "en"}] * 90 + [{"text": "deutscher text " * 9, "language": "de"}] * 10
    docs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proportional = Counter(t.split()[0] for t in iter_texts(docs))
    assert proportional == {"english": 90, "deutscher": 10}
    balanced = Counter(t.split()[0] for t in iter_texts(docs, alpha=0.0, seed=1))
    # the same amount of text, half of it German (the documents are of nearly equal length)
    assert balanced["deutscher"] == pytest.approx(balanced["english"] * 117 / 126, abs=6)


def test_recall_counts_how_often_the_translation_ranks_within_k():
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=-1)
    c = F.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.0], [1.0, 1.2]]), dim=-1)
    # q0 ranks c1, c0, c2 (its own c0 second); q1 ranks c2, c0, c1 (c1 third); q2 ranks c2 first
    assert recall_at_k(q, c, ks=(1, 2, 3)) == pytest.approx({1: 1 / 3, 2: 2 / 3, 3: 1.0})
    assert recall_at_k(c, c, ks=(1,)) == {1: 1.0}


def test_the_retrieval_task_scores_an_encoder_in_both_directions(tmp_path):
    from lmforge.eval.backends import LmforgeLM
    from lmforge.eval.harness import embedding_function, run_tasks
    from lmforge.models.bert.config import BertConfig
    from lmforge.models.io import save_weights
    from lmforge.models.registry import build_model
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import train_tokenizer
    lines = {"en": [f"a dog number {i} runs" for i in range(30)], "de": [f"ein Hund Nummer {i} rennt" for i in range(30)]}
    for lang, text in lines.items():
        (tmp_path / f"s.{lang}").write_text("\n".join(text) + "\n")
    task = tmp_path / "t.toml"
    task.write_text('kind = "retrieval"\n[data]\npath = "s.en"\nlanguage = "en"\naligned = { de = "s.de" }\n')
    docs = tmp_path / "documents.jsonl"
    docs.write_text("".join(json.dumps({"text": t}) + "\n" for ls in lines.values() for t in ls))
    model_dir = tmp_path / "enc"
    tok = train_tokenizer(TokenizerConfig(kind="wordpiece", vocab_size=200), docs, model_dir / "tokenizer")
    torch.manual_seed(0)
    cfg = BertConfig(n_layer=1, n_head=2, d_model=32, max_seq_len=32, vocab_size=tok.get_vocab_size())
    save_weights(build_model(cfg).state_dict(), cfg, model_dir)

    result = run_tasks([model_dir], [str(task)], out_dir=tmp_path / "out")["results"]["enc"]["t"]
    m = result["metrics"]
    assert set(m) == {"en->de recall@1", "en->de recall@5", "de->en recall@1", "de->en recall@5",
                      "chance recall@1", "chance recall@5"}
    assert m["chance recall@1"]["value"] == pytest.approx(1 / 30, abs=1e-4)
    assert m["chance recall@5"]["value"] == pytest.approx(5 / 30, abs=1e-4)
    embed = embedding_function(LmforgeLM(model_dir))
    en, de = embed(lines["en"]), embed(lines["de"])
    assert m["de->en recall@1"]["value"] == pytest.approx(recall_at_k(de, en)[1], abs=1e-4)
    assert m["en->de recall@5"]["value"] == pytest.approx(recall_at_k(en, de)[5], abs=1e-4)
    # the numbers in the sentences are shared tokens: retrieval beats chance even untrained
    assert m["en->de recall@5"]["value"] > 5 / 30
    assert m["de->en recall@1"]["value"] == round(recall_at_k(de, en)[1], 4)
    samples = [json.loads(x) for x in (tmp_path / "out" / "enc" / "t.samples.jsonl").open()]
    assert len(samples) == 20 and set(samples[0]) == {"query", "language", "nearest", "translation", "found"}
    assert samples[0]["query"] == lines["en"][0] and samples[0]["translation"] == lines["de"][0]
    assert all(s["language"] == "de" and s["found"] == (s["nearest"] == s["translation"]) for s in samples)


def test_misaligned_retrieval_files_name_both(tmp_path):
    from lmforge.eval.datasets import read_aligned
    from lmforge.eval.tasks import load_task
    (tmp_path / "s.en").write_text("a\nb\nc\n")
    (tmp_path / "s.de").write_text("a\nb\n")
    (tmp_path / "t.toml").write_text('kind = "retrieval"\n[data]\npath = "s.en"\nlanguage = "en"\naligned = { de = "s.de" }\n')
    with pytest.raises(UserError, match=r"s.en 3 lines, s.de 2 lines"):
        read_aligned(load_task(str(tmp_path / "t.toml")))
    (tmp_path / "u.toml").write_text('kind = "retrieval"\n[data]\npath = "s.en"\n')
    with pytest.raises(UserError, match="needs \\[data\\] language and aligned"):
        load_task(str(tmp_path / "u.toml"))


@pytest.mark.parametrize("setting, message", [
    ("data.language_alpha=1.5", "data: language_alpha: got 1.5, allowed 0..1"),
    ("data.language_alpha=-0.1", "data: language_alpha: got -0.1, allowed 0..1"),
])
def test_alpha_out_of_range_is_one_line_and_exit_2(tmp_path, setting, message):
    files = _write_corpus(tmp_path)
    result = lmforge("prepare", str(tmp_path / "r"), "--recipe", str(_recipe(tmp_path, files, 0.5)), "--set", setting)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "data").exists()


def test_a_language_that_is_not_a_code_is_refused(tmp_path):
    files = {"english": tmp_path / "e.txt"}
    files["english"].write_text("some text\n")
    result = lmforge("prepare", str(tmp_path / "r"), "--recipe", str(_recipe(tmp_path, files, 0.5)))
    assert result.returncode == 2
    assert "language 'english' is not an ISO 639 code" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not (SHARED_DATA / "ud_sentences").is_dir(), reason="needs ../shared/data/ud_sentences")
def test_the_multilingual_recipe_reads_six_languages_in_three_scripts():
    from lmforge.data.sources import Source
    from lmforge.recipe import load_recipe
    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "multilingual.toml")
    assert recipe.data.language_alpha == 0.3 and recipe.train.objective == "masked_lm"
    languages = {}
    for cfg in recipe.data.sources:
        if cfg.kind == "files":
            source = Source(cfg)
            first = next(source.read(source.units()[0]))
            languages.setdefault(cfg.language, first[1])
    assert set(languages) == {"en", "de", "fr", "ru", "ja", "zh"}
    assert any("\u0400" <= ch <= "\u04ff" for ch in languages["ru"])
    assert any("\u4e00" <= ch <= "\u9fff" for ch in languages["zh"])


def test_the_language_table_divides_each_languages_cost_by_its_own_bytes():
    from lmforge.eval.languages import language_rows, language_summary, language_table
    counts = {"en": {"train_tokens": 800, "train_docs": 10, "train_bytes": 3000, "val_tokens": 90, "val_docs": 2,
                     "val_bytes": 300},
              "de": {"train_tokens": 200, "train_docs": 5, "train_bytes": 700, "val_tokens": 30, "val_docs": 1,
                     "val_bytes": 120},
              "ja": {"train_tokens": 50, "train_docs": 1, "train_bytes": 150, "val_tokens": 0, "val_docs": 0,
                     "val_bytes": 0}}
    val = np.arange(120)
    languages = {"counts": counts, "val": LanguageSegments([("en", 0, 50), ("de", 50, 80), ("en", 80, 120)])}
    calls = {}

    def score(stream, ordinary):        # 0.5 nats for every ordinary token
        calls[len(stream)] = ordinary
        return 0.5 * ordinary
    table = language_table(score, languages, val, alpha=0.5)
    assert calls == {90: 86, 30: 28}       # en: 50 + 40 tokens, 4 of them BOS/EOS; de: 30, 2 of them
    en, de, ja = (table["by_language"][k] for k in ("en", "de", "ja"))
    assert en["bits_per_byte"] == pytest.approx(0.5 * 86 / math.log(2) / 300, abs=1e-4)
    assert de["bits_per_byte"] == pytest.approx(0.5 * 28 / math.log(2) / 120, abs=1e-4)
    assert "bits_per_byte" not in ja                                  # no validation text: not scored
    assert en["bytes_per_token"] == pytest.approx(3300 / (890 - 24), abs=1e-4)
    assert ja["bytes_per_token"] == pytest.approx(150 / 48, abs=1e-4)
    assert en["train_share"] == pytest.approx(800 / 1050, abs=1e-4)
    w = {k: c["train_tokens"] ** 0.5 for k, c in counts.items()}
    assert de["sampled_share"] == pytest.approx(w["de"] / sum(w.values()), abs=1e-4)
    assert table["bits_per_byte_spread"] == pytest.approx(en["bits_per_byte"] - de["bits_per_byte"], abs=2e-4)
    assert language_rows(table)[2] == ["ja", ja["bytes_per_token"], "no validation text", "4.8%",
                                       f"{ja['sampled_share']:.1%}", 0]
    assert language_rows(table)[0][:3] == ["de", de["bytes_per_token"], de["bits_per_byte"]]
    assert de["bits_per_byte"] == round(0.5 * 28 / math.log(2) / 120, 4)            # rounded to 4 places
    assert en["bytes_per_token"] == round(3300 / 866, 4) and en["train_share"] == round(800 / 1050, 4)
    assert de["sampled_share"] == round(w["de"] / sum(w.values()), 4)
    assert table["bits_per_byte_spread"] == round(en["bits_per_byte"] - de["bits_per_byte"], 4) or \
        abs(table["bits_per_byte_spread"] - (en["bits_per_byte"] - de["bits_per_byte"])) < 2e-4
    assert set(en) == {"bytes_per_token", "bits_per_byte", "train_share", "sampled_share", "val_tokens", "val_bytes"}
    unscored = language_table(score, {"counts": {"ja": counts["ja"], "ko": {**counts["ja"], "train_tokens": 0}},
                                      "val": LanguageSegments([])}, val, alpha=0.5)
    assert unscored["bits_per_byte_spread"] is None and unscored["by_language"]["ko"]["sampled_share"] == 0.0
    assert "p ∝ n^0.5" in language_summary(table) and str(table["bits_per_byte_spread"]) in language_summary(table)


def test_embed_prints_the_embedders_vectors_and_their_similarities(multi_run):
    from lmforge.infer.embedder import Embedder
    texts = ["the quick brown fox", "der Hund und die Katze"]
    result = lmforge("embed", str(multi_run), "--text", texts[0], "--text", texts[1], "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    embedder = Embedder.from_run(multi_run)
    expected = embedder.embed(embedder.encode(texts))
    assert [r["text"] for r in rows] == texts
    torch.testing.assert_close(torch.tensor([r["embedding"] for r in rows]), expected, atol=2e-6, rtol=0)
    table = lmforge("embed", str(multi_run), "--text", texts[0], "--text", texts[1])
    lines = table.stdout.splitlines()
    assert lines[0] == f"2 texts, {expected.shape[1]} dimensions; cosine similarity:"
    assert lines[1].split()[1:3] == ["1.000", f"{float(expected[0] @ expected[1]):.3f}"]
    missing = lmforge("embed", str(multi_run))
    assert missing.returncode == 2 and missing.stderr.strip() == \
        "lmforge: error: embed needs --text TEXT (repeatable) or --file FILE (one text per line)"


def test_centring_takes_away_what_a_language_shares():
    from lmforge.eval.retrieval import centered, evaluate_retrieval
    torch.manual_seed(0)
    meaning = F.normalize(torch.randn(50, 16), dim=-1)
    accent = {"en": torch.randn(16) * 3, "de": torch.randn(16) * 3}       # one large offset per language
    texts = {"en": [str(i) for i in range(50)], "de": [str(i) for i in range(50)]}
    vectors = {lang: F.normalize(meaning + accent[lang] + 0.1 * torch.randn(50, 16), dim=-1) for lang in texts}
    embed = {"en": lambda lines: vectors["en"], "de": lambda lines: vectors["de"]}
    calls = iter(["en", "de"])
    assert evaluate_retrieval(lambda lines: embed[next(calls)](lines), texts, "en")["metrics"] == \
        evaluate_retrieval(lambda lines: vectors["en" if lines is texts["en"] else "de"], texts, "en", center=False)["metrics"]
    calls = iter(["en", "de"])
    raw = evaluate_retrieval(lambda lines: embed[next(calls)](lines), texts, "en")
    calls = iter(["en", "de"])
    fair = evaluate_retrieval(lambda lines: embed[next(calls)](lines), texts, "en", center=True)
    assert raw["metrics"]["en->de recall@1"]["value"] < 0.2 and fair["metrics"]["en->de recall@1"]["value"] == 1.0
    c = centered(vectors["en"])
    torch.testing.assert_close(c.mean(0) @ c.mean(0), torch.tensor(0.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(c.norm(dim=1), torch.ones(50))


def test_language_runs_merge_neighbours_and_round_trip_through_the_file(tmp_path):
    from lmforge.data.language_mix import LANGUAGES_FILE, LanguageRuns, write_languages
    train, val = LanguageRuns(), LanguageRuns()
    for lang, n in [("en", 5), ("en", 3), ("de", 4), ("en", 2), ("und", 6)]:
        train.add(lang, n)
    val.add("de", 7)
    assert train.runs == [["en", 0, 8], ["de", 8, 12], ["en", 12, 14], ["und", 14, 20]] and train.position == 20
    counts = {"en": {"train_tokens": 10}, "de": {"train_tokens": 4}}
    write_languages(tmp_path / LANGUAGES_FILE, counts, train, val)
    back = read_languages(tmp_path)
    assert back["counts"] == counts
    assert back["train"].runs == [("en", 0, 8), ("de", 8, 12), ("en", 12, 14), ("und", 14, 20)]
    assert back["val"].runs == [("de", 0, 7)]
    assert back["train"].languages() == ["de", "en", "und"]
    assert back["train"].tokens() == {"en": 10, "de": 4, "und": 6}
    tokens = np.arange(20)
    assert back["train"].stream(tokens, "en").tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 12, 13]
    assert back["train"].stream(tokens, "ja").tolist() == []
    assert read_languages(tmp_path / "nowhere") is None


def test_a_mix_whose_windows_cannot_fit_is_refused():
    with pytest.raises(UserError, match="the training split's 40 tokens are too few for windows of 64"):
        LanguageMix(LanguageSegments([("en", 0, 40)]), 0.5, 40, 64)
    with pytest.raises(ValueError, match="no language has any data"):
        language_weights({"en": 0}, 0.5)


def test_the_mix_draws_from_its_generator_alone_and_retrieval_keeps_every_languages_samples():
    from lmforge.eval.languages import language_table
    from lmforge.eval.retrieval import evaluate_retrieval
    mix = LanguageMix(LanguageSegments([("en", 0, 5000), ("de", 5000, 6000)]), 0.5, 6000, 8)
    first = mix.starts(64, torch.Generator().manual_seed(3))
    torch.manual_seed(99)
    assert mix.starts(64, torch.Generator().manual_seed(3)) == first
    texts = {lang: [f"{lang} {i}" for i in range(25)] for lang in ("en", "de", "fr")}
    vectors = {lang: F.normalize(torch.eye(25) + 0.1 * k, dim=-1) for k, lang in enumerate(texts)}
    out = evaluate_retrieval(lambda lines: vectors[lines[0].split()[0]], texts, "en")
    assert [s["language"] for s in out["samples"]] == ["de"] * 20 + ["fr"] * 20
    assert out["metrics"]["chance recall@1"]["value"] == round(1 / 25, 4)
    assert out["metrics"]["chance recall@5"]["value"] == 0.2
    empty = {"train_tokens": 0, "train_docs": 0, "train_bytes": 0, "val_tokens": 4, "val_docs": 1, "val_bytes": 9}
    table = language_table(lambda stream, n: 1.0, {"counts": {"en": empty},
                                                   "val": LanguageSegments([("en", 0, 4)])}, np.arange(4), 0.5)
    assert table["by_language"]["en"]["sampled_share"] == 0.0 and table["by_language"]["en"]["train_share"] == 0.0
