"""The champion rule on its own: no model, no MLflow."""

import math

import pytest

from models.champion import CHALLENGER, CHAMPION, Incumbent, decide


def test_the_first_winner_becomes_champion():
    d = decide({"logistic": 0.40, "lightgbm": 0.45}, None)
    assert (d.winner, d.winner_score, d.promote, d.alias) == ("lightgbm", 0.45, True, CHAMPION)
    assert d.reason == "first champion" and d.previous_score is None


def test_the_baseline_never_wins_even_when_it_scores_best():
    d = decide({"rules": 0.9, "logistic": 0.3, "lightgbm": 0.2}, None, baseline="rules")
    assert d.winner == "logistic"


def test_a_better_winner_replaces_the_champion():
    d = decide({"lightgbm": 0.50}, Incumbent("3", "logistic", 0.45))
    assert d.promote and d.alias == CHAMPION and d.reason == "beats the champion" and d.previous_score == 0.45


@pytest.mark.parametrize("champion_score", [0.50, 0.55])
def test_a_tie_or_a_worse_winner_is_challenger_and_the_champion_stays(champion_score):
    d = decide({"lightgbm": 0.50}, Incumbent("3", "lightgbm", champion_score))
    assert not d.promote and d.alias == CHALLENGER and d.reason == "does not beat the champion"


@pytest.mark.parametrize("failed", [Incumbent("3", error="schema mismatch"), Incumbent("3", "x", math.nan)])
def test_a_champion_that_cannot_score_the_rows_is_replaced(failed):
    d = decide({"lightgbm": 0.1}, failed)
    assert d.promote and d.reason == "champion could not score the held-out rows" and d.previous_score is None


def test_a_nan_score_never_wins_and_no_contender_is_an_error():
    assert decide({"logistic": math.nan, "lightgbm": 0.2}, None).winner == "lightgbm"
    with pytest.raises(ValueError, match="no candidate"):
        decide({"rules": 0.5}, None, baseline="rules")
