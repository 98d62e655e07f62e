"""Candidates and their scoring: typed provenance, the candidate formula, the evaluator that refits formulas on the
training data and scores them on the test data, and the Pareto choice among them."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import sympy
import torch

from .. import formula as sform
from ..noise import noise_nmse
from .budget import Deadline

__all__ = ["Candidate", "Evaluator", "ParetoTable", "Provenance", "SymbolicResult", "as_numpy", "check_dataset",
           "choose"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provenance:
    """Where a candidate comes from: the stage that made it, the target transform of its run (``"identity"`` or
    ``"log"``), and the step within the stage (``"auto_symbolic"``, ``"swap (0, 1, 0)->sin"``, ``"snapped"``...)."""

    stage: str
    run: str = "identity"
    step: str = ""

    def then(self, step: str) -> Provenance:
        """The same stage and run, one step further (``"expanded"`` then ``"snapped"`` -> ``"expanded snapped"``)."""
        return replace(self, step=f"{self.step} {step}".strip())

    def __str__(self) -> str:
        run = "" if self.run == "identity" else f"{self.run}: "
        parts = [self.stage if self.stage != "kan" else "", self.step]
        return run + " ".join(p for p in parts if p)


@dataclass
class Candidate:
    """One candidate formula (per output) with its complexity and errors (NMSE = MSE / var(y))."""

    exprs: list[sympy.Expr]
    complexity: int
    train_nmse: float
    test_nmse: float
    provenance: Provenance
    exact: bool = False

    @property
    def expr(self) -> sympy.Expr:
        return self.exprs[0]

    @property
    def source(self) -> str:
        """The provenance as text (``"log: swap (0, 0, 0)->sin"``)."""
        return str(self.provenance)


class ParetoTable(Sequence):
    """Candidates on the complexity / test-error Pareto front, simplest first; ``chosen`` is marked ``»``."""

    def __init__(self, rows: Sequence[Candidate], chosen: int) -> None:
        self.rows, self.chosen = list(rows), chosen

    def __getitem__(self, k):  # type: ignore[override]
        return self.rows[k]

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        lines = [f"{'':2}{'cplx':>5} {'test NRMSE':>11} {'train NRMSE':>11}  {'source':<18} formula"]
        for k, c in enumerate(self.rows):
            mark = "»" if k == self.chosen else " "
            f = " ; ".join(str(sform.ex_round(e, 5)) for e in c.exprs)
            lines.append(f"{mark:2}{c.complexity:>5} {math.sqrt(c.test_nmse):>11.3e} {math.sqrt(c.train_nmse):>11.3e}"
                         f"  {c.source[:18]:<18} {f}")
        return "\n".join(lines)


@dataclass
class SymbolicResult:
    """Output of :func:`symbolic_regression`.

    Attributes:
        formula: chosen formula of the first output (``formulas`` has one per output).
        exact: the chosen formula reproduces the test data to float precision.
        table: the Pareto table of candidates.
        model: the KAN after ``auto_symbolic`` (its symbolic constants are the KAN-level fit, not the refit) of
            the run that produced the chosen formula; it predicts ``target_transform`` of ``y``.
        auto: the :class:`~kanlens.symbolic.fit.AutoSymbolicTable`.
        timings: wall seconds per stage.
        cpu_seconds: process CPU seconds of the whole search (compare with its ``time_budget``).
        candidates: every candidate the search scored (the table keeps only its Pareto front).
    """

    formula: sympy.Expr
    formulas: list[sympy.Expr]
    exact: bool
    table: ParetoTable
    model: object
    auto: object
    width: list[int]
    timings: dict[str, float] = field(default_factory=dict)
    target_transform: str = "identity"
    cpu_seconds: float = 0.0
    candidates: list[Candidate] = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"SymbolicResult(formula={self.formula}, exact={self.exact}, width={self.width})\n{self.table!r}")


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 numpy array."""
    return t.detach().cpu().double().numpy()


def check_dataset(dataset: dict) -> None:
    """Raise a clear error when ``dataset`` is not a ``create_dataset``-style dict of 2-D finite tensors."""
    from ..._checks import check_tensor

    if not isinstance(dataset, dict):
        raise TypeError(f"dataset must be a dict like create_dataset's, got {type(dataset).__name__}")
    for key in ("train_input", "train_label", "test_input", "test_label"):
        if key not in dataset:
            raise ValueError(f"dataset is missing {key!r} (expected keys train_input, train_label, test_input, "
                             f"test_label)")
        check_tensor(f"dataset[{key!r}]", dataset[key], ndim=2)


# exact formulas longer than this (per problem) do not end the search: public and probe formulas are <= 26 long
# for <= 4 inputs, P05's ten-input sum is 92
_SETTLED_COMPLEXITY, _SETTLED_PER_INPUT = 40, 15
_SETTLED_FLOATS = 2
NEAR_NMSE = 1e-4  # see Evaluator.near
NEAR_NOISE = 3.0
NEAR_CAP = 1e-2
_ZERO_TOL = 1e-3


