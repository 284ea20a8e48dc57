"""How many deliberate bugs the test suite catches: mutmut over the modules where a silent bug
costs users most, each group against the test files that should notice.

    python bench/mutation.py                      # every group (about an hour on 2 cores)
    python bench/mutation.py --only sampling,chat # some groups
    python bench/mutation.py --survivors          # also print each surviving mutant's diff
    python bench/mutation.py --tests-rev 087374c  # the same modules against an older commit's tests

Each group runs in its own scratch copy of the project (mutmut reads its settings from the
pyproject.toml it finds and writes mutants/ beside it), with one thread per test process so
the CPU-time limit mutmut puts on each mutant measures the test, not torch's thread pool.
One JSON line per module: mutants, killed, timeout (counted as killed: the mutant made a test
hang), survived, no_tests; the last line sums them. docs/testing.md records the results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = "src/lmforge/"

# group -> (modules mutated, tests run against them): in-process tests only, since a mutant lives in
# the test process (a `lmforge` subprocess imports the unmutated code) and a subprocess run per
# mutant would cost minutes
GROUPS = {
    "sampling": (["infer/sampling.py"], ["test_sampling.py", "test_infer_engine.py"]),
    "objectives": (["train/objectives/*.py"],
                   ["test_objectives.py", "test_objectives_lm.py", "test_sft_objective.py", "test_masked_lm.py",
                    "test_dpo.py::test_the_loss_equals_a_hand_computation",
                    "test_dpo.py::test_sequence_log_probabilities_cover_exactly_the_answer_tokens",
                    "test_families.py::test_resets_zero_the_state_exactly_where_a_document_starts",
                    "test_families.py::test_stream_batches_continue_each_stream_and_restart_each_pass",
                    "test_families.py::test_causal_lm_carries_the_state_from_window_to_window"]),
    "metrics": (["eval/perplexity.py", "eval/likelihood.py", "eval/multiple_choice.py", "eval/text_metrics.py",
                 "eval/ranking.py", "eval/stats.py", "eval/classification.py"],
                ["test_eval_metrics.py", "test_eval_tasks.py", "test_eval_lm_eval.py"]),
    "schedule": (["train/optim.py"], ["test_optim.py", "test_train_budget.py"]),
    "checkpoint": (["train/checkpoint.py"], ["test_checkpoint.py", "test_train_faults.py"]),
    "serving": (["serve/formatting.py", "serve/responses.py", "serve/limits.py", "serve/audit.py"],
                ["test_serve_api.py", "test_serve_wire.py"]),
    "chat": (["infer/template.py", "infer/chat_repl.py"], ["test_infer_chat_repl.py", "test_conversations.py"]),
    "data": (["data/dedup.py", "data/pii.py", "data/quality.py"],
             ["test_data_steps.py", "test_data_pipeline.py", "test_dedup.py", "test_quality_rules.py"]),
    "multilingual": (["data/language_mix.py", "eval/languages.py", "eval/retrieval.py"],
                     ["test_multilingual.py::" + t for t in (
                         "test_language_weights_follow_the_temperature",
                         "test_repeat_rates_keep_the_text_size_and_give_the_sampled_mix",
                         "test_windows_sample_each_language_as_often_as_alpha_says",
                         "test_uniform_alpha_draws_a_small_language_as_often_as_a_large_one",
                         "test_the_tokenizer_trains_on_the_sampled_mix",
                         "test_recall_counts_how_often_the_translation_ranks_within_k",
                         "test_the_retrieval_task_scores_an_encoder_in_both_directions",
                         "test_misaligned_retrieval_files_name_both",
                         "test_the_language_table_divides_each_languages_cost_by_its_own_bytes",
                         "test_centring_takes_away_what_a_language_shares",
                         "test_language_runs_merge_neighbours_and_round_trip_through_the_file",
                         "test_a_mix_whose_windows_cannot_fit_is_refused",
                         "test_window_starts_cover_each_run_of_a_language_and_nothing_else",
                         "test_the_mix_draws_from_its_generator_alone_and_retrieval_keeps_every_languages_samples")]),
    "reports": (["report/model_card.py", "report/html.py"],
                ["test_cli_run.py::test_evaluation_numbers_are_the_identities_they_claim",
                 "test_cli_run.py::test_card_verdict_follows_the_comparison_with_gzip",
                 "test_cli_run.py::test_report_tables_hold_the_runs_own_numbers",
                 "test_cli_run.py::test_the_card_shows_each_kind_of_result_under_its_name",
                 "test_cli_run.py::test_the_cards_governance_section", "test_reports_golden.py"]),
}
KILLED = {"killed", "timeout"}
STATUS = re.compile(r"^\s*(lmforge\.[\w.]+?)\.x[_ǁ]\S*__mutmut_\d+: (.+)$")


def _exists(tests_dir: Path, test: str) -> bool:
    """A test file, or file::function, that the (older) tests directory has."""
    path, _, function = test.partition("::")
    return (tests_dir / path).is_file() and (not function or f"def {function}(" in (tests_dir / path).read_text())


def scratch_copy(group: str, modules: list[str], tests: list[str], tests_rev: str | None) -> Path | None:
    scratch = Path(tempfile.mkdtemp(prefix=f"lmforge-mutation-{group}-"))
    work = scratch / "lmforge"
    if (ROOT.parent / "shared").is_dir():      # the tests find ../shared/data beside the project
        (scratch / "shared").symlink_to(ROOT.parent / "shared")
    ignore = shutil.ignore_patterns(".venv", "runs", "mutants", ".git", "__pycache__", "*.egg-info")
    for name in ("src", "tests", "tasks", "recipes"):
        shutil.copytree(ROOT / name, work / name, ignore=ignore)
    if tests_rev:
        shutil.rmtree(work / "tests")
        archive = subprocess.run(["git", "archive", tests_rev, "tests"], cwd=ROOT, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)
        tests = [t for t in tests if _exists(work / "tests", t)]
    settings = "\n".join([
        "[tool.mutmut]",
        'source_paths = ["src"]',
        'also_copy = ["tasks", "recipes"]',
        f"only_mutate = {json.dumps([SRC + m for m in modules])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(['tests/' + t for t in tests])}",
        'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider"]',
        "timeout_multiplier = 10.0",
        "timeout_constant = 10.0"])
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + "\n" + settings + "\n")
    return work if tests else None


def run_group(group: str, children: int, survivors: bool, tests_rev: str | None) -> list[dict]:
    modules, tests = GROUPS[group]
    work = scratch_copy(group, modules, tests, tests_rev)
    if work is None:      # none of the group's tests exist at that revision: nothing is caught
        return [{"group": group, "module": "(every module of the group)", "mutants": 0, "killed": 0, "timeout": 0,
                 "survived": 0, "no_tests": 0, "other": 0, "kill_rate": 0.0, "note": "no such test at " + tests_rev}]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LMFORGE_NO_PROGRESS": "1"}
    tiny = work.parent / "tiny-run"       # the finished run the tests share, built once with the real code
    build = ("import sys; sys.path.insert(0, 'tests'); from pathlib import Path; "
             "from conftest import tiny_recipe, tiny_corpus_dir, lmforge; root = Path(sys.argv[1]); root.mkdir(parents=True, exist_ok=True); "
             "r = lmforge('run', str(tiny_recipe(root, tiny_corpus_dir(root))), '--out', str(root / 'run')); "
             "sys.exit(r.returncode)")
    subprocess.run([sys.executable, "-c", build, str(tiny)], cwd=work, check=True,
                   env={**env, "PYTHONPATH": str(work / "src")})
    env["LMFORGE_TEST_TINY_RUN"] = str(tiny / "run")
    with open(work / "mutmut.log", "w") as log:
        subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children)], cwd=work, env=env,
                       stdout=log, stderr=subprocess.STDOUT)
    return summarise(group, work, survivors)


def summarise(group: str, work: Path, survivors: bool) -> list[dict]:
    """Per-module counts of a finished (or interrupted) mutmut run in `work`."""
    mutmut = [sys.executable, "-m", "mutmut"]
    listing = subprocess.run(mutmut + ["results", "--all", "true"], cwd=work, capture_output=True, text=True).stdout
    counts: dict[str, Counter] = {}
    for line in listing.splitlines():
        m = STATUS.match(line)
        if m:
            counts.setdefault(m.group(1), Counter())[m.group(2).strip()] += 1
            if survivors and m.group(2).strip() == "survived":
                name = line.split(":")[0].strip()
                print(subprocess.run(mutmut + ["show", name], cwd=work, capture_output=True, text=True).stdout,
                      file=sys.stderr)
    rows = []
    for module, c in sorted(counts.items()):
        caught = sum(c[k] for k in KILLED)
        rows.append({"group": group, "module": module, "mutants": sum(c.values()), "killed": c["killed"],
                     "timeout": c["timeout"], "survived": c["survived"], "no_tests": c["no tests"],
                     "other": sum(v for k, v in c.items() if k not in KILLED | {"survived", "no tests"}),
                     "kill_rate": round(caught / max(sum(c.values()), 1), 3), "workdir": str(work)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated groups: " + ", ".join(GROUPS))
    ap.add_argument("--children", type=int, default=2)
    ap.add_argument("--survivors", action="store_true", help="print the diff of every surviving mutant (stderr)")
    ap.add_argument("--tests-rev", help="run the tests/ of this git revision (the modules stay today's)")
    ap.add_argument("--summarise", metavar="GROUP=WORKDIR", help="only count the results of an earlier run")
    args = ap.parse_args()
    groups = [g for g in args.only.split(",") if g] or list(GROUPS)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        sys.exit(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    total = Counter()
    if args.summarise:
        group, work = args.summarise.split("=", 1)
        groups, runs = [group], [lambda: summarise(group, Path(work), args.survivors)]
    else:
        runs = [lambda g=g: run_group(g, args.children, args.survivors, args.tests_rev) for g in groups]
    for run in runs:
        for row in run():
            print(json.dumps(row), flush=True)
            total.update({k: row[k] for k in ("mutants", "killed", "timeout", "survived", "no_tests", "other")})
    caught = total["killed"] + total["timeout"]
    print(json.dumps({"summary": "mutation", "groups": groups, "tests_rev": args.tests_rev or "working tree", **total,
                      "kill_rate": round(caught / max(total["mutants"], 1), 3)}))


if __name__ == "__main__":
    main()
