"""scikit-learn estimators: the official estimator checks, pipelines, pickling, formulas."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from kanlens.sklearn import KANClassifier, KANRegressor

# Small and fast: the checks fit dozens of times on tiny data.
FAST = {"hidden_layer_sizes": (3,), "grid": 3, "steps": 3}


@parametrize_with_checks([KANRegressor(**FAST)])
def test_sklearn_estimator_checks_regressor(estimator, check) -> None:
    check(estimator)


@pytest.mark.slow  # ~55 more fits; the classifier shares all of its machinery with the regressor
@parametrize_with_checks([KANClassifier(**FAST)])
def test_sklearn_estimator_checks_classifier(estimator, check) -> None:
    check(estimator)


def _data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, (n, 3))
    y = np.sin(np.pi * X[:, 0]) + X[:, 1] ** 2
    return X, y


def test_regressor_fits_smooth_function() -> None:
    X, y = _data()
    reg = KANRegressor(steps=20)
    assert reg.fit(X, y) is reg
    assert reg.predict(X).shape == (200,)
    Xt, yt = _data(seed=1)
    assert reg.score(Xt, yt) > 0.99
    assert reg.model_.width == [3, 5, 1] and reg.n_features_in_ == 3
    assert len(reg.history_.train_loss) == reg.n_iter_ == 20


def test_params_are_keyword_only_and_round_trip() -> None:
    with pytest.raises(TypeError):
        KANRegressor((5,))  # type: ignore[misc]
    reg = KANRegressor(steps=7, grid=4)
    assert reg.get_params()["steps"] == 7 and reg.get_params()["grid"] == 4
    reg.set_params(steps=9, hidden_layer_sizes=(2, 2))
    assert clone(reg).get_params() == reg.get_params()
    assert set(KANRegressor().get_params()) - set(KANClassifier().get_params()) == {"symbolic", "lib", "time_budget"}


def test_pipeline_cross_val_score() -> None:
    X, y = _data(150)
    pipe = make_pipeline(StandardScaler(), KANRegressor(steps=10, normalize=False))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9


def test_multi_output_and_bad_params() -> None:
    X, y = _data(100)
    Y = np.column_stack([y, 2 * y])
    reg = KANRegressor(steps=5).fit(X, Y)
    assert reg.predict(X).shape == (100, 2) and reg.model_.width[-1] == 2
    with pytest.raises(ValueError, match="dtype"):
        KANRegressor(dtype="float16").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        KANRegressor(hidden_layer_sizes=(0,)).fit(X, y)
    with pytest.raises(ValueError, match="opt"):
        KANRegressor(opt="SGDD").fit(X, y)


def test_pickle_round_trip_is_exact() -> None:
    X, y = _data(80)
    reg = KANRegressor(steps=3).fit(X, y)
    back = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(back.predict(X), reg.predict(X))
    assert back.model_.acts == [] and back.model_.save_act is False


def test_predict_does_not_change_the_model() -> None:
    X, y = _data(80)
    reg = KANRegressor(steps=3).fit(X, y)
    state = {k: v.clone() for k, v in reg.model_.state_dict().items() if hasattr(v, "clone")}
    reg.predict(X[:5])
    assert reg.model_.acts == []
    for k, v in reg.model_.state_dict().items():
        if hasattr(v, "clone"):
            assert (v == state[k]).all()


def test_classifier_learns_two_moons_like_boundary() -> None:
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, (300, 2))
    y = np.where(X[:, 1] > np.sin(np.pi * X[:, 0]) / 2, "up", "down")
    clf = KANClassifier(steps=15).fit(X, y)
    assert list(clf.classes_) == ["down", "up"]
    proba = clf.predict_proba(X)
    assert proba.shape == (300, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-12)
    assert clf.score(X, y) > 0.95
    assert clf.decision_function(X).shape == (300,)


def test_formula_methods_need_symbolic() -> None:
    X, y = _data(50)
    reg = KANRegressor(steps=2).fit(X, y)
    with pytest.raises(ValueError, match="symbolic=True"):
        reg.sympy()


def test_symbolic_regressor_recovers_affine_law_in_original_units() -> None:
    """With normalize=True the formula is mapped back to the raw feature units."""
    import sympy

    rng = np.random.RandomState(0)
    X = rng.uniform(0, 10, (200, 2))
    y = 3 * X[:, 0] + 2
    reg = KANRegressor(symbolic=True, hidden_layer_sizes=(1,), steps=5).fit(X, y)
    x1 = sympy.Symbol("x1")
    expr = reg.sympy()
    assert expr.free_symbols == {x1}
    assert abs(float(expr.subs(x1, 0)) - 2) < 1e-6 and abs(float(expr.subs(x1, 1) - expr.subs(x1, 0)) - 3) < 1e-6
    np.testing.assert_allclose(reg.predict(X), y, rtol=1e-6, atol=1e-6)
    assert reg.n_iter_ >= 2 * 5  # the schedule's stages as reported by the search: at least a sparse and a plain fit
    assert "x_{1}" in reg.latex()
    table = reg.equations()
    assert "»" in table and sum(r["chosen"] for r in reg.equations_) == 1
    back = pickle.loads(pickle.dumps(reg))
    np.testing.assert_allclose(back.predict(X), reg.predict(X))


def test_symbolic_time_budget_is_checked():
    import numpy as np

    X = np.random.default_rng(0).uniform(-1, 1, (40, 2))
    with pytest.raises(ValueError, match="time_budget must be a positive number"):
        KANRegressor(symbolic=True, steps=2, time_budget=0).fit(X, X[:, 0])