class Evaluator:
    """Refits candidate formulas on the training data and scores them on the test data; every candidate it makes
    is kept in ``seen``. Refits and snaps stop at ``deadline`` (keeping their best point so far).

    Shapes:
        dataset inputs ``(n, d)``, labels ``(n, m)``.
    """

    def __init__(self, dataset: dict, variables: list[sympy.Symbol], floor: float, deadline: Deadline | None = None):
        self.xtr, self.ytr = as_numpy(dataset["train_input"]), as_numpy(dataset["train_label"])
        self.xte, self.yte = as_numpy(dataset["test_input"]), as_numpy(dataset["test_label"])
        self.variables, self.floor = variables, floor
        self.deadline = deadline or Deadline(None)
        # the relative difference of two test NMSEs that the test set can resolve (about the standard error of an
        # MSE over len(xte) points): on noisy labels a longer formula must beat a shorter one by more than this
        self.resolution = 1.0 / math.sqrt(max(1, len(self.xte)))
        self.snap_seconds = 20.0
        # a refit of a long view with dozens of constants (finite-difference Jacobians) can run for many minutes;
        # cut off, it keeps its best point so far and competes as it is
        self.refit_seconds = 10.0
        self.seen: list[Candidate] = []
        self._noise: float | None = None

    @property
    def noise(self) -> float:
        """The labels' noise level as an NMSE (largest over outputs): estimated from the training data alone
        (:func:`~kanlens.symbolic.noise.noise_nmse`) or noted by a stage (:meth:`note_noise`); once known, every
        candidate's test NMSE lowers it (no formula scores below the noise). ``inf`` while unknown: a poor
        candidate's error says nothing about the noise."""
        if self._noise is None:
            self._noise = max((noise_nmse(self.xtr, self.ytr[:, o]) for o in range(self.ytr.shape[1])),
                              default=math.inf)
        return self._noise

    def note_noise(self, bound: float) -> None:
        """A stage's upper bound on the noise NMSE (a flexible model's error on these labels)."""
        if math.isfinite(bound) and bound >= 0:
            self._noise = min(self.noise, bound)

    def near(self, nmse: float) -> bool:
        """Whether a formula ``nmse`` from the data is close enough to be worth snapping, or to be taken as a part:
        within ``NEAR_NMSE``, or within ``NEAR_NOISE`` times the labels' noise level when that is known (the true
        formula itself scores the noise level: ``eps**2`` for SRBench's noise ``eps * std(y)``). The level counts up
        to ``NEAR_CAP`` (``eps = 0.1``): data that look noisier (a function oscillating faster than the points
        resolve looks like noise) loosen the tolerance no further."""
        if not math.isfinite(self.noise):
            return nmse <= NEAR_NMSE
        return nmse <= max(NEAR_NMSE, NEAR_NOISE * min(self.noise, NEAR_CAP))

    def settled(self, c: Candidate) -> bool:
        """Exact and simple enough to end the search: a long formula with dozens of fitted constants (a trig
        expansion of ``x3*sin(x1 - x2)``, complexity 233) can reach the label-rounding floor without being the
        formula, so it must not stop the later stages that would find the short one. Nor can one with more than
        ``_SETTLED_FLOATS`` unsnapped constants (``(x1 + x2)**2 + sin(x3)`` was exact as ``0.005*x1**4 -
        0.733*x1**2 + 2*x1*x2 + x2**2 + sin(x3) - 99.5*cos(0.187*x1) + 99.5``), or a polynomial-stage formula with
        any. Such formulas stay candidates; only the search goes on."""
        floats = sum(sform.n_floats(e) for e in c.exprs)
        if c.provenance.stage == "polynomial" and floats:
            # a fitted polynomial or rational whose constants did not snap is more likely an approximation of a
            # smooth function on a narrow range (tanh(x1) on [-0.5, 0.5] by (x1 + 0.066*x1**3)/(1 + 0.4*x1**2))
            return False
        return (c.exact and c.complexity <= _SETTLED_COMPLEXITY + _SETTLED_PER_INPUT * len(self.variables)
                and floats <= _SETTLED_FLOATS)

    @property
    def exact_found(self) -> bool:
        """Whether any candidate so far is exact and short enough to end the search (see :meth:`settled`)."""
        return any(self.settled(c) for c in self.seen)

    def _test(self, exprs: list[sympy.Expr]) -> float:
        errs = []
        for o, e in enumerate(exprs):
            f = sympy.lambdify(self.variables, e, modules=["scipy", "numpy"])
            with np.errstate(all="ignore"):
                pred = f(*(self.xte[:, k] for k in range(self.xte.shape[1])))
            errs.append(sform.nmse(pred, self.yte[:, o]))
        return max(errs)

    def same_values(self, a: list[sympy.Expr], b: list[sympy.Expr]) -> bool:
        """Whether two formulas agree on the test inputs to 1e-9 relative (guards cosmetic rewrites)."""
        try:
            for ea, eb in zip(a, b):
                va = self.values(ea, self.xte)
                vb = self.values(eb, self.xte)
                if not (np.isfinite(va).all() and np.isfinite(vb).all()):
                    return False  # an infinite tolerance would call any two such formulas the same
                if not np.allclose(va, vb, rtol=1e-9, atol=1e-12 * (1 + float(np.abs(vb).max()))):
                    return False
            return True
        except Exception:
            return False

    def values(self, e: sympy.Expr, x: np.ndarray) -> np.ndarray:
        """Values ``(n,)`` of ``e`` at the inputs ``x`` ``(n, d)`` (real part; non-finite where undefined)."""
        f = sympy.lambdify(self.variables, e, modules=["scipy", "numpy"])
        with np.errstate(all="ignore"):
            return np.broadcast_to(sform.real_values(f(*(x[:, k] for k in range(x.shape[1])))), (x.shape[0],))

    def refit(self, exprs: list[sympy.Expr], source: Provenance, snap: bool = False) -> Candidate:
        """Refit (or snap) all constants of ``exprs`` jointly on the training data; the candidate joins ``seen``."""
        outs, trains = [], []
        for o, e in enumerate(exprs):
            try:
                if self.deadline.expired():  # out of time: scored as it is (a stage may still be finishing)
                    outs.append(e)
                    trains.append(sform.nmse(self.values(e, self.xtr), self.ytr[:, o]))
                    continue
                if snap:
                    # constants up to 1e-3 are tried as 0 first: on noisy labels a shift the noise left
                    # (-0.00012 + 1/sqrt(1 - z**2)) is no simple value; the loss test keeps a real one
                    r = sform.snap_constants(e, self.variables, self.xtr, self.ytr[:, o], floor=self.floor,
                                             zero_tol=_ZERO_TOL, max_seconds=self.deadline.cap(self.snap_seconds))
                else:
                    r = sform.refit_constants(e, self.variables, self.xtr, self.ytr[:, o],
                                              max_seconds=self.deadline.cap(self.refit_seconds))
                outs.append(r.expr)
                trains.append(r.nmse)
            except Exception as err:  # one unprintable / unevaluable candidate must not end the search
                log.warning("refit of %s failed (%s: %s)", source, type(err).__name__, err)
                outs.append(e)
                trains.append(math.inf)
        try:
            test = self._test(outs)
        except Exception:
            test = math.inf
        cand = Candidate(outs, sum(sform.formula_complexity(e) for e in outs), max(trains), test, source)
        cand.exact = cand.train_nmse <= self.floor and cand.test_nmse <= 10 * self.floor
        if math.isfinite(self.noise):  # no formula scores below the noise of the test labels: a known level drops
            self.note_noise(cand.test_nmse)
        self.seen.append(cand)
        return cand


