"""Generation tasks (summarization, translation): decode each prompt, score against references."""

from __future__ import annotations

from lmforge.eval import text_metrics
from lmforge.eval.lm import EvalLM
from lmforge.eval.prompts import Example
from lmforge.eval.tasks import Task


def score_texts(task: Task, hypotheses: list[str], references: list[list[str]], seed: int) -> dict:
    m = task.metrics
    out = {}
    if "bleu" in m.names:
        out["bleu"] = text_metrics.bleu(hypotheses, references, tokenize=m.bleu_tokenize or None,
                                        n_bootstrap=m.bootstrap, seed=seed)
    if "chrf" in m.names:
        out["chrf"] = text_metrics.chrf(hypotheses, references, word_order=m.chrf_word_order,
                                        n_bootstrap=m.bootstrap, seed=seed)
    if "rouge" in m.names:
        out.update(text_metrics.rouge(hypotheses, references, types=m.rouge_types,
                                      use_stemmer=m.rouge_stemmer, tokenizer=m.rouge_tokenizer,
                                      n_bootstrap=m.bootstrap, seed=seed))
    return out


def evaluate_generation(lm: EvalLM, task: Task, examples: list[Example], contexts: list[str],
                        seed: int) -> dict:
    g = task.generation
    kwargs = {"until": g.stop, "max_gen_toks": g.max_tokens, "temperature": g.temperature}
    outputs = lm.generate_until([(c, kwargs) for c in contexts], seed=seed)
    hypotheses = [o.strip() for o in outputs]
    references = [ex.answers for ex in examples]
    samples = [{"prompt": c, "output": h, "references": r}
               for c, h, r in zip(contexts, hypotheses, references)]
    return {"metrics": score_texts(task, hypotheses, references, seed), "samples": samples}
