"""scikit-learn estimators: :class:`KANRegressor` and :class:`KANClassifier` (``pip install kanlens[sklearn]``).

They follow scikit-learn's conventions (keyword-only hyper-parameters stored untouched, ``fit`` returns ``self``,
fitted attributes end in ``_``), so they work in ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``. Inside,
they build a :class:`kanlens.KAN` of width ``[n_features, *hidden_layer_sizes, n_outputs]`` and train it with
:func:`kanlens.fit`.

Example:
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.model_selection import cross_val_score
    >>> pipe = make_pipeline(StandardScaler(), KANRegressor(steps=20))
    >>> cross_val_score(pipe, X, y, cv=3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data
except ImportError as e:  # pragma: no cover - exercised only without scikit-learn >= 1.6
    raise ImportError(
        "kanlens.sklearn needs scikit-learn >= 1.6: pip install 'kanlens[sklearn]'"
    ) from e

from ._checks import check_choice
from .model import KAN, KANConfig
from .training import FitHistory, fit

__all__ = ["KANClassifier", "KANRegressor"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _num(v: float) -> Any:
    import sympy

    v = float(v)
    return sympy.Integer(int(v)) if v.is_integer() else sympy.Float(v, 17)


class _KANBase(BaseEstimator):
    """Shared parameters and training loop of the two estimators (not public)."""

    def __init__(
        self,
        *,
        hidden_layer_sizes: Sequence[int] = (5,),
        grid: int = 5,
        k: int = 3,
        opt: str = "LBFGS",
        steps: int = 50,
        lr: float | None = None,
        batch: int = -1,
        lamb: float = 0.0,
        lamb_entropy: float = 2.0,
        update_grid: bool = True,
        normalize: bool = True,
        random_state: int | np.random.RandomState | None = 0,
        device: str = "cpu",
        dtype: str = "float64",
        progress: bool = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.grid = grid
        self.k = k
        self.opt = opt
        self.steps = steps
        self.lr = lr
        self.batch = batch
        self.lamb = lamb
        self.lamb_entropy = lamb_entropy
        self.update_grid = update_grid
        self.normalize = normalize
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.progress = progress

    # ------------------------------------------------------------------ helpers
    def _hidden(self) -> list[int]:
        h = self.hidden_layer_sizes
        if h is None:  # the plain KAN's default; a symbolic search chooses its own (see KANRegressor)
            return [5]
        if isinstance(h, (int, np.integer)) and not isinstance(h, bool):
            h = [int(h)]
        try:
            h = [int(v) for v in h]
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be a sequence of ints, got {self.hidden_layer_sizes!r}") from None
        if any(v < 1 for v in h):
            raise ValueError(f"hidden_layer_sizes entries must be >= 1, got {self.hidden_layer_sizes!r}")
        return h

    def _torch_dtype(self) -> torch.dtype:
        check_choice("dtype", self.dtype, tuple(_DTYPES))
        return _DTYPES[self.dtype]

    def _seed(self) -> int:
        rs = self.random_state
        if isinstance(rs, (int, np.integer)) and not isinstance(rs, bool):
            return int(rs)
        return int(check_random_state(rs).randint(0, 2**31 - 1))

    def _scale_x(self, X: np.ndarray) -> torch.Tensor:
        Xs = (X - self.x_mean_) / self.x_scale_ if self.normalize else X
        return torch.as_tensor(np.ascontiguousarray(Xs), dtype=self._torch_dtype(), device=self.device)

    def _set_x_scaling(self, X: np.ndarray) -> None:
        if self.normalize:
            self.x_mean_ = X.mean(axis=0)
            sd = X.std(axis=0)
            self.x_scale_ = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(self.x_mean_)), sd, 1.0)
        else:
            self.x_mean_ = np.zeros(X.shape[1])
            self.x_scale_ = np.ones(X.shape[1])

    def _train(self, X: np.ndarray, Y: np.ndarray, n_out: int, loss_fn: Any = None) -> None:
        """Fit ``self.model_`` on float arrays ``X (n, d)`` and targets ``Y (n, n_out)``."""
        self._set_x_scaling(X)
        width = [X.shape[1], *self._hidden(), n_out]
        dt = self._torch_dtype()
        self.model_ = KAN(width=width, grid=self.grid, k=self.k, seed=self._seed(), dtype=dt, device=self.device)
        xt = self._scale_x(X)
        yt = torch.as_tensor(np.ascontiguousarray(Y), dtype=dt, device=self.device)
        data = {"train_input": xt, "train_label": yt, "test_input": xt, "test_label": yt}
        self.history_: FitHistory = fit(
            self.model_, data, opt=self.opt, steps=self.steps, lr=self.lr, batch=self.batch, lamb=self.lamb,
            lamb_entropy=self.lamb_entropy, update_grid=self.update_grid and X.shape[0] > 1, loss_fn=loss_fn,
            progress=self.progress,
        )
        self.n_iter_ = len(self.history_.train_loss)
        self._set_importances(X)
        self._freeze()

    def _freeze(self) -> None:
        # predict must not change the fitted model: stop keeping the last batch's activations
        self.model_.save_act = False
        self.model_.acts = []

    def _set_importances(self, X: np.ndarray) -> None:
        """``feature_importances_``: the KAN's attribution score of every input, normalised to sum to 1."""
        from .pruning import feature_score

        model = self.model_
        ids = model.config.input_ids
        x = self._scale_x(X)
        score = feature_score(model, x if ids is None else x[:, ids]).detach().cpu().double().numpy()
        full = np.zeros(X.shape[1])
        full[ids if ids is not None else slice(None)] = np.nan_to_num(score, nan=0.0, posinf=0.0)
        total = full.sum()
        self.feature_importances_ = full / total if total > 0 else np.full(X.shape[1], 1.0 / X.shape[1])

    def _variable_names(self) -> list[str]:
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            return [f"x{i + 1}" for i in range(self.n_features_in_)]
        used: set[str] = set()
        out = []
        for n in names:
            v = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in str(n)) or "x"
            v = v if v[0].isalpha() else f"x_{v}"
            while v in used:
                v += "_"
            used.add(v)
            out.append(v)
        return out

    def plot(self, X: Any, **kwargs: Any) -> Any:
        """Draw the fitted KAN (:func:`kanlens.plotting.plot_kan`) on data ``X`` in the original feature units.

        Inputs are labelled with the feature names; keyword arguments go to ``plot_kan`` (``path=``, ``beta=``...).
        Returns the matplotlib ``Figure``.
        """
        from .plotting import plot_kan

        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        x = self._scale_x(X)
        ids = self.model_.config.input_ids
        names = self._variable_names()
        kwargs.setdefault("in_vars", names if ids is None else [names[i] for i in ids])
        return plot_kan(self.model_, x if ids is None else x[:, ids], **kwargs)

    def _forward(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64)
        with torch.no_grad():
            out = self.model_(self._scale_x(X))
        return out.detach().cpu().double().numpy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

    # Pickle the fitted KAN as (config, tensors) rather than as a module object: robust across kanlens versions
    # and independent of what the symbolic library holds (functions are stored by name).
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        model = state.get("model_")
        if isinstance(model, KAN):
            state = dict(state)
            state["model_"] = {
                "kanlens_config": model.config.to_dict(),
                "state_dict": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
                               for k, v in model.state_dict().items()},
                "device": str(model.device),
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        blob = state.get("model_")
        if isinstance(blob, dict) and "kanlens_config" in blob:
            state = dict(state)
            model = KAN(config=KANConfig.from_dict(blob["kanlens_config"]))
            model.load_state_dict(blob["state_dict"])
            state["model_"] = model.to(blob["device"]) if blob["device"] != "cpu" else model
        super().__setstate__(state)
        if isinstance(getattr(self, "model_", None), KAN):
            self._freeze()


