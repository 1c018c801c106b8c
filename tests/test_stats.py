"""Correlation coefficients against values worked by hand."""
import math

import pytest

from uexlib.stats import correlations, kendall_tau


def test_perfect_and_reversed_orders():
    monotone = correlations([1, 2, 3, 4], [10, 20, 30, 45])
    assert monotone["spearman"] == pytest.approx(1.0) and monotone["kendall"] == pytest.approx(1.0)
    assert 0.9 < monotone["pearson"] < 1.0
    assert correlations([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx({"pearson": -1.0, "spearman": -1.0,
                                                                     "kendall": -1.0})


def test_values_worked_by_hand():
    # x = 1..5, y = 2 1 4 3 5: 8 concordant and 2 discordant pairs of 10; rank differences 1 1 1 1 0.
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    result = correlations(x, y)
    assert result["kendall"] == pytest.approx(0.6)
    assert result["spearman"] == pytest.approx(1 - 6 * 4 / (5 * 24))
    assert result["pearson"] == pytest.approx(0.8)


def test_ties_use_tau_b():
    # x has one tie: untied pairs 5 of 6 in x, 6 of 6 in y; concordant 5 -> 5 / sqrt(30).
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))


def test_too_few_points_and_bad_lengths():
    assert all(math.isnan(v) for v in correlations([1, 2], [2, 1]).values())
    with pytest.raises(ValueError, match="same length"):
        correlations([1, 2, 3], [1, 2])
