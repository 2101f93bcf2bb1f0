"""Comparing results across processes, thread counts, runs or machines.

The last bits of a CPU float reduction depend on the instruction set, the thread count and the batch
shape, so they are not portable between machines or process layouts (1-process and 2-process losses
were seen to differ by about 1e-8). Floats are therefore compared within a stated tolerance, far above
that noise and far below any difference a user would act on; counts, ids, texts and predictions are
compared exactly.
"""

import math

REL_TOL = 1e-6  # relative, for floats
ABS_TOL = 1e-9  # absolute floor, for floats that should be 0


def assert_same_results(actual, expected, rel_tol=REL_TOL, abs_tol=ABS_TOL, where="result"):
    """Recursively: dict keys and list lengths equal, floats within tolerance, everything else exact."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), (where, actual, expected)
        for key in expected:
            assert_same_results(actual[key], expected[key], rel_tol, abs_tol, f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), (where, actual, expected)
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_same_results(a, e, rel_tol, abs_tol, f"{where}[{i}]")
    elif isinstance(expected, float) or isinstance(actual, float):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), (where, actual, expected)
        assert math.isclose(actual, expected, rel_tol=rel_tol, abs_tol=abs_tol), (where, actual, expected)
    else:
        assert actual == expected, (where, actual, expected)
