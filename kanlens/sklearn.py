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

from .model import KAN, KANConfig
from .training import FitHistory, fit
from .utils import check_choice

__all__ = ["KANClassifier", "KANRegressor"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


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

    def _train(self, X: np.ndarray, Y: np.ndarray, n_out: int, loss_fn: Any = None) -> None:
        """Fit ``self.model_`` on float arrays ``X (n, d)`` and targets ``Y (n, n_out)``."""
        if self.normalize:
            self.x_mean_ = X.mean(axis=0)
            sd = X.std(axis=0)
            self.x_scale_ = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(self.x_mean_)), sd, 1.0)
        else:
            self.x_mean_ = np.zeros(X.shape[1])
            self.x_scale_ = np.ones(X.shape[1])
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
        self._freeze()

    def _freeze(self) -> None:
        # predict must not change the fitted model: stop keeping the last batch's activations
        self.model_.save_act = False
        self.model_.acts = []

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

    Args:
        hidden_layer_sizes: hidden widths; the KAN is ``[n_features, *hidden_layer_sizes, n_outputs]``.
        grid, k: spline grid intervals and order.
        opt, steps, lr, batch, lamb, lamb_entropy, update_grid: passed to :func:`kanlens.fit`.
        normalize: standardise inputs and targets inside the estimator (undone in :meth:`predict` and in
            :meth:`sympy`), so raw tabular data meets the spline grids where they are.
        random_state: seed of the KAN's initialisation and mini-batch order (``None``: a random seed).
        device: torch device (``"cpu"``, ``"cuda"``).
        dtype: ``"float64"`` (default, matches scikit-learn's numerics) or ``"float32"``.
        progress: show the training progress bar.

    Attributes:
        model_: the trained :class:`kanlens.KAN` (on standardised data when ``normalize``).
        history_: the :class:`kanlens.FitHistory` of the training run.
        n_features_in_, feature_names_in_: as in scikit-learn.
        x_mean_, x_scale_, y_mean_, y_scale_: the standardisation constants (zeros and ones without ``normalize``).
        n_iter_: optimisation steps run.

    Shapes:
        ``X``: ``(n_samples, n_features)``; ``y``: ``(n_samples,)`` or ``(n_samples, n_outputs)``; ``predict``
        returns the same rank as the ``y`` it was fitted on.

    Example:
        >>> reg = KANRegressor(hidden_layer_sizes=(5,), steps=20).fit(X, y)
        >>> reg.score(X, y) > 0.9
        True
        >>> reg.sympy(), reg.latex()  # symbolic formula in the original feature names
    """

    def fit(self, X: Any, y: Any) -> KANRegressor:
        """Train a new KAN on ``X, y`` and return ``self``."""
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        Y = y[:, None] if y.ndim == 1 else y
        if self.normalize:
            self.y_mean_ = Y.mean(axis=0)
            sd = Y.std(axis=0)
            self.y_scale_ = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(self.y_mean_)), sd, 1.0)
        else:
            self.y_mean_, self.y_scale_ = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        self._train(X, (Y - self.y_mean_) / self.y_scale_, Y.shape[1])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions ``(n_samples,)`` (or ``(n_samples, n_outputs)`` for multi-output targets)."""
        out = self._forward(X) * self.y_scale_ + self.y_mean_
        return out[:, 0] if self._y_1d else out

    # ------------------------------------------------------------------ symbolic
    def symbolic_model(
        self,
        *,
        lib: Sequence[str] | None = None,
        prune: bool = True,
        steps: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run kanlens's symbolic pipeline on a copy of :attr:`model_` (the estimator itself is not changed).

        Returns the pipeline's result object; :meth:`sympy`, :meth:`latex` and :meth:`equations` use it.
        """
        raise NotImplementedError  # replaced below once the symbolic pipeline exists

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
        X, y = validate_data(self, X, y, dtype=np.float64)
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

