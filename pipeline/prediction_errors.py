"""What a failed prediction's error says: the model's failure, or an input it never got.

Replicate ends a prediction ``failed`` both when the model raises and when the input file could
not be downloaded before the model ran (Cog fetches URL inputs first). The two call for
different answers: a model failure on an image is final (a second paid prediction would fail
the same way), while an input download that failed because our object storage was briefly
unreachable deserves a new prediction. The provider's API has no field for the difference
(the prediction's ``error`` is free text), so it is told by that text: the default pattern
covers the emulator's wording ("input image could not be fetched") and the common phrasings of
download failures; ``IMAGEOPT_INPUT_FETCH_ERROR_PATTERN`` replaces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pipeline.errors import PredictionFailed, PredictionInputUnreachable

DEFAULT_INPUT_FETCH_ERROR_PATTERN = (
    r"could not be (fetched|downloaded)"
    r"|(failed|unable|error) (to |while |when )?(download|fetch)(ing)? "
    r"(the )?(input|file|image|url)"
)
"""Case-insensitive regular expression over a failed prediction's ``error``."""


@lru_cache(maxsize=8)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def classify_failure(
    error: str | None, *, pattern: str = DEFAULT_INPUT_FETCH_ERROR_PATTERN
) -> PredictionFailed:
    """The error to raise for a prediction that ended ``failed`` with ``error``.

    Args:
        error: the prediction's ``error`` field (free text; None when the provider gave none).
        pattern: regular expression (case-insensitive) that marks an input download failure;
            an empty pattern turns the distinction off.

    Returns:
        :class:`PredictionInputUnreachable` (transient: a new prediction may succeed) when
        ``error`` matches ``pattern``, else :class:`PredictionFailed` (permanent). The message
        keeps the provider's text for ops (``error_message``); callers see the code's public
        sentence only.
    """
    message = f"prediction failed: {error or 'no error given'}"
    if error and pattern and _compiled(pattern).search(error):
        return PredictionInputUnreachable(message)
    return PredictionFailed(message)


@dataclass(frozen=True)
class FailureClassifier:
    """The one reading of failed predictions that the polling workers and the scheduler's
    rescuer share (``IMAGEOPT_INPUT_FETCH_ERROR_PATTERN``).

    Attributes:
        pattern: regular expression (case-insensitive) over a failed prediction's ``error``
            that marks an input the provider could not download; empty turns it off.
    """

    pattern: str = DEFAULT_INPUT_FETCH_ERROR_PATTERN

    def classify(self, error: str | None) -> PredictionFailed:
        """The error to raise for a prediction that ended ``failed`` with ``error``
        (:func:`classify_failure` with this pattern)."""
        return classify_failure(error, pattern=self.pattern)

    def input_unreachable(self, error: str | None) -> bool:
        """Whether a prediction that ended ``failed`` with ``error`` never got its input (a
        new prediction may succeed), rather than failing in the model."""
        return isinstance(self.classify(error), PredictionInputUnreachable)
