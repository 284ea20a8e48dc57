"""Metric wrappers equal the reference libraries; classification, ranking and agreement helpers."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from lmforge.eval import text_metrics
from lmforge.eval.classification import accuracy, confusion_matrix, macro_f1
from lmforge.eval.ranking import bradley_terry, cohen_kappa, leaderboard, pairwise_kappa
from lmforge.eval.stats import bootstrap_mean_ci, mean_stderr

HYPS = ["the cat sat on the mat", "a dog is running in the park", "ein mann fährt fahrrad", "hello there"]
REFS = [["the cat is sitting on the mat", "a cat sat on a mat"], ["the dog runs through the park"],
        ["ein mann fährt ein fahrrad"], ["general kenobi", "hi there"]]


def test_bleu_and_chrf_equal_sacrebleu():
    streams = [[r[0] for r in REFS], [r[1] if len(r) > 1 else None for r in REFS]]
    ours = text_metrics.bleu(HYPS, REFS, n_bootstrap=1)
    assert ours["value"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams).score, abs=1e-9)
    assert ours["signature"].startswith("nrefs:var|") and "tok:13a" in ours["signature"]
    assert text_metrics.chrf(HYPS, REFS, n_bootstrap=1)["value"] == pytest.approx(
        sacrebleu.corpus_chrf(HYPS, streams).score, abs=1e-9)
    assert text_metrics.chrf(HYPS, REFS, word_order=2, n_bootstrap=1)["value"] == pytest.approx(
        sacrebleu.corpus_chrf(HYPS, streams, word_order=2).score, abs=1e-9)
    with_ci = text_metrics.bleu(HYPS, REFS, n_bootstrap=200)
    assert with_ci["ci95"][0] <= with_ci["value"] <= with_ci["ci95"][1]


def test_rouge_equals_rouge_score():
    ours = text_metrics.rouge(HYPS, REFS, use_stemmer=True, n_bootstrap=0)
    scorer = rouge_scorer.RougeScorer(list(text_metrics.ROUGE_TYPES), use_stemmer=True)
    for t in text_metrics.ROUGE_TYPES:
        expected = sum(scorer.score_multi(r, h)[t].fmeasure for h, r in zip(HYPS, REFS)) / len(HYPS)
        assert ours[t]["value"] == pytest.approx(100 * expected, abs=1e-9)


def test_unicode_rouge_keeps_non_latin_text():
    hyp, ref = ["мама мыла раму"], [["мама мыла окно"]]
    assert text_metrics.rouge(hyp, ref, types=["rouge1"], n_bootstrap=0)["rouge1"]["value"] == 0.0
    uni = text_metrics.rouge(hyp, ref, types=["rouge1"], tokenizer="unicode", n_bootstrap=0)
    assert uni["rouge1"]["value"] == pytest.approx(100 * 2 / 3)
    # on ASCII text with stemming, the Unicode tokenizer agrees with rouge-score's default
    latin = text_metrics.rouge(HYPS[:2], REFS[:2], tokenizer="unicode", n_bootstrap=0)
    default = text_metrics.rouge(HYPS[:2], REFS[:2], n_bootstrap=0)
    assert latin["rouge1"]["value"] == pytest.approx(default["rouge1"]["value"])


def test_classification_metrics():
    gold = ["pos", "pos", "neg", "neg", "neu"]
    pred = ["pos", "neg", "neg", "neg", "pos"]
    assert accuracy(gold, pred) == 0.6
    labels, counts = confusion_matrix(gold, pred, ["neg", "neu", "pos"])
    assert counts.tolist() == [[2, 0, 0], [0, 0, 1], [1, 0, 1]]
    # per-class F1: neg 0.8, neu 0, pos 0.5
    assert macro_f1(gold, pred) == pytest.approx((0.8 + 0.0 + 0.5) / 3)
    sklearn = pytest.importorskip("sklearn.metrics")
    assert macro_f1(gold, pred) == pytest.approx(sklearn.f1_score(gold, pred, average="macro"))


def test_stderr_and_bootstrap():
    values = [1, 0, 1, 1, 0, 1, 0, 1]
    assert mean_stderr(values) == pytest.approx(math.sqrt(0.267857142857 / 8), rel=1e-6)
    lo, hi = bootstrap_mean_ci(values, resamples=500, seed=1)
    assert lo < 0.625 < hi


def test_bradley_terry_two_models_has_a_closed_form_with_ties_as_half_wins():
    # 6 wins, 2 losses, 4 ties, prior 0.1 (a twentieth of a tie each way): x's share is 8.05 / 12.1
    votes = [("x", "y", "a")] * 6 + [("x", "y", "b")] * 2 + [("y", "x", "tie")] * 2 + [("x", "y", "both_bad")] * 2
    ratings = bradley_terry(votes, ["x", "y"], prior=0.1)
    gap = 400 * math.log10(8.05 / 4.05)
    assert ratings["x"] == pytest.approx(1000 + gap / 2, abs=1e-6)
    assert ratings["y"] == pytest.approx(1000 - gap / 2, abs=1e-6)
    # the Elo scale: the rating gap predicts the observed share of (half-)wins
    assert 1 / (1 + 10 ** ((ratings["y"] - ratings["x"]) / 400)) == pytest.approx(8.05 / 12.1, abs=1e-9)


def test_bradley_terry_fit_satisfies_the_likelihood_equations():
    """At the maximum-likelihood fit each model's expected wins equal its observed wins (Hunter 2004)."""
    votes = ([("a", "b", "a")] * 5 + [("a", "b", "b")] * 3 + [("b", "c", "a")] * 4 + [("c", "b", "tie")] * 3 +
             [("a", "c", "b")] * 2 + [("a", "c", "a")] * 6 + [("c", "d", "a")] * 1 + [("d", "a", "b")] * 2)
    models = ["a", "b", "c", "d"]
    ratings = bradley_terry(votes, models, prior=0.1, iterations=2000)
    _assert_likelihood_equations(votes, models, 0.1, ratings)
    assert sum(ratings.values()) / 4 == pytest.approx(1000)     # geometric-mean strength 1


