"""Champion or challenger: the rule that decides whether a training run's winner is served.

:func:`decide` is pure (no MLflow, no model): the best non-baseline candidate by the selection
metric wins; it takes the ``champion`` alias if there is no champion yet, if the champion could not
score the held-out rows, or if it scores strictly better than the champion on the *same* rows;
otherwise it becomes ``challenger`` and the champion stays.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

CHAMPION = "champion"
CHALLENGER = "challenger"  # a registered winner that did not beat the champion on the same held-out rows


@dataclass(frozen=True)
class Incumbent:
    """The current champion as scored on this run's held-out rows."""

    version: str
    kind: str | None = None
    score: float | None = None  # None: it could not score the rows
    error: str | None = None
    proba: np.ndarray | None = field(default=None, repr=False, compare=False)  # its held-out probabilities


@dataclass(frozen=True)
class Decision:
    winner: str
    winner_score: float
    promote: bool
    reason: str
    previous_score: float | None  # the incumbent's score on the same rows; None when it had none

    @property
    def alias(self) -> str:
        return CHAMPION if self.promote else CHALLENGER


def decide(scores: Mapping[str, float], incumbent: Incumbent | None, baseline: str | None = None) -> Decision:
    """The winner among ``scores`` (candidate -> selection metric; ``baseline`` never wins) and whether
    it replaces ``incumbent``. Ties keep the champion; a NaN score never wins."""
    contenders = {k: v for k, v in scores.items() if k != baseline and not math.isnan(v)}
    if not contenders:
        raise ValueError(f"no candidate besides the baseline has a score: {dict(scores)}")
    winner = max(contenders, key=contenders.__getitem__)
    score = contenders[winner]
    if incumbent is None:
        return Decision(winner, score, True, "first champion", None)
    if incumbent.score is None or math.isnan(incumbent.score):
        return Decision(winner, score, True, "champion could not score the held-out rows", None)
    promote = score > incumbent.score
    reason = "beats the champion" if promote else "does not beat the champion"
    return Decision(winner, score, promote, reason, incumbent.score)
