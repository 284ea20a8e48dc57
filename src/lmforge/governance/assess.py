"""The governance stage: bias, privacy and the release gate for one run, into eval/governance.json.

What is measured depends on what the run trained:
- a causal language model: minimal pairs (log-likelihoods), counterfactual gaps, PII in
  sampled outputs; for a pre-training run also membership inference over its own training
  and held-out documents, and the exposure of its canaries when the recipe inserted some;
- an encoder: minimal pairs by pseudo-log-likelihood;
- a classifier: counterfactual label flips and per-group accuracy.
"""

from __future__ import annotations

import json
import time

import numpy as np

from lmforge import atomic
from lmforge.governance import counterfactual, gate, pairs
from lmforge.recipe import Recipe
from lmforge.rundir import RunDir

CANARIES = "canaries.json"


def assess(run: RunDir, recipe: Recipe) -> dict:
    from lmforge.models.io import find_weights, read_model_config
    from lmforge.models.registry import get_family
    gc = recipe.governance
    t0 = time.time()
    cfg = read_model_config(find_weights(run.path))
    family = get_family(cfg.arch)
    if cfg.labels:
        result = _classifier(run, gc)
    elif not family.generative:
        result = _encoder(run, gc)
    else:
        result = _language_model(run, recipe)
    result["checks"] = gate.checks(result, gc)
    result["passed"] = gate.passed(result["checks"])
    result["seconds"] = round(time.time() - t0, 1)
    atomic.write_json(run.eval_result("governance"), result)
    return result


def _classifier(run: RunDir, gc) -> dict:
    from lmforge.infer.classifier import Classifier
    classifier = Classifier.from_run(run.path)
    return {"kind": "classifier",
            "bias": {"counterfactual": counterfactual.classifier_flips(classifier, counterfactual.load_templates(gc.templates))}}


def _encoder(run: RunDir, gc) -> dict:
    from lmforge.models.io import load_model
    from lmforge.tokenizer.load import load_tokenizer, special_ids
    model = load_model(run.path).eval()
    tokenizer = load_tokenizer(run.tokenizer)
    chosen = pairs.load_pairs(gc.pairs)
    more, less = pairs.encoder_scores(model, tokenizer, chosen, special_ids(tokenizer)["mask"])
    return {"kind": "encoder",
            "bias": {"minimal_pairs": {"source": gc.pairs, "score": "pseudo-log-likelihood of shared tokens",
                                       **pairs.summarize(chosen, more, less, gc.bootstrap)}}}


def _language_model(run: RunDir, recipe: Recipe) -> dict:
    from lmforge.eval.backends import LmforgeLM
    from lmforge.governance.outputs import pii_in_outputs
    from lmforge.infer.engine import Engine
    gc = recipe.governance
    lm = LmforgeLM(run.path, batch_size=16)
    chosen = pairs.load_pairs(gc.pairs)
    bias = {"minimal_pairs": {"source": gc.pairs, "score": "log-likelihood (lm-evaluation-harness crows_pairs)",
                              **pairs.summarize(chosen, *pairs.causal_scores(lm, chosen), gc.bootstrap, recipe.seed)},
            "counterfactual": counterfactual.language_model_gaps(lm, counterfactual.load_templates(gc.templates))}
    privacy = {}
    if (run.tokens / CANARIES).is_file():
        from lmforge.governance.canaries import exposure
        inserted = json.loads((run.tokens / CANARIES).read_text())
        privacy["canaries"] = exposure(lm, recipe.data.canaries, inserted, gc.canary_candidates, recipe.seed)
    if run.documents.is_file() and (run.tokens / "meta.json").is_file():
        from lmforge.governance.membership import membership
        members, others = _documents(run, recipe, gc.membership_documents)
        privacy["membership"] = membership(lm, members, others, gc.membership_tokens, gc.membership_documents,
                                           gc.min_k, gc.bootstrap, recipe.seed)
    if gc.pii_samples:
        engine = Engine(lm.model, lm.tokenizer, chat_template=lm.template)
        try:
            privacy["pii_in_outputs"] = pii_in_outputs(engine, recipe.eval.sample_prompts or ["The "], gc.pii_samples,
                                                       gc.pii_sample_tokens, recipe.seed)
        finally:
            engine.close()
    return {"kind": "language model", "bias": bias, "privacy": privacy}


def _documents(run: RunDir, recipe: Recipe, n: int) -> tuple[list[str], list[str]]:
    """As many training documents as held-out ones (up to `n`), as the tokens stage split them: passages
    of a few documents are alike, so the two sides draw their passages from equally many."""
    from lmforge.tokenizer.shards import validation_indices
    from lmforge.tokenizer.train import document_text
    meta = json.loads((run.tokens / "meta.json").read_text())
    lines = run.documents.read_bytes().splitlines()
    is_val = np.zeros(len(lines), dtype=bool)
    is_val[validation_indices(len(lines), meta["val_fraction"], meta["seed"])] = True
    rng = np.random.default_rng([recipe.seed, 0x3E3B])
    picked = []
    sides = (np.flatnonzero(~is_val), np.flatnonzero(is_val))
    k = min(n, *map(len, sides))
    for side in sides:
        chosen = rng.choice(side, size=k, replace=False)
        picked.append([document_text(lines[i], run.documents, int(i) + 1) for i in sorted(chosen)])
    return picked[0], picked[1]