class KANRegressor(RegressorMixin, _KANBase):
    """A KAN as a scikit-learn regressor (single or multi-output).

    ``symbolic=True`` trains with the shared schedule (:func:`kanlens.schedule.train_schedule`: sparse fit,
    prune, refine) inside the formula search. The plain estimator is one :func:`kanlens.fit` by design: its
    hyperparameters (``hidden_layer_sizes``, ``opt``, ``steps``, ``lamb``, ...) describe the model that is
    trained, so ``GridSearchCV`` and ``clone`` mean what they say (pruning would change the widths asked for,
    and the schedule's keep-or-undo decisions need held-out data that ``fit(X, y)`` does not have).

    Args:
        hidden_layer_sizes: hidden widths; the KAN is ``[n_features, *hidden_layer_sizes, n_outputs]``. ``None``
            (default): ``(5,)`` for a plain KAN; with ``symbolic=True`` the search chooses the network from the
            data (:func:`kanlens.symbolic.search.auto_width`, then sparsification and pruning).
        grid, k: spline grid intervals and order.
        opt, steps, lr, batch, lamb, lamb_entropy, update_grid: passed to :func:`kanlens.fit`.
        normalize: standardise inputs and targets inside the estimator (undone in :meth:`predict` and in
            :meth:`sympy`), so raw tabular data meets the spline grids where they are. For readable formulas of
            data that is already in a small range, ``normalize=False`` avoids the ``(x - mean) / scale`` terms.
        symbolic: recover a closed-form formula with :func:`kanlens.symbolic.search.symbolic_regression`
            (sparse fit, prune, refine, ``auto_symbolic``, joint refit and snapping of constants; ``steps`` LBFGS
            steps per stage, ``lamb`` defaults to 0.01 there); :meth:`predict` then evaluates the chosen formula.
        lib: names of the symbolic functions to try (default: kanlens's library); only with ``symbolic=True``.
        time_budget: CPU seconds for the formula search with ``symbolic=True``, a hard limit (training included;
            the best formula so far is kept; on noisy data no formula is exact, so without a budget every
            separability and pair test runs); ``None``: no limit.
        random_state: seed of the KAN's initialisation and mini-batch order (``None``: a random seed).
        device: torch device (``"cpu"``, ``"cuda"``).
        dtype: ``"float64"`` (default, matches scikit-learn's numerics) or ``"float32"``.
        progress: show the training progress bar.

    Attributes:
        model_: the trained :class:`kanlens.KAN` (on standardised data when ``normalize``; after ``auto_symbolic``
            when ``symbolic``).
        history_: the :class:`kanlens.FitHistory` of the training run (``None`` with ``symbolic``).
        n_features_in_, feature_names_in_: as in scikit-learn.
        x_mean_, x_scale_, y_mean_, y_scale_: the standardisation constants (zeros and ones without ``normalize``).
        n_iter_: optimisation steps run (with ``symbolic``: summed over the training stages of the search).
        feature_importances_: attribution score of every feature (:func:`kanlens.pruning.feature_score`),
            normalised to sum to 1; works with ``SelectFromModel``.
        formulas_: with ``symbolic``, the chosen formula per output (sympy, original units and feature names).
        equations_: with ``symbolic``, the candidate formulas (Pareto front, simplest first) as a list of dicts
            ``{"complexity", "train_nrmse", "source", "formulas", "chosen"}``; :meth:`equations` prints them.

    Shapes:
        ``X``: ``(n_samples, n_features)``; ``y``: ``(n_samples,)`` or ``(n_samples, n_outputs)``; ``predict``
        returns the same rank as the ``y`` it was fitted on.

    Example:
        >>> reg = KANRegressor(hidden_layer_sizes=(5,), steps=20).fit(X, y)
        >>> reg.score(X, y) > 0.9
        True
        >>> sym = KANRegressor(symbolic=True, normalize=False).fit(X, y)
        >>> sym.sympy(), sym.latex()  # the formula, in the original feature names
    """

    def __init__(
        self,
        *,
        hidden_layer_sizes: Sequence[int] | None = None,
        grid: int = 5,
        k: int = 3,
        opt: str = "LBFGS",
        steps: int = 50,
        lr: float | None = None,
        batch: int = -1,
        lamb: float = 0.0,
        lamb_entropy: float = 2.0,
        update_grid: bool = True,
        normalize: bool = True,
        symbolic: bool = False,
        lib: Sequence[str] | None = None,
        time_budget: float | None = 60.0,
        random_state: int | np.random.RandomState | None = 0,
        device: str = "cpu",
        dtype: str = "float64",
        progress: bool = False,
    ) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, grid=grid, k=k, opt=opt, steps=steps, lr=lr, batch=batch,
            lamb=lamb, lamb_entropy=lamb_entropy, update_grid=update_grid, normalize=normalize,
            random_state=random_state, device=device, dtype=dtype, progress=progress,
        )
        self.symbolic = symbolic
        self.lib = lib
        self.time_budget = time_budget

    def fit(self, X: Any, y: Any) -> KANRegressor:
        """Train a new KAN on ``X, y`` and return ``self``."""
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True, ensure_min_samples=2)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        Y = y[:, None] if y.ndim == 1 else y
        if self.normalize:
            self.y_mean_ = Y.mean(axis=0)
            sd = Y.std(axis=0)
            self.y_scale_ = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(self.y_mean_)), sd, 1.0)
        else:
            self.y_mean_, self.y_scale_ = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        for attr in ("formulas_", "formula_exact_", "equations_"):
            self.__dict__.pop(attr, None)
        if self.symbolic:
            self._set_x_scaling(X)
            self._fit_symbolic(X, Y)
        else:
            self._train(X, (Y - self.y_mean_) / self.y_scale_, Y.shape[1])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``(n_samples,)`` (or ``(n_samples, n_outputs)`` for multi-output targets).

        With ``symbolic=True`` the chosen formulas are evaluated (numpy), otherwise the KAN.
        """
        if getattr(self, "formulas_", None) is not None:
            X = validate_data(self, X, reset=False, dtype=np.float64)
            out = np.column_stack([self._evaluate(e, X) for e in self.formulas_])
            return out[:, 0] if self._y_1d else out
        out = self._forward(X) * self.y_scale_ + self.y_mean_
        return out[:, 0] if self._y_1d else out

    # ------------------------------------------------------------------ symbolic
    def _fit_symbolic(self, X: np.ndarray, Y: np.ndarray) -> None:
        """Run :func:`kanlens.symbolic.search.symbolic_regression` on the (standardised) data."""
        import sympy

        from .symbolic.search import auto_width, symbolic_regression

        dt = self._torch_dtype()
        xt = self._scale_x(X)
        yt = torch.as_tensor(np.ascontiguousarray((Y - self.y_mean_) / self.y_scale_), dtype=dt, device=self.device)
        data = {"train_input": xt, "train_label": yt, "test_input": xt, "test_label": yt}
        names = self._variable_names()
        width = (auto_width(data) if self.hidden_layer_sizes is None
                 else [X.shape[1], *self._hidden(), Y.shape[1]])
        model = KAN(width=width, grid=self.grid, k=self.k, seed=self._seed(), dtype=dt, device=self.device,
                    input_names=names)
        budget = self.time_budget
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0):
            raise ValueError(f"time_budget must be a positive number of CPU seconds or None, got {budget!r}")
        stage_steps: list[int] = []  # LBFGS steps of each training stage (the schedule reports every one)
        res = symbolic_regression(data, model=model, lib=self.lib, lamb=self.lamb if self.lamb > 0 else 0.01,
                                  steps=(self.steps,) * 3, var=names, time_budget=budget,
                                  on_stage=lambda ev: stage_steps.append(len(ev.history)))
        self.model_ = res.model
        self.history_ = None
        self.n_iter_ = sum(stage_steps)
        sym = [sympy.Symbol(n) for n in names]
        # undo the standardisation: z_i = (x_i - mean_i) / scale_i, y = mean_y + scale_y * f(z)
        subs = {s: (s - _num(m)) / _num(sd) if self.normalize else s
                for s, m, sd in zip(sym, self.x_mean_, self.x_scale_)}

        def unscale(exprs: Sequence[sympy.Expr]) -> list[sympy.Expr]:
            return [_num(my) + _num(sy) * e.xreplace(subs) if self.normalize else e
                    for e, my, sy in zip(exprs, self.y_mean_, self.y_scale_)]

        self.formulas_ = unscale(res.formulas)
        self.formula_exact_ = bool(res.exact)
        self.equations_ = [
            {"complexity": c.complexity, "train_nrmse": float(np.sqrt(c.train_nmse)), "source": c.source,
             "formulas": unscale(c.exprs), "chosen": k == res.table.chosen}
            for k, c in enumerate(res.table)
        ]
        self._set_importances(X)
        self._freeze()

    def _evaluate(self, expr: Any, X: np.ndarray) -> np.ndarray:
        import sympy

        fn = sympy.lambdify([sympy.Symbol(n) for n in self._variable_names()], expr, modules=["scipy", "numpy"])
        with np.errstate(all="ignore"):
            out = fn(*(X[:, i] for i in range(X.shape[1])))
        return np.broadcast_to(np.asarray(out, dtype=np.float64), (X.shape[0],))

    def sympy(self, index: int | None = None) -> Any:
        """The recovered formula (sympy), in the original feature units; a list for multi-output targets.

        Args:
            index: row of :attr:`equations_` to return instead of the chosen one.

        Raises:
            ValueError: the estimator was not fitted with ``symbolic=True``.
        """
        check_is_fitted(self, "model_")
        if not hasattr(self, "formulas_"):
            raise ValueError("no formula: fit with KANRegressor(symbolic=True, ...) to recover one")
        exprs = self.formulas_ if index is None else self.equations_[index]["formulas"]
        return exprs[0] if self._y_1d else list(exprs)

    def latex(self, index: int | None = None, *, n_digit: int | None = 4) -> Any:
        """LaTeX of :meth:`sympy` (constants rounded to ``n_digit`` decimals)."""
        from .symbolic.export import to_latex

        e = self.sympy(index)
        return to_latex(e, n_digit=n_digit) if not isinstance(e, list) else [to_latex(v, n_digit=n_digit) for v in e]

    def equations(self) -> str:
        """The candidate formulas as a text table (complexity, train NRMSE, chosen row marked ``»``)."""
        from .symbolic.formula import ex_round

        self.sympy()  # raises if there is no table
        lines = [f"{'':2}{'cplx':>5} {'train NRMSE':>12}  {'source':<24} formula"]
        for row in self.equations_:
            f = " ; ".join(str(ex_round(e, 4)) for e in row["formulas"])
            lines.append(f"{'»' if row['chosen'] else ' ':2}{row['complexity']:>5} {row['train_nrmse']:>12.3e}  "
                         f"{row['source'][:24]:<24} {f}")
        return "\n".join(lines)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


class KANClassifier(ClassifierMixin, _KANBase):
    """A KAN as a scikit-learn classifier: one output per class, trained with cross-entropy.

    Takes the same hyper-parameters as :class:`KANRegressor` (``normalize`` standardises inputs only).

    Attributes:
        classes_: the class labels.
        feature_importances_: attribution score of every feature, normalised to sum to 1.
        model_: the trained :class:`kanlens.KAN` of width ``[n_features, *hidden_layer_sizes, n_classes]``
            producing logits.
        history_: the :class:`kanlens.FitHistory` (its losses are RMSEs of the logits against one-hot labels,
            reported by :func:`kanlens.fit`; the optimised loss is the cross-entropy).

    Shapes:
        ``X``: ``(n_samples, n_features)``; ``predict_proba`` returns ``(n_samples, n_classes)``.

    Example:
        >>> clf = KANClassifier(steps=20).fit(X, y)
        >>> clf.predict_proba(X).shape
        (150, 3)
    """

    def fit(self, X: Any, y: Any) -> KANClassifier:
        """Train a new KAN on ``X, y`` (class labels) and return ``self``."""
        X, y = validate_data(self, X, y, dtype=np.float64, ensure_min_samples=2)
        check_classification_targets(y)
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        codes = enc.transform(y)
        n_cls = max(len(self.classes_), 2)
        onehot = np.eye(n_cls)[codes]

        def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(logits, target)

        self._train(X, onehot, n_cls, loss_fn=loss_fn)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits ``(n_samples, n_classes)`` (for two classes: the logit difference ``(n_samples,)``)."""
        logits = self._forward(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``(n_samples, n_classes)`` (softmax of the logits)."""
        logits = self._forward(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        return p[:, : len(self.classes_)] if len(self.classes_) > 1 else np.ones((p.shape[0], 1))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels ``(n_samples,)``."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_log_proba(self, X: Any) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