def choose(cands: list[Candidate], resolution: float = 1e-9) -> tuple[list[Candidate], int]:
    """Pareto front (simplest first) and the chosen index: the simplest exact candidate if any, else PySR's "best"
    rule (largest drop in log-loss per unit of complexity among candidates within 1.5x of the lowest loss).

    A more complex candidate joins the front only when its test NMSE is lower by more than the relative
    ``resolution`` (see :attr:`Evaluator.resolution`): on noisy labels a term fitted to the noise
    (``x1*sin(x2) - 0.0002*x1**2*cos(x2)``) lowers the test error by far less than the test set can tell.
    """
    finite = [c for c in cands if math.isfinite(c.test_nmse)]
    if not finite:
        return cands[:1], 0
    finite.sort(key=lambda c: (c.complexity, c.test_nmse))
    front: list[Candidate] = []
    for c in finite:
        if not front or c.test_nmse < front[-1].test_nmse * (1 - resolution):
            if front and front[-1].complexity == c.complexity:
                front[-1] = c
            else:
                front.append(c)
    exact = [c for c in finite if c.exact]
    if exact:  # the simplest exact candidate; among equals the one with fewest leftover floats
        pick = min(exact, key=lambda c: (c.complexity, sum(sform.n_floats(e) for e in c.exprs), c.test_nmse))
        front = sorted([c for c in front if not c.exact] + [pick], key=lambda c: (c.complexity, c.test_nmse))
        return front, front.index(pick)
    best_loss = min(c.test_nmse for c in front)
    best_k, best_score = len(front) - 1, -math.inf
    for k, c in enumerate(front):
        if c.test_nmse > 1.5 * best_loss * 1.5:  # PySR: within 1.5x of the best loss (RMSE-scale, hence 1.5^2)
            continue
        if k == 0:
            score = 0.0
        else:
            prev = front[k - 1]
            score = -(math.log(max(c.test_nmse, 1e-300)) - math.log(max(prev.test_nmse, 1e-300))) / max(
                c.complexity - prev.complexity, 1)
        if score > best_score:
            best_k, best_score = k, score
    return front, best_k


