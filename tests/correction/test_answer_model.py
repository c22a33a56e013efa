"""The answer model on scikit-learn: the stated objective's optimum, all classes, both kinds."""

from __future__ import annotations

import numpy as np
import pytest

from a2lc.correction.answer_model import (
    cross_fitted_wrong,
    fit_answer_model,
    fit_logistic,
)


def _data(n: int, d: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 20, d) + rng.normal(size=d)
    w = rng.normal(size=(d, classes))
    y = ((x - x.mean(0)) / x.std(0) @ w + rng.gumbel(size=(n, classes))).argmax(axis=1)
    return x, y


def _objective_gradient(x: np.ndarray, y: np.ndarray, model: object, l2: float) -> np.ndarray:
    """Gradient of ``mean −log P(y) + l2/2 ‖W‖²`` (standardised inputs, bias unpenalised)
    at the fitted weights, in the symmetric multinomial form (two classes: ±w/2)."""
    scaler, logistic = model.estimator[0], model.estimator[-1]  # type: ignore[attr-defined]
    z = scaler.transform(x)
    coef, intercept = logistic.coef_, logistic.intercept_
    if coef.shape[0] == 1:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.asarray([-intercept[0] / 2, intercept[0] / 2])
    logits = z @ coef.T + intercept
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    classes = model.classes  # type: ignore[attr-defined]
    target = (y[:, None] == classes[None, :]).astype(float)
    residual = (p - target) / y.size
    return np.concatenate([(z.T @ residual + l2 * coef.T).ravel(), residual.sum(axis=0)])


@pytest.mark.parametrize(("classes", "l2"), [(5, 1e-2), (2, 1e-2), (11, 1e-3)])
def test_logistic_reaches_the_penalised_likelihood_optimum(classes: int, l2: float) -> None:
    # The objective the hand-written L-BFGS fit minimised before scikit-learn took over:
    # its gradient vanishes at scikit-learn's solution (two classes included, where
    # scikit-learn fits one weight vector and C is doubled to keep the same penalty).
    x, y = _data(400, 12, classes)
    model = fit_logistic(x, y, num_classes=classes, l2=l2)
    assert np.abs(_objective_gradient(x, y, model, l2)).max() < 1e-5


def test_probabilities_cover_every_class_and_are_deterministic() -> None:
    x, y = _data(300, 6, 3)
    y = np.where(y == 1, 4, y)  # answers 0, 2, 4 of 6 classes
    for kind in ("logistic", "boosting"):
        a = fit_answer_model(x, y, num_classes=6, kind=kind, seed=3)  # type: ignore[arg-type]
        b = fit_answer_model(x, y, num_classes=6, kind=kind, seed=3)  # type: ignore[arg-type]
        p = a.probabilities(x[:50])
        assert p.shape == (50, 6)
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        assert (p[:, [1, 3, 5]] == 0).all()
        np.testing.assert_array_equal(p, b.probabilities(x[:50]))
        assert (p.argmax(axis=1) == y[:50]).mean() > 0.6
        assert a.probabilities(x[:0]).shape == (0, 6)


def test_bad_inputs_are_refused() -> None:
    x, y = _data(50, 3, 3)
    with pytest.raises(ValueError, match="at least two distinct answers"):
        fit_answer_model(x, np.zeros(50, dtype=int), num_classes=3)
    with pytest.raises(ValueError, match=r"answers must be in \[0, 3\)"):
        fit_answer_model(x, y + 1, num_classes=3)
    with pytest.raises(ValueError, match="x must be"):
        fit_answer_model(x[:, 0], y, num_classes=3)
    with pytest.raises(ValueError, match="kind must be one of"):
        fit_answer_model(x, y, num_classes=3, kind="forest")  # type: ignore[arg-type]


def test_cross_fitted_wrong_never_sees_its_own_answer() -> None:
    # Each answered segment's P(wrong) comes from a model fitted on the other folds.
    x, y = _data(200, 4, 3, seed=5)
    labels = y.copy()
    labels[::4] = (y[::4] + 1) % 3  # a quarter of the labels wrong
    fallback = np.full(200, 0.5)
    out = cross_fitted_wrong(
        x, y, labels, fallback, num_classes=3, kind="logistic", l2=1e-2, folds=5, seed=0
    )
    assert out.shape == (200,)
    assert ((out >= 0) & (out <= 1)).all()
    again = cross_fitted_wrong(
        x, y, labels, fallback, num_classes=3, kind="logistic", l2=1e-2, folds=5, seed=0
    )
    np.testing.assert_array_equal(out, again)
    # The wrong labels score higher than the right ones out of fold.
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y != labels, out) > 0.8
    # Every fold held out: no value is left at the fallback.
    assert not np.isclose(out, 0.5).any()
