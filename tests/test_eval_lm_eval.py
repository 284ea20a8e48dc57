"""bits per byte (and word/byte perplexity) from lmforge equal lm-evaluation-harness's.

lm-eval's own HF model class scores the HF copy of the model; our harness scores the
lmforge run; lm-eval also runs our registered "lmforge" adapter. Aggregation and
word/byte counting are lm-eval's in its two runs and ours in the third."""

from __future__ import annotations

import json
import os

import pytest

from test_eval_fixtures import hf_dir, tiny_pair, tiny_run  # noqa: F401  (fixtures)

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install lm-eval)")

DOCS = ["The cat sat on the mat.  The dog ran in the park!\nA man rides a horse.",
        "Ein Mann fährt ein Pferd. Die Katze sitzt auf der Matte.",
        "Return a new dictionary initialized from an optional positional argument. " * 8,  # > 1 window
        "Русский текст, 日本語, café."]


@pytest.fixture(scope="module")
def corpus_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_eval_task")
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    (root / "tiny_bpb.yaml").write_text(f"""task: tiny_bpb
dataset_path: json
dataset_kwargs:
  data_files:
    test: {root / 'docs.jsonl'}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
""")
    (root / "corpus.toml").write_text(f'kind = "perplexity"\nname = "tiny_bpb"\n[data]\n'
                                      f'path = "{root / "docs.jsonl"}"\n')
    return root


def _lm_eval_metrics(model: str, model_args: str, task_dir) -> dict:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    import lmforge.eval.lm_eval_adapter  # noqa: F401  (registers "lmforge")
    out = simple_evaluate(model=model, model_args=model_args, tasks=["tiny_bpb"],
                          task_manager=TaskManager(include_path=str(task_dir)), batch_size=2,
                          device="cpu")
    return {k.split(",")[0]: v for k, v in out["results"]["tiny_bpb"].items()}


def test_bits_per_byte_equals_lm_eval_hf_model(tiny_run, hf_dir, tmp_path):
    """lm-eval's HF model scores the texts, lm-eval's aggregations turn them into metrics."""
    from lm_eval.api.instance import Instance
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM

    from lmforge.eval.backends import load_lm
    from lmforge.eval.perplexity import evaluate_perplexity
    theirs = HFLM(pretrained=str(hf_dir), dtype="float32", device="cpu", batch_size=2)
    lls = theirs.loglikelihood_rolling(
        [Instance("loglikelihood_rolling", {}, (d,), i) for i, d in enumerate(DOCS)], disable_tqdm=True)
    nbytes = [ConfigurableTask.count_bytes(d) for d in DOCS]
    words = [ConfigurableTask.count_words(d) for d in DOCS]
    ours = evaluate_perplexity(load_lm(tiny_run), DOCS)["metrics"]
    assert ours["bits_per_byte"]["value"] == pytest.approx(
        bits_per_byte(list(zip(lls, nbytes))), abs=1e-4)
    assert ours["byte_perplexity"]["value"] == pytest.approx(
        weighted_perplexity(list(zip(lls, nbytes))), rel=1e-5)
    assert ours["word_perplexity"]["value"] == pytest.approx(
        weighted_perplexity(list(zip(lls, words))), rel=1e-5)


@pytest.fixture(scope="module")
def ours(tiny_run, corpus_task):
    from lmforge.eval.harness import run_tasks
    return run_tasks([tiny_run], [str(corpus_task / "corpus.toml")],
                     out_dir=corpus_task / "out")["results"]["tiny-run"]["tiny_bpb"]["metrics"]


def test_bits_per_byte_equals_lm_eval_simple_evaluate_on_our_adapter(ours, tiny_run, corpus_task):
    """lm-eval's whole pipeline (its task file, its aggregation) over our registered "lmforge" model."""
    adapter = _lm_eval_metrics("lmforge", f"pretrained={tiny_run}", corpus_task)
    for name in ("bits_per_byte", "byte_perplexity", "word_perplexity"):
        assert ours[name]["value"] == pytest.approx(adapter[name], abs=1e-4, rel=1e-5), name


@pytest.mark.slow
def test_bits_per_byte_equals_lm_eval_simple_evaluate_on_its_hf_model(ours, hf_dir, corpus_task):
    hf = _lm_eval_metrics("hf", f"pretrained={hf_dir},dtype=float32", corpus_task)
    for name in ("bits_per_byte", "byte_perplexity", "word_perplexity"):
        assert ours[name]["value"] == pytest.approx(hf[name], abs=1e-4, rel=1e-5), name


def test_adapter_answers_all_request_types(tiny_run):
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    import lmforge.eval.lm_eval_adapter  # noqa: F401  (registers "lmforge")
    lm = get_model("lmforge").create_from_arg_string(f"pretrained={tiny_run},batch_size=2",
                                                     {"device": "cpu", "max_batch_size": None})
    assert get_model("hf") is not None    # registering ours keeps lm-eval's built-in models
    ll = lm.loglikelihood([Instance("loglikelihood", {}, ("The cat sat on", " the mat"), 0)])
    assert ll[0][0] < 0 and isinstance(ll[0][1], bool)
    out = lm.generate_until([Instance("generate_until", {}, ("The cat", {"until": "\n", "max_gen_toks": 5}), 0),
                             Instance("generate_until", {}, ("A man", {"until": ["."], "do_sample": False}), 1)])
    assert len(out) == 2 and "\n" not in out[0] and "." not in out[1]
    assert lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (DOCS[0],), 0)])[0] < 0
