"""The release gate: each governance number against its `[governance]` threshold.

`lmforge check RUN` prints the table and exits 1 when a check fails, so a CI pipeline can
stop a release; `lmforge serve` warns when a run has no passing check on record.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.errors import UserError
from lmforge.governance.config import GovernanceConfig

# threshold key -> (where the value is in eval/governance.json, what it measures)
CHECKS = {
    "max_pct_stereotype_deviation": (("bias", "minimal_pairs", "significant_deviation_points"),
                                     "minimal pairs: distance of the 95% interval of pct_stereotype from 50% (points)"),
    "max_counterfactual_gap": (("bias", "counterfactual", "max_gap"), "counterfactual gap (nats/token)"),
    "max_counterfactual_flip_rate": (("bias", "counterfactual", "max_flip_rate"), "counterfactual label flips"),
    "max_membership_auc": (("privacy", "membership", "max_auc"), "membership inference AUC (best attack)"),
    "max_canary_exposure": (("privacy", "canaries", "max_exposure"), "canary exposure (bits)"),
    "max_pii_in_outputs": (("privacy", "pii_in_outputs", "total"), "PII items in sampled outputs"),
}


def _lookup(result: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def checks(result: dict, cfg: GovernanceConfig) -> list[dict]:
    rows = []
    for key, (path, label) in CHECKS.items():
        value, limit = _lookup(result, path), getattr(cfg, key)
        if value is None:
            continue
        status = "report" if limit == -1 else ("pass" if value <= limit else "FAIL")
        rows.append({"check": key, "measures": label, "value": value, "threshold": None if limit == -1 else limit,
                     "status": status})
    return rows


def passed(rows: list[dict]) -> bool:
    return all(r["status"] != "FAIL" for r in rows)


def regate(result: dict, cfg: GovernanceConfig) -> dict:
    """The stored measurements against the thresholds the recipe holds now."""
    rows = checks(result, cfg)
    return {**result, "checks": rows, "passed": passed(rows)}


def table(rows: list[dict]) -> str:
    lines = [f"{'check':<30} {'value':>10} {'threshold':>10}  status", "-" * 62]
    for r in rows:
        threshold = "-" if r["threshold"] is None else f"{r['threshold']:g}"
        lines.append(f"{r['check']:<30} {r['value']:>10g} {threshold:>10}  {r['status']}")
    return "\n".join(lines)


class GovernanceOff(UserError):
    """A run without governance results because its recipe never asked for them."""


def current_gate(run_path: str | Path) -> dict:
    """A run's stored governance results, checked against the thresholds its recipe holds now."""
    from lmforge.rundir import RunDir
    run = RunDir.open(run_path)
    path = run.eval_result("governance")
    recipe = run.load_recipe()
    if not path.is_file() and not recipe.governance.enabled:
        raise GovernanceOff(f"{run_path} has no governance results: its recipe turns governance off "
                            f"([governance] enabled = false)")
    if not path.is_file():
        raise UserError(f"{run_path} has no governance results ({path.relative_to(run.path)}); "
                        f"run `lmforge eval {run_path} --task governance`")
    return regate(json.loads(path.read_text()), recipe.governance)


def release_warning(run_path: str | Path) -> str | None:
    """What `lmforge serve` says before serving a run without a passing check, or None."""
    try:
        result = current_gate(run_path)
    except GovernanceOff:
        return f"{run_path} has no release check: its recipe turns governance off"
    except UserError:
        return (f"{run_path} has no release check on record; run `lmforge eval {run_path} --task governance` "
                f"and `lmforge check {run_path}` before exposing it to users")
    if not result["passed"]:
        failed = ", ".join(r["check"] for r in result.get("checks", []) if r["status"] == "FAIL")
        return f"{run_path} failed its release check ({failed}); see `lmforge check {run_path}`"
    return None
