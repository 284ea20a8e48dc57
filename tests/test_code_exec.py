"""The execution test behind recipes/code.toml: a doctested function's own body passes, a wrong,
looping or memory-hungry one fails inside its limits; held-out modules are kept out of the data."""

import time

from lmforge.data.config import SourceConfig
from lmforge.data.sources import Source
from lmforge.eval.code_exec import body_of, passes, problems_in, stdlib_problems

MODULE = '''import math


def hypot2(a, b):
    """The hypotenuse.

    >>> hypot2(3, 4)
    5.0
    """
    return math.sqrt(a * a + b * b)


def helper():
    return 1
'''


def test_the_reference_passes_and_wrong_bodies_fail_within_their_limits():
    (problem,) = problems_in("geometry", MODULE)
    assert problem.name == "geometry.hypot2" and problem.prompt.startswith("import math\n")
    assert problem.prompt.rstrip().endswith('"""') and "sqrt" not in problem.prompt
    assert passes(problem, problem.reference)
    assert not passes(problem, "    return a + b\n")
    started = time.perf_counter()
    assert not passes(problem, "    while True:\n        pass\n", timeout_s=2)
    assert time.perf_counter() - started < 10
    assert not passes(problem, "    x = bytearray(4 << 30)\n    return 5.0\n", memory_mb=512)


def test_a_completion_ends_where_the_function_does():
    assert body_of("    return 1\n\n    # still inside\ndef other():\n    pass\n") == "    return 1\n\n    # still inside\n"


def test_the_standard_library_gives_solvable_problems_and_excluded_modules_stay_out():
    problems = stdlib_problems(["statistics"])
    assert len(problems) >= 8 and all(p.name.startswith("statistics.") for p in problems)
    units = Source(SourceConfig(kind="python_source", exclude=["statistics", "email", "email.*"])).units()
    assert units and not any(u.endswith("/statistics.py") or "/email/" in u for u in units)
    assert any(u.endswith("/difflib.py") for u in units)
