"""Which failed predictions deserve a new one: the provider's error text, classified."""

from __future__ import annotations

import pytest

from pipeline.errors import PredictionFailed, PredictionInputUnreachable
from pipeline.prediction_errors import FailureClassifier, classify_failure


@pytest.mark.parametrize(
    "error",
    [
        "input image could not be fetched: ReadError",  # the emulator's wording
        "input image could not be fetched: HTTP 503",
        "Failed to download input file",
        "error downloading image from URL",
        "Unable to fetch the input: connection reset",
        "File could not be downloaded",
    ],
)
def test_download_failures_are_input_unreachable_and_transient(error: str) -> None:
    failure = classify_failure(error)
    assert isinstance(failure, PredictionInputUnreachable)
    assert failure.transient
    assert failure.code == "prediction_input_unreachable"
    assert error in failure.message


@pytest.mark.parametrize(
    "error",
    [
        "CUDA out of memory",
        "Prediction interrupted; please retry (code: PA)",
        "NSFW content detected",
        "",
        None,
    ],
)
def test_other_failures_are_final(error: str | None) -> None:
    failure = classify_failure(error)
    assert type(failure) is PredictionFailed
    assert not failure.transient
    assert failure.code == "prediction_failed"


def test_the_pattern_is_a_setting_and_empty_turns_it_off() -> None:
    assert isinstance(
        classify_failure("weights gone", pattern="weights"), PredictionInputUnreachable
    )
    assert type(classify_failure("could not be fetched", pattern="")) is PredictionFailed


def test_the_classifier_answers_as_classify_failure_with_its_pattern() -> None:
    default, custom = FailureClassifier(), FailureClassifier(pattern="weights")
    assert isinstance(default.classify("File could not be downloaded"), PredictionInputUnreachable)
    assert type(default.classify("weights gone")) is PredictionFailed
    assert isinstance(custom.classify("weights gone"), PredictionInputUnreachable)
    assert default.input_unreachable("input image could not be fetched: HTTP 503")
    assert not default.input_unreachable("CUDA out of memory")
    assert not default.input_unreachable(None)
    assert not FailureClassifier(pattern="").input_unreachable("could not be fetched")
