"""Shared argument checks (checks.py): values returned, clear ValueErrors naming the argument."""

import numpy as np
import pandas as pd
import pytest

from bayestensor.checks import (
    check_counts,
    check_finite_result,
    check_int,
    check_level,
    check_options,
    check_positive,
    check_ranks,
)


def test_check_ranks_broadcasts_and_validates():
    assert check_ranks(3, 2) == (3, 3)
    assert check_ranks((2, 4, 1), 3) == (2, 4, 1)
    assert check_ranks(np.int64(2), 2, equal=True) == (2, 2)
    for bad, match in [
        (0, "positive"),
        (1.5, "positive int"),
        (True, "positive int"),
        ((2, 2, 2), "3 entries"),
        ((), "positive int"),
    ]:
        with pytest.raises(ValueError, match=match):
            check_ranks(bad, 2)
    with pytest.raises(ValueError, match="equal ranks"):
        check_ranks((2, 3), 2, equal=True)


def test_scalar_checks_name_the_argument():
    assert check_int("n", 5) == 5 and check_int("seed", 0, minimum=0) == 0
    assert check_positive("tol", "0.5") == 0.5 and check_level(0.9) == 0.9
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        check_int("n", 0)
    with pytest.raises(ValueError, match="seed must be an int ≥ 0"):
        check_int("seed", -1, minimum=0)
    for bad in (0.0, -1.0, float("nan"), float("inf"), "abc", None):
        with pytest.raises(ValueError, match="tol must be a positive number"):
            check_positive("tol", bad)
    for bad in (0.0, 1.0, "x"):
        with pytest.raises(ValueError, match="level must be a probability"):
            check_level(bad)


def test_check_counts_and_options():
    df = pd.DataFrame({"n": [0, 3, 7]})
    np.testing.assert_array_equal(check_counts(df, "n"), [0.0, 3.0, 7.0])
    for values, match in [
        ([1, -2], "negative"),
        ([1.5, 2], "non-integer"),
        ([1, np.nan], "NaN"),
        (["a", "b"], "expected numeric"),
    ]:
        with pytest.raises(ValueError, match=f"count column 'n' has .*{match}"):
            check_counts(pd.DataFrame({"n": values}), "n")
    with pytest.raises(ValueError, match="value column 'm' not found"):
        check_counts(df, "m")
    check_options("cp", {"damping": 0.5}, ["damping"])
    with pytest.raises(ValueError, match=r"\['kernel'\] not accepted by model='poisson-tucker'"):
        check_options("poisson-tucker", {"kernel": "x"}, ["method"])


def test_non_finite_results_are_errors():
    check_finite_result("x", np.ones(3), 2.0)
    with pytest.raises(ValueError, match=r"the prediction came out non-finite \(1 of 3"):
        check_finite_result("the prediction", np.array([1.0, np.nan, 2.0]))