def _assert_likelihood_equations(votes, models, prior, ratings):
    p = {m: 10 ** ((ratings[m] - 1000) / 400) for m in models}
    wins = {(i, j): prior / 2 for i in models for j in models if i != j}
    for x, y, outcome in votes:
        share = {"a": 1.0, "b": 0.0}.get(outcome, 0.5)
        wins[x, y] += share
        wins[y, x] += 1 - share
    for i in models:
        observed = sum(wins[i, j] for j in models if j != i)
        expected = sum((wins[i, j] + wins[j, i]) * p[i] / (p[i] + p[j]) for j in models if j != i)
        assert expected == pytest.approx(observed, rel=1e-6), i


def test_bradley_terry_and_kappa():
    votes = [("x", "y", "a")] * 8 + [("x", "y", "b")] * 2 + [("y", "z", "a")] * 6 + [("y", "z", "tie")] * 4
    ratings = bradley_terry(votes, ["x", "y", "z"])
    assert ratings["x"] > ratings["y"] > ratings["z"]
    board = leaderboard(votes, ["x", "y", "z"], resamples=50)
    assert [r["model"] for r in board] == ["x", "y", "z"]
    assert board[1]["wins"] == 8 and board[1]["ties"] == 4 and board[1]["losses"] == 8
    assert all(r["ci95"][0] <= r["rating"] <= r["ci95"][1] for r in board)
    assert cohen_kappa(["a", "b", "a", "a"], ["a", "b", "b", "a"]) == pytest.approx(0.5)
    sklearn = pytest.importorskip("sklearn.metrics")
    l1, l2 = list("aabbcabca"), list("abbbcaacc")
    assert cohen_kappa(l1, l2) == pytest.approx(sklearn.cohen_kappa_score(l1, l2))
    kappas = pairwise_kappa({"r1": {"i1": "x", "i2": "y"}, "r2": {"i1": "x", "i2": "y", "i3": "x"}})
    assert kappas == [{"raters": ["r1", "r2"], "items": 2, "kappa": 1.0}]


