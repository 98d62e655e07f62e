"""L-BFGS with a strong-Wolfe line search on one flat parameter vector, scalars kept as Python floats.

The algorithm, its defaults and every decision are those of ``torch.optim.LBFGS`` (torch 2.x; pykan 0.2.8 ships a
copy of the same code): the same two-loop recursion, history update rule, initial step, line search, cubic
interpolation and stopping tests, so a fit does the same work per step. What differs is bookkeeping: torch keeps
every scalar of the recursion and the line search (``gtd``, ``ro``, ``alpha``, ``t``, ...) as a 0-dim tensor, which
costs a tensor op (and often a host sync) per arithmetic operation, about a hundred ops per iteration; for the small
models this library trains, that was a fifth of a fit. Here those scalars are Python floats (double precision).
In float64 the iterates are the same as ``torch.optim.LBFGS``'s (tested); in float32 the scalar arithmetic is
more precise than torch's float32 0-dim tensors.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

__all__ = ["FlatLBFGS"]


def _div(a: float, b: float) -> float:
    """``a / b`` with IEEE semantics (inf / nan instead of ``ZeroDivisionError``), as 0-dim tensors would do."""
    if b != 0.0:
        return a / b
    if a == 0.0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _cubic_interpolate(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
                       bounds: tuple[float, float] | None = None) -> float:
    xmin_bound, xmax_bound = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * _div(f1 - f2, x1 - x2)
    d2_square = d1**2 - g1 * g2
    if d2_square >= 0:
        d2 = math.sqrt(d2_square)
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * _div(g2 + d2 - d1, g2 - g1 + 2 * d2)
        else:
            min_pos = x1 - (x1 - x2) * _div(g1 + d2 - d1, g1 - g2 + 2 * d2)
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _max_abs(v: torch.Tensor) -> float:
    """``float(v.abs().max())`` in one op (the infinity norm is that maximum, exactly; NaN propagates)."""
    return float(torch.linalg.vector_norm(v, math.inf))


def _clone(v: torch.Tensor) -> torch.Tensor:
    return v.clone(memory_format=torch.contiguous_format)


class _WolfeSearch:
    """One strong-Wolfe line search along ``d`` from ``x`` (loss ``f``, slope ``gtd = g . d`` at ``t = 0``).

    A point of the search is a tuple ``(t, loss, gradient, slope)``; the bracket is a list of one point (the
    search is done) or two (the interval the zoom phase narrows)."""

    def __init__(self, obj_func, x, d, f: float, gtd: float, c1: float, c2: float) -> None:
        self.obj_func, self.x, self.d = obj_func, x, d
        self.f, self.gtd, self.c1, self.c2 = f, gtd, c1, c2
        self.evals = 0

    def evaluate(self, t: float) -> tuple[float, torch.Tensor, float]:
        f_new, g_new = self.obj_func(self.x, t, self.d)
        self.evals += 1
        return f_new, g_new, float(g_new.dot(self.d))

    def armijo_fails(self, t: float, f_new: float) -> bool:
        return f_new > (self.f + self.c1 * t * self.gtd)

    def curvature_holds(self, gtd_new: float) -> bool:
        return abs(gtd_new) <= -self.c2 * self.gtd

    def bracket(self, t: float, g: torch.Tensor, max_ls: int) -> tuple[list, bool, int]:
        """Grow the step until it satisfies the conditions (``done``) or a bracket around such a step is found:
        ``(bracket, done, iterations)``."""
        f, gtd = self.f, self.gtd
        f_new, g_new, gtd_new = self.evaluate(t)
        prev = (0.0, f, g, gtd)
        ls_iter = 0
        while ls_iter < max_ls:
            t_prev, f_prev, _, gtd_prev = prev
            sufficient_decrease_fails = self.armijo_fails(t, f_new) or (ls_iter > 1 and f_new >= f_prev)
            if not sufficient_decrease_fails and self.curvature_holds(gtd_new):
                return [(t, f_new, g_new, gtd_new)], True, ls_iter
            if sufficient_decrease_fails or gtd_new >= 0:
                return [prev, (t, f_new, _clone(g_new), gtd_new)], False, ls_iter
            # interpolate, then take the next step
            min_step = t + 0.01 * (t - t_prev)
            max_step = t * 10
            t_next = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(min_step, max_step))
            prev = (t, f_new, _clone(g_new), gtd_new)
            t = t_next
            f_new, g_new, gtd_new = self.evaluate(t)
            ls_iter += 1
        # reached the maximum number of iterations (the slopes are not used: the zoom phase does not run)
        return [(0.0, f, g, None), (t, f_new, g_new, None)], False, ls_iter

    def zoom(self, bracket: list, done: bool, ls_iter: int, max_ls: int, tolerance_change: float) -> tuple:
        """Narrow a two-point ``bracket`` until a point satisfies the conditions; the best point ``(t, loss,
        gradient, slope)``."""
        d_norm = _max_abs(self.d)
        insuf_progress = False
        low_pos, high_pos = (0, 1) if bracket[0][1] <= bracket[-1][1] else (1, 0)
        while not done and ls_iter < max_ls:
            (t0, f0, _, gtd0), (t1, f1, _, gtd1) = bracket
            if abs(t1 - t0) * d_norm < tolerance_change:
                break
            t = _cubic_interpolate(t0, f0, gtd0, t1, f1, gtd1)
            t, insuf_progress = _keep_inside(t, max(t0, t1), min(t0, t1), insuf_progress)
            f_new, g_new, gtd_new = self.evaluate(t)
            ls_iter += 1

            if self.armijo_fails(t, f_new) or f_new >= bracket[low_pos][1]:
                # Armijo condition not satisfied or not lower than lowest point
                bracket[high_pos] = (t, f_new, _clone(g_new), gtd_new)
                low_pos, high_pos = (0, 1) if bracket[0][1] <= bracket[1][1] else (1, 0)
            else:
                if self.curvature_holds(gtd_new):
                    done = True  # Wolfe conditions satisfied
                elif gtd_new * (bracket[high_pos][0] - bracket[low_pos][0]) >= 0:
                    bracket[high_pos] = bracket[low_pos]  # old high becomes new low
                bracket[low_pos] = (t, f_new, _clone(g_new), gtd_new)  # new point becomes new low
        return bracket[low_pos]


def _keep_inside(t: float, t_max: float, t_min: float, insuf_progress: bool) -> tuple[float, bool]:
    """Test that the zoom makes sufficient progress: a trial step too close to the bracket's ends is moved
    ``0.1`` of the bracket inside it (on the second time in a row, or when it is outside); ``(t, insuf_progress)``."""
    eps = 0.1 * (t_max - t_min)
    if min(t_max - t, t - t_min) < eps:
        if insuf_progress or t >= t_max or t <= t_min:
            t = t_max - eps if abs(t - t_max) < abs(t - t_min) else t_min + eps
            return t, False
        return t, True
    return t, False


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """``torch.optim.lbfgs._strong_wolfe`` with float scalars: ``(loss, gradient, t, evaluations)``."""
    search = _WolfeSearch(obj_func, x, d, f, gtd, c1, c2)
    bracket, done, ls_iter = search.bracket(t, _clone(g), max_ls)
    t, f_best, g_best, _ = search.zoom(bracket, done, ls_iter, max_ls, tolerance_change)
    return f_best, g_best, t, search.evals


def _update_memory(y: torch.Tensor, s: torch.Tensor, old_dirs: list, old_stps: list, ro: list, h_diag: float,
                   history_size: int) -> float:
    """Add the curvature pair ``(y, s)`` (gradient change, step) to the history when ``y . s > 1e-10``, dropping
    the oldest pair past ``history_size``; the new Hessian diagonal (``h_diag`` if the pair is skipped)."""
    ys = float(y.dot(s))
    if ys > 1e-10:
        if len(old_dirs) == history_size:
            old_dirs.pop(0)
            old_stps.pop(0)
            ro.pop(0)
        old_dirs.append(y)
        old_stps.append(s)
        ro.append(1.0 / ys)
        h_diag = _div(ys, float(y.dot(y)))
    return h_diag


def _two_loop(flat_grad: torch.Tensor, old_dirs: list, old_stps: list, ro: list, h_diag: float) -> torch.Tensor:
    """The two-loop recursion: the L-BFGS inverse Hessian times minus the gradient (the descent direction)."""
    num_old = len(old_dirs)
    al = [0.0] * num_old
    q = flat_grad.neg()
    for i in range(num_old - 1, -1, -1):
        al[i] = float(old_stps[i].dot(q)) * ro[i]
        q.add_(old_dirs[i], alpha=-al[i])
    d = r = torch.mul(q, h_diag)
    for i in range(num_old):
        be_i = float(old_dirs[i].dot(r)) * ro[i]
        r.add_(old_stps[i], alpha=al[i] - be_i)
    return d


class FlatLBFGS:
    """``torch.optim.LBFGS(params, lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size,
    line_search_fn="strong_wolfe")`` for a single flat parameter whose ``.grad`` the closure fills."""

    def __init__(self, param: torch.Tensor, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100) -> None:
        if param.ndim != 1:
            raise ValueError("FlatLBFGS optimizes one flat (1-D) parameter")
        self.param = param
        self.lr, self.max_iter = float(lr), max_iter
        self.max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
        self.tolerance_grad, self.tolerance_change, self.history_size = tolerance_grad, tolerance_change, history_size
        self.state: dict = {"func_evals": 0, "n_iter": 0}

    def _flat_grad(self) -> torch.Tensor:
        g = self.param.grad
        return self.param.new_zeros(self.param.shape) if g is None else g.clone()

    def _directional_evaluate(self, closure, x, t, d):
        # the trial point x + t d, written straight into the parameter (the same arithmetic as an in-place add
        # to x); every later use of the parameter writes it from x again, so it is not restored here
        torch.add(x, d, alpha=t, out=self.param)
        loss = float(closure())
        return loss, self._flat_grad()

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        closure = torch.enable_grad()(closure)
        lr, max_iter, max_eval = self.lr, self.max_iter, self.max_eval
        tolerance_grad, tolerance_change, history_size = self.tolerance_grad, self.tolerance_change, self.history_size
        state = self.state

        orig_loss = closure()
        loss = float(orig_loss)
        current_evals = 1
        state["func_evals"] += 1
        flat_grad = self._flat_grad()
        if _max_abs(flat_grad) <= tolerance_grad:
            return orig_loss

        d, t = state.get("d"), state.get("t")
        old_dirs, old_stps, ro = state.get("old_dirs"), state.get("old_stps"), state.get("ro")
        h_diag, prev_flat_grad, prev_loss = state.get("H_diag"), state.get("prev_flat_grad"), state.get("prev_loss")

        n_iter = 0
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            # descent direction
            if state["n_iter"] == 1:
                d = flat_grad.neg()
                old_dirs, old_stps, ro = [], [], []
                h_diag = 1.0
            else:
                h_diag = _update_memory(flat_grad.sub(prev_flat_grad), d.mul(t), old_dirs, old_stps, ro, h_diag,
                                        history_size)
                d = _two_loop(flat_grad, old_dirs, old_stps, ro, h_diag)

            if prev_flat_grad is None:
                prev_flat_grad = flat_grad.clone(memory_format=torch.contiguous_format)
            else:
                prev_flat_grad.copy_(flat_grad)
            prev_loss = loss

            # step length
            if state["n_iter"] == 1:
                t = min(1.0, _div(1.0, float(flat_grad.abs().sum()))) * lr
            else:
                t = lr
            gtd = float(flat_grad.dot(d))
            if gtd > -tolerance_change:
                break

            x_init = self.param.clone(memory_format=torch.contiguous_format)
            obj_func = functools.partial(self._directional_evaluate, closure)
            loss, flat_grad, t, ls_func_evals = _strong_wolfe(obj_func, x_init, t, d, loss, flat_grad, gtd,
                                                              max_ls=max_eval - current_evals)
            torch.add(x_init, d, alpha=t, out=self.param)
            opt_cond = _max_abs(flat_grad) <= tolerance_grad

            current_evals += ls_func_evals
            state["func_evals"] += ls_func_evals
            # stopping tests (in torch's order: the later ones are not computed once one holds)
            if (n_iter == max_iter or current_evals >= max_eval or opt_cond
                    or _max_abs(d) * abs(t) <= tolerance_change or abs(loss - prev_loss) < tolerance_change):
                break

        state.update(d=d, t=t, old_dirs=old_dirs, old_stps=old_stps, ro=ro, H_diag=h_diag,
                     prev_flat_grad=prev_flat_grad, prev_loss=prev_loss)
        return orig_loss
