"""Voices score proposals from their own evidence; combine learns which to trust (issue #35)."""

from __future__ import annotations

import numpy as np
import pytest

from a2lc.correction.voices import (
    MIN_TRAINING,
    VOICES,
    VoiceInputs,
    combine,
    image_voice,
    neighbours_voice,
    voice_matrix,
)
from a2lc.errors import UnknownNameError


def inputs(**overrides: object) -> VoiceInputs:
    """Segments 0–1 are proposals (label 0 → class 1); 2–5 were answered."""
    base: dict[str, object] = {
        "labels": np.array([0, 0, 0, 0, 0, 2]),
        "proposed": np.array([1, 1, 0, 0, 0, 0]),
        "answer_probabilities": np.array([[0.2, 0.7, 0.1], [0.5, 0.4, 0.1], *[[1, 0, 0]] * 4]),
        "round_probabilities": np.array([[0.1, 0.8, 0.1], [0.9, 0.05, 0.05], *[[1, 0, 0]] * 4]),
        # 0 is close to 2 and 3, 1 to 4; 5 (another label) is close to everything
        "embedding": np.array(
            [[1, 0, 0], [0, 1, 0], [1, 0.1, 0], [1, -0.1, 0], [0, 1, 0.1], [1, 1, 0]], float
        ),
        "image": np.array([0, 1, 0, 0, 1, 1]),
        "answered": np.array([2, 3, 4, 5]),
        "answered_label": np.array([0, 0, 0, 2]),
        "answered_class": np.array([1, 1, 0, 1]),
    }
    base.update(overrides)
    return VoiceInputs(**base)  # type: ignore[arg-type]


def test_the_model_voices_read_the_proposed_class() -> None:
    got = voice_matrix(inputs(), ("answer", "round"))
    np.testing.assert_allclose(got[:2], [[0.7, 0.8], [0.4, 0.05]])


def test_neighbours_count_nearest_answers_with_the_same_label() -> None:
    got = neighbours_voice(inputs(), k=2)
    # segment 0: its two nearest same-label answers (2, 3) both said 1 → (2 + ½) / 3
    # segment 1: nearest are 4 (said 0) and one of 2/3 (said 1) → (1 + ½) / 3
    np.testing.assert_allclose(got[:2], [2.5 / 3, 1.5 / 3])
    assert (neighbours_voice(inputs(embedding=None)) == 0.5).all()


def test_image_counts_answers_of_the_same_image_and_label() -> None:
    got = image_voice(inputs())
    # image 0, label 0: answers 2, 3 said 1 → 2.5 / 3; image 1, label 0: answer 4 said 0
    np.testing.assert_allclose(got[:2], [2.5 / 3, 0.5 / 2])


def test_combine_falls_back_on_the_first_voice_then_learns_which_voice_tells() -> None:
    rng = np.random.default_rng(0)
    voices = rng.random((50, 2))
    few = combine(voices, training=voices[:5], training_right=np.ones(5, dtype=bool))
    assert not few.learned
    np.testing.assert_array_equal(few.scores, voices[:, 0])
    training = rng.random((400, 2))
    right = rng.random(400) < training[:, 1]  # the second voice tells, the first does not
    learned = combine(voices, training=training, training_right=right)
    assert learned.learned
    assert learned.weights[1] > 3 * abs(learned.weights[0])
    assert np.corrcoef(learned.scores, voices[:, 1])[0, 1] > 0.95
    assert MIN_TRAINING <= 400


def test_voices_are_registered_and_inputs_checked() -> None:
    assert VOICES.names() == ["answer", "image", "neighbours", "round"]
    with pytest.raises(UnknownNameError, match="valid names: answer, image, neighbours, round"):
        voice_matrix(inputs(), ("answer", "oracle"))
    with pytest.raises(ValueError, match="proposed must be"):
        inputs(proposed=np.array([1]))
    with pytest.raises(ValueError, match="answered, answered_label"):
        inputs(answered_label=np.array([0]))
    with pytest.raises(ValueError, match="training_right"):
        combine(np.zeros((2, 2)), training=np.zeros((3, 2)), training_right=np.zeros(2, bool))