def test_bleu_tokenizer_and_interval_settings_reach_sacrebleu():
    zh = text_metrics.bleu(["猫坐在垫子上"], [["猫坐在垫子上了"]], tokenize="zh", n_bootstrap=0)
    assert "tok:zh" in zh["signature"]
    assert zh["value"] == pytest.approx(sacrebleu.corpus_bleu(["猫坐在垫子上"], [["猫坐在垫子上了"]], tokenize="zh").score)
    for metric in (text_metrics.bleu, text_metrics.chrf):
        assert "ci95" not in metric(HYPS, REFS, n_bootstrap=1) and "ci95" in metric(HYPS, REFS, n_bootstrap=2)
        a, b = metric(HYPS, REFS, n_bootstrap=30, seed=4), metric(HYPS, REFS, n_bootstrap=30, seed=4)
        assert a["ci95"] == b["ci95"]                                      # seeded: reproducible
        assert a["ci95"] != metric(HYPS, REFS, n_bootstrap=300, seed=4)["ci95"]   # the count is used
        assert a["ci95"] != metric(HYPS, REFS, n_bootstrap=30, seed=5)["ci95"]    # and the seed


def test_rouge_settings_and_intervals():
    assert "ci95" not in text_metrics.rouge(HYPS, REFS, n_bootstrap=1)["rouge1"]
    two = text_metrics.rouge(HYPS, REFS, n_bootstrap=2)["rouge1"]
    assert len(two["ci95"]) == 2 and two["ci95"][0] <= two["ci95"][1]
    runs = [text_metrics.rouge(HYPS, REFS, n_bootstrap=n, seed=4)["rougeL"]["ci95"] for n in (30, 30, 300)]
    assert runs[0] == runs[1] != runs[2]
    assert runs[0] != text_metrics.rouge(HYPS, REFS, n_bootstrap=30, seed=5)["rougeL"]["ci95"]
    assert all(math.isnan(v["value"]) for v in text_metrics.rouge([], [], n_bootstrap=0).values())
    # stemming is on by default, as papers report ROUGE
    assert text_metrics.rouge(["running"], [["runs"]], types=["rouge1"], n_bootstrap=0)["rouge1"]["value"] == 100.0
    with pytest.raises(ValueError, match=r"^rouge tokenizer: got 'spacy', allowed: default, unicode$"):
        text_metrics.rouge(HYPS, REFS, tokenizer="spacy")


def test_unicode_tokenizer_lowercases_and_stems_only_long_tokens():
    assert text_metrics.UnicodeTokenizer(use_stemmer=True).tokenize("Was RUNNING café, Привет") == \
        ["was", "run", "café", "привет"]
    assert text_metrics.UnicodeTokenizer(use_stemmer=False).tokenize("Was Running") == ["was", "running"]
    uni = text_metrics.rouge(["Running"], [["runs"]], types=["rouge1"], tokenizer="unicode", n_bootstrap=0)
    assert uni["rouge1"]["value"] == 100.0


def test_standard_errors_and_bootstrap_edges():
    assert mean_stderr([1.0, 0.0]) == pytest.approx(0.5)          # sd 0.7071 / sqrt(2)
    assert math.isnan(mean_stderr([3.0]))
    from lmforge.eval.stats import bootstrap_ci
    assert bootstrap_mean_ci([3.0]) == (3.0, 3.0)
    assert all(math.isnan(x) for x in bootstrap_ci(0, lambda idx: 0.0))
    one_high = [1.0] + [0.0] * 9                                     # every index can be drawn, the first too
    assert bootstrap_mean_ci(one_high, resamples=200)[1] > 0
    assert bootstrap_mean_ci(one_high, resamples=200, seed=5) == bootstrap_mean_ci(one_high, resamples=200, seed=5)
    import numpy as np
    values = np.random.default_rng(9).normal(size=8).tolist()        # continuous: every quantile differs
    rng = np.random.default_rng(0)
    means = [sum(values[i] for i in rng.integers(0, 8, size=8)) / 8 for _ in range(400)]
    assert bootstrap_mean_ci(values, resamples=400, level=0.5) == pytest.approx(np.quantile(means, [0.25, 0.75]))


