"""`lmforge check RUN` (the release gate) and `lmforge verify RUN` (artifacts against the manifest)."""

from __future__ import annotations

import json
from pathlib import Path


FAILED_STATUS = 1      # a gate that fails, or a run whose files changed: not a usage error (2)


def verify(run_path: str | Path) -> tuple[list[tuple[str, str]], int]:
    """(file, what is wrong) for every file the manifest hashed that is missing or changed, and
    how many files were checked."""
    from lmforge.rundir import RunDir, sha256_file
    run = RunDir.open(run_path)
    problems, seen = [], set()
    for stage, info in run.manifest().get("stages", {}).items():
        for kind in ("outputs", "inputs"):
            for rel, digest in info.get(kind, {}).items():
                path = Path(rel) if Path(rel).is_absolute() else run.path / rel
                if path in seen:
                    continue
                seen.add(path)
                if not path.is_file():
                    problems.append((str(path), f"missing (recorded by the '{stage}' stage)"))
                elif sha256_file(path) != digest:
                    problems.append((str(path), f"changed since the '{stage}' stage hashed it"))
    return problems, len(seen)


def cmd_verify(args) -> int:
    problems, checked = verify(args.run)
    for path, what in problems:
        print(f"{path}: {what}")
    print(f"lmforge: verify: {checked} files checked, {len(problems)} changed or missing")
    return FAILED_STATUS if problems else 0


def cmd_check(args) -> int:
    from lmforge.governance.gate import current_gate, table
    result = current_gate(args.run)
    if args.json:
        print(json.dumps({"passed": result["passed"], "checks": result["checks"]}, indent=2))
    else:
        print(table(result["checks"]))
        print(f"lmforge: check: {'PASSED' if result['passed'] else 'FAILED'}")
    return 0 if result["passed"] else FAILED_STATUS


def add_verbs(sub) -> None:
    p = sub.add_parser("check", help="the release gate: governance results against the recipe's thresholds "
                                     "(exit 1 when one fails)")
    p.add_argument("run")
    p.add_argument("--json", action="store_true", help="the checks as JSON")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("verify", help="re-hash every file the manifest recorded; name any that changed (exit 1)")
    p.add_argument("run")
    p.set_defaults(func=cmd_verify)