def test_classification_edges():
    with pytest.raises(ValueError, match="^2 gold labels but 1 predictions$"):
        accuracy(["a", "b"], ["a"])
    assert math.isnan(accuracy([], []))
    labels, counts = confusion_matrix([1, "b"], ["b", 1])             # mixed label types sort by text
    assert labels == [1, "b"] and counts.tolist() == [[0, 1], [1, 0]]
    assert all(type(c) is int for row in counts.tolist() for c in row)
    # a label never gold nor predicted is left out, wherever it comes in the list; one with tp = 0 counts 0
    assert macro_f1(["a", "b"], ["b", "a"], labels=["z", "a", "b"]) == 0.0
    assert macro_f1(["a", "a", "b"], ["a", "a", "a"], labels=["z", "a", "b"]) == pytest.approx((0.8 + 0.0) / 2)
    assert math.isnan(macro_f1([], []))


def test_leaderboard_tallies_every_model_and_handles_no_votes():
    votes = [("x", "y", "a")] * 3 + [("y", "z", "b")] * 2 + [("z", "x", "both_bad")] + [("x", "z", "tie")]
    board = {r["model"]: r for r in leaderboard(votes, ["x", "y", "z"], resamples=20)}
    assert {m: (r["wins"], r["losses"], r["ties"], r["votes"]) for m, r in board.items()} == \
        {"x": (3, 0, 2, 5), "y": (0, 5, 0, 5), "z": (2, 0, 2, 4)}
    assert leaderboard(votes, ["x", "y", "z"], resamples=20) == leaderboard(votes, ["x", "y", "z"], resamples=20)
    assert [r["ci95"] for r in leaderboard(votes, ["x", "y", "z"], resamples=20)] != \
        [r["ci95"] for r in leaderboard(votes, ["x", "y", "z"], resamples=40)]
    assert [r["ci95"] for r in leaderboard(votes, ["x", "y", "z"], resamples=20, seed=1)] != \
        [r["ci95"] for r in leaderboard(votes, ["x", "y", "z"], resamples=20, seed=2)]
    empty = leaderboard([], ["p", "q"])
    assert [(r["rating"], r["ci95"], r["votes"]) for r in empty] == [(1000.0, [1000.0, 1000.0], 0)] * 2


def test_bradley_terry_with_a_single_vote():
    # 1 win plus the prior's 0.05 each way: odds 1.05 / 0.05 = 21 (small counts, where the update's
    # denominator is below 1)
    ratings = bradley_terry([("x", "y", "a")], ["x", "y"], prior=0.1)
    assert ratings["x"] - ratings["y"] == pytest.approx(400 * math.log10(21), abs=1e-6)


def test_bradley_terry_on_sparse_votes_satisfies_the_likelihood_equations():
    # few votes among three models: the update's denominators are below 1 and differ by model
    votes, models = [("a", "b", "a"), ("b", "c", "a"), ("a", "c", "tie")], ["a", "b", "c"]
    _assert_likelihood_equations(votes, models, 0.1, bradley_terry(votes, models, prior=0.1, iterations=5000))


def test_kappa_edges():
    assert math.isnan(cohen_kappa(["a"], ["a", "b"])) and math.isnan(cohen_kappa([], []))
    assert cohen_kappa(["a"], ["a"]) == 1.0 and cohen_kappa(["a", "a"], ["a", "a"]) == 1.0
