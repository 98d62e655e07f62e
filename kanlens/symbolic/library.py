"""The symbolic function library: named 1-D functions with torch, sympy and singularity-safe versions.

A :class:`SymbolicLibrary` is an ordinary object that is passed around (to
:func:`kanlens.symbolic.fit.suggest_symbolic`, :class:`~kanlens.layers.symbolic.SymbolicKANLayer`, ...); there
is no global mutable registry. Build one with
:func:`default_library` and extend it with :meth:`SymbolicLibrary.register`::

    lib = default_library()                    # pykan's default functions
    lib = default_library(special=True)        # + besselj0, besselj1, erf, fresnels, fresnelc
    lib = lib.subset(["x", "x^2", "sin"])      # like pykan's lib=['x', 'x^2', 'sin']
    lib.register("sinh", torch.sinh, sympy.sinh, complexity=3)

Each :class:`SymbolicFunction` also carries *structural* facts (homogeneity, parity, period, domain, poles) that
the affine fitter uses to drop redundant parameters: for ``x^2`` the fit ``c*(a*x+b)^2+d`` is done with
``|a| = 1`` (``a`` and ``c`` are not separately identifiable), for ``exp`` with ``b = 0``, and so on. That keeps
fitted constants canonical, which is what makes snapping them to ``1``, ``pi``, ``1/2`` ... possible later.
"""

from __future__ import annotations

import functools
import importlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch

from .._checks import did_you_mean

__all__ = [
    "ALIASES",
    "SPECIAL_NAMES",
    "SymbolicFunction",
    "SymbolicLibrary",
    "default_library",
    "resolve_library",
]

INF = math.inf


class _LazySympy:
    """``sympy`` imported on first use (it costs ~1 s, and ``import kanlens`` should not pay for it)."""

    def __getattr__(self, name: str):
        return getattr(importlib.import_module("sympy"), name)


sympy = _LazySympy()


def _sym(name: str) -> Callable[[Any], Any]:
    return lambda u: getattr(importlib.import_module("sympy"), name)(u)
_POLE_EPS = 1e-4  # safe versions clamp |u| >= this near a pole
_EDGE_EPS = 1e-6  # and stay this far inside an open/infinite-slope domain edge


@dataclass(frozen=True)
class SymbolicFunction:
    """One named library function ``f``; an edge computes ``c * f(a * x + b) + d``.

    Attributes:
        name: library name (``"x^2"``, ``"sin"``...).
        torch_fn: exact torch implementation (may return inf/nan outside the domain).
        sympy_fn: maps a sympy expression ``u`` to ``f(u)``.
        complexity: cost used when ranking candidates (pykan's scale: ``x`` = 1, ``sin`` = 2, ``arcsin`` = 4).
        safe_fn: finite everywhere with finite gradients; equal to ``torch_fn`` inside the domain away from poles.
        kind: ``"zero"``, ``"identity"``, ``"power"`` (``f(s*u) = |s|^degree f(u)`` up to sign, so ``|a| = 1``
            is canonical), ``"log"`` (``log(s*u) = log|s| + log(u)``), ``"exp"`` (``exp(u+b) = e^b exp(u)``, so
            ``b = 0`` is canonical) or ``"general"`` (both ``a`` and ``b`` are fitted).
        parity: ``"even"`` (``f(-u) = f(u)``), ``"odd"`` (``f(-u) = odd_shift - f(u)``) or ``None``; fixes the
            sign of ``a`` in canonical parameters.
        odd_shift: see ``parity`` (``pi`` for arccos, 0 for truly odd functions).
        period: for periodic functions, the period (``b`` is reduced modulo it).
        half_period_flips: ``f(u + period/2) = -f(u)`` (sin, cos), so ``b`` is reduced modulo ``period/2``.
        domain: closed interval where the function is real and finite (apart from ``poles``).
        poles: isolated points where it is singular; ``pole_period`` repeats them (tan).
        special: an opt-in special function (not in the default library).
    """

    name: str
    torch_fn: Callable[[torch.Tensor], torch.Tensor]
    sympy_fn: Callable[[Any], Any]
    complexity: float
    safe_fn: Callable[[torch.Tensor], torch.Tensor]
    kind: str = "general"
    degree: float = 1.0
    parity: str | None = None
    odd_shift: float = 0.0
    period: float | None = None
    half_period_flips: bool = False
    domain: tuple[float, float] = (-INF, INF)
    poles: tuple[float, ...] = ()
    pole_period: float | None = None
    special: bool = False
    numpy_fn: Callable[[np.ndarray], np.ndarray] | str | None = field(default=None, compare=False, repr=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.torch_fn(x)

    def __reduce_ex__(self, protocol):
        # built-in functions hold lambdas, which pickle cannot store: refer to them by name instead (models
        # with symbolic edges then pickle, e.g. torch.save(model) or multiprocessing); a user function pickles
        # the usual way, if its callables do
        builtin = _builtins_by_name().get(self.name)
        if builtin is not None and all(getattr(self, c) is getattr(builtin, c) for c in _CALLABLES):
            rest = tuple((f.name, getattr(self, f.name)) for f in fields(self) if f.name not in _CALLABLES)
            return (_builtin_variant, (self.name, rest))
        return super().__reduce_ex__(protocol)

    def numpy(self, u: np.ndarray) -> np.ndarray:
        """Evaluate on a float64 array (``numpy_fn`` when given, else ``torch_fn`` on CPU); non-finite = invalid."""
        with np.errstate(all="ignore"):
            fn = _numpy_versions()[self.numpy_fn] if isinstance(self.numpy_fn, str) else self.numpy_fn
            if fn is not None:
                return np.asarray(fn(u), dtype=np.float64)
            with torch.no_grad():
                return self.torch_fn(torch.from_numpy(np.ascontiguousarray(u, dtype=np.float64))).numpy()

    def interval_ok(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Whether the closed argument intervals ``[lo, hi]`` avoid poles and stay in the domain (elementwise)."""
        ok = (lo >= self.domain[0]) & (hi <= self.domain[1])
        for p in self.poles:
            if self.pole_period is None:
                ok &= (lo > p) | (hi < p)
            else:
                ok &= np.floor((lo - p) / self.pole_period) == np.floor((hi - p) / self.pole_period)
        return ok


_CALLABLES = ("torch_fn", "sympy_fn", "safe_fn")


def _builtin_variant(name: str, items: tuple) -> SymbolicFunction:
    """A built-in function's callables with the pickled other fields (unpickling target of ``__reduce_ex__``)."""
    return replace(_builtins_by_name()[name], **dict(items))


# ---------------------------------------------------------------------------------------------- safe helpers
def _away_from_zero(x: torch.Tensor, eps: float = _POLE_EPS) -> torch.Tensor:
    sign = torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))
    return sign * x.abs().clamp_min(eps)


def _inv_pow(p: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: _away_from_zero(x) ** (-p) if p != 1 else 1.0 / _away_from_zero(x)


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    eps = _EDGE_EPS**2
    inside = x > eps
    root = torch.sqrt(torch.where(inside, x, torch.ones_like(x)))
    return torch.where(inside, root, x.clamp_min(0.0) / math.sqrt(eps))


def _safe_tan(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) / _away_from_zero(torch.cos(x))


_TorchFn = Callable[[torch.Tensor], torch.Tensor]


def _clamp_open(lo: float, hi: float, fn: _TorchFn) -> _TorchFn:
    return lambda x: fn(x.clamp(lo + _EDGE_EPS, hi - _EDGE_EPS))


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x)


class _ScipyUnary(torch.autograd.Function):
    """A scipy special function with an analytic derivative, usable in autograd (CPU round trip)."""

    @staticmethod
    def forward(ctx, x, fn, dfn):
        ctx.save_for_backward(x)
        ctx.dfn = dfn
        out = fn(x.detach().cpu().double().numpy())
        return torch.as_tensor(out, dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ctx.dfn(x), None, None


def _fresnel(which: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        import scipy.special

        def value(arr):
            return scipy.special.fresnel(arr)[which]

        def deriv(t):
            arg = 0.5 * math.pi * t * t
            return torch.sin(arg) if which == 0 else torch.cos(arg)

        return _ScipyUnary.apply(x, value, deriv)

    return fn


def _bessel_j0(x: torch.Tensor) -> torch.Tensor:
    return torch.special.bessel_j0(x)


def _bessel_j1(x: torch.Tensor) -> torch.Tensor:
    return torch.special.bessel_j1(x)


# ---------------------------------------------------------------------------------------------- library
ALIASES: dict[str, str] = {
    "x^0.5": "sqrt",
    "x^1": "x",
    "1/x^0.5": "1/sqrt(x)",
    "x^-1": "1/x",
    "sign": "sgn",
    "gauss": "gaussian",
    "zero": "0",
    "J0": "besselj0",
    "J1": "besselj1",
    "asin": "arcsin",
    "acos": "arccos",
    "atan": "arctan",
    "atanh": "arctanh",
    "fresnel_s": "fresnels",
    "fresnel_c": "fresnelc",
}

SPECIAL_NAMES = ("besselj0", "besselj1", "erf", "fresnels", "fresnelc")


@functools.lru_cache(maxsize=1)
def _builtin_functions() -> tuple[SymbolicFunction, ...]:
    """The built-in functions, created once (so a pickled model can refer to them by name)."""
    S = SymbolicFunction
    pi = math.pi
    f = [
        S("x", lambda x: x, lambda x: x, 1, lambda x: x, kind="identity", parity="odd"),
        S("x^2", lambda x: x**2, lambda x: x**2, 2, lambda x: x**2, kind="power", degree=2, parity="even"),
        S("x^3", lambda x: x**3, lambda x: x**3, 3, lambda x: x**3, kind="power", degree=3, parity="odd"),
        S("x^4", lambda x: x**4, lambda x: x**4, 3, lambda x: x**4, kind="power", degree=4, parity="even"),
        S("x^5", lambda x: x**5, lambda x: x**5, 3, lambda x: x**5, kind="power", degree=5, parity="odd"),
        S("1/x", lambda x: 1 / x, lambda x: 1 / x, 2, _inv_pow(1), kind="power", degree=-1, parity="odd", poles=(0.0,)),
        S("1/x^2", lambda x: 1 / x**2, lambda x: x**-2, 2, _inv_pow(2), kind="power", degree=-2, parity="even",
          poles=(0.0,)),
        S("1/x^3", lambda x: 1 / x**3, lambda x: x**-3, 3, _inv_pow(3), kind="power", degree=-3, parity="odd",
          poles=(0.0,)),
        S("sqrt", torch.sqrt, _sym("sqrt"), 2, _safe_sqrt, kind="power", degree=0.5, domain=(0.0, INF)),
        S("x^1.5", lambda x: x**1.5, lambda x: x ** sympy.Rational(3, 2), 4, lambda x: x.clamp_min(0.0) ** 1.5,
          kind="power", degree=1.5, domain=(0.0, INF)),
        S("1/sqrt(x)", torch.rsqrt, lambda x: 1 / sympy.sqrt(x), 2, lambda x: torch.rsqrt(x.clamp_min(_POLE_EPS)),
          kind="power", degree=-0.5, domain=(0.0, INF), poles=(0.0,)),
        S("exp", torch.exp, _sym("exp"), 2, lambda x: torch.exp(x.clamp(max=50.0)), kind="exp"),
        S("log", torch.log, _sym("log"), 2, lambda x: torch.log(x.clamp_min(_POLE_EPS)), kind="log", domain=(0.0, INF),
          poles=(0.0,)),
        S("abs", torch.abs, _sym("Abs"), 3, torch.abs, kind="power", degree=1, parity="even"),
        S("sin", torch.sin, _sym("sin"), 2, torch.sin, parity="odd", period=2 * pi, half_period_flips=True),
        S("cos", torch.cos, _sym("cos"), 2, torch.cos, parity="even", period=2 * pi, half_period_flips=True),
        S("tan", torch.tan, _sym("tan"), 3, _safe_tan, parity="odd", period=pi, poles=(pi / 2,), pole_period=pi),
        S("tanh", torch.tanh, _sym("tanh"), 3, torch.tanh, parity="odd"),
        S("sgn", _sign, _sym("sign"), 3, _sign, kind="power", degree=0, parity="odd"),
        S("arcsin", torch.arcsin, _sym("asin"), 4, _clamp_open(-1, 1, torch.arcsin), parity="odd", domain=(-1.0, 1.0)),
        S("arccos", torch.arccos, _sym("acos"), 4, _clamp_open(-1, 1, torch.arccos), parity="odd", odd_shift=pi,
          domain=(-1.0, 1.0)),
        S("arctan", torch.arctan, _sym("atan"), 4, torch.arctan, parity="odd"),
        S("arctanh", torch.arctanh, _sym("atanh"), 4, _clamp_open(-1, 1, torch.arctanh), parity="odd",
          domain=(-1.0, 1.0), poles=(-1.0, 1.0)),
        S("gaussian", lambda x: torch.exp(-(x**2)), lambda x: sympy.exp(-(x**2)), 3, lambda x: torch.exp(-(x**2)),
          parity="even"),
        S("0", torch.zeros_like, lambda x: sympy.Integer(0), 0, torch.zeros_like, kind="zero"),
    ]
    specials = [
        S("besselj0", _bessel_j0, lambda x: sympy.besselj(0, x), 4, _bessel_j0, parity="even", special=True),
        S("besselj1", _bessel_j1, lambda x: sympy.besselj(1, x), 4, _bessel_j1, parity="odd", special=True),
        S("erf", torch.erf, _sym("erf"), 4, torch.erf, parity="odd", special=True),
        S("fresnels", _fresnel(0), _sym("fresnels"), 5, _fresnel(0), parity="odd", special=True),
        S("fresnelc", _fresnel(1), _sym("fresnelc"), 5, _fresnel(1), parity="odd", special=True),
    ]
    return tuple(replace(fn, numpy_fn=fn.name) for fn in f + specials)  # numpy versions load on first fit


@functools.lru_cache(maxsize=1)
def _builtins_by_name() -> dict[str, SymbolicFunction]:
    return {fn.name: fn for fn in _builtin_functions()}


@functools.lru_cache(maxsize=1)
def _numpy_versions() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    import scipy.special as sc

    return {
        "x": lambda u: u, "x^2": lambda u: u**2, "x^3": lambda u: u**3, "x^4": lambda u: u**4,
        "x^5": lambda u: u**5, "1/x": lambda u: 1 / u, "1/x^2": lambda u: 1 / u**2, "1/x^3": lambda u: 1 / u**3,
        "sqrt": np.sqrt, "x^1.5": lambda u: u**1.5, "1/sqrt(x)": lambda u: 1 / np.sqrt(u), "exp": np.exp,
        "log": np.log, "abs": np.abs, "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
        "sgn": np.sign, "arcsin": np.arcsin, "arccos": np.arccos, "arctan": np.arctan, "arctanh": np.arctanh,
        "gaussian": lambda u: np.exp(-(u**2)), "0": np.zeros_like, "besselj0": sc.j0, "besselj1": sc.j1,
        "erf": sc.erf, "fresnels": lambda u: sc.fresnel(u)[0], "fresnelc": lambda u: sc.fresnel(u)[1],
    }


class SymbolicLibrary(Mapping[str, SymbolicFunction]):
    """An ordered, name-indexed collection of :class:`SymbolicFunction`.

    It is a read-only mapping except for :meth:`register` / :meth:`remove`, which change *this* instance only
    (use :meth:`copy` first to keep the original). Names are resolved through :data:`ALIASES` (pykan spellings
    such as ``"x^0.5"`` and ``"sign"`` work); unknown names raise ``ValueError`` with a "did you mean" hint.

    Example:
        >>> lib = default_library().subset(["x", "x^2", "sin"])
        >>> list(lib)
        ['x', 'x^2', 'sin']
    """

    def __init__(self, functions: Iterable[SymbolicFunction] = ()) -> None:
        self._fns: dict[str, SymbolicFunction] = {}
        for fn in functions:
            self._fns[fn.name] = fn

    # mapping protocol
    def __getitem__(self, name: str) -> SymbolicFunction:
        return self._fns[self.canonical_name(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fns)

    def __len__(self) -> int:
        return len(self._fns)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and ALIASES.get(name, name) in self._fns

    def __repr__(self) -> str:
        return f"SymbolicLibrary([{', '.join(repr(n) for n in self._fns)}])"

    def canonical_name(self, name: str) -> str:
        """The library's own spelling of ``name`` (aliases resolved); ``ValueError`` with a hint if unknown."""
        if not isinstance(name, str):
            raise TypeError(f"symbolic function name must be a str, got {type(name).__name__}")
        if name in self._fns:
            return name
        alias = ALIASES.get(name)
        if alias is not None and alias in self._fns:
            return alias
        hint = did_you_mean(name, list(self._fns))
        extra = ""
        if name in SPECIAL_NAMES or ALIASES.get(name) in SPECIAL_NAMES:
            extra = " (special functions are opt-in: use default_library(special=True) or lib.with_special())"
        raise ValueError(f"unknown symbolic function {name!r}{hint}{extra}")

    @property
    def names(self) -> list[str]:
        return list(self._fns)

    def copy(self) -> SymbolicLibrary:
        return SymbolicLibrary(self._fns.values())

    def register(
        self,
        name: str,
        torch_fn: Callable[[torch.Tensor], torch.Tensor],
        sympy_fn: Callable[[Any], Any],
        complexity: float,
        safe_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **properties: Any,
    ) -> SymbolicLibrary:
        """Add (or replace) a function in this library and return the library (for chaining).

        Args:
            name: new name (used in formulas tables and saved checkpoints).
            torch_fn: elementwise torch function.
            sympy_fn: function of a sympy expression.
            complexity: ranking cost (``x`` = 1, ``sin`` = 2, ``tanh`` = 3, ``arcsin`` = 4).
            safe_fn: finite-everywhere version used in the forward pass (defaults to ``torch_fn``).
            **properties: optional structural facts, see :class:`SymbolicFunction` (``kind``, ``parity``,
                ``period``, ``domain``, ``poles`` ...). Without them the fit searches both ``a`` and ``b``.

        Example:
            >>> lib = default_library().register("sinh", torch.sinh, sympy.sinh, 3, parity="odd")
            >>> "sinh" in lib
            True
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        for arg, fn in (("torch_fn", torch_fn), ("sympy_fn", sympy_fn)):
            if not callable(fn):
                raise TypeError(f"{arg} must be callable, got {type(fn).__name__}")
        if safe_fn is not None and not callable(safe_fn):
            raise TypeError(f"safe_fn must be callable or None, got {type(safe_fn).__name__}")
        try:
            complexity = float(complexity)
        except (TypeError, ValueError):
            raise TypeError(f"complexity must be a number, got {complexity!r}") from None
        allowed = {f.name for f in SymbolicFunction.__dataclass_fields__.values()} - {
            "name", "torch_fn", "sympy_fn", "complexity", "safe_fn"}
        for key in properties:
            if key not in allowed:
                raise TypeError(f"unknown property {key!r}{did_you_mean(key, sorted(allowed))}")
        kind = properties.get("kind", "general")
        kinds = ["zero", "identity", "power", "log", "exp", "general"]
        if kind not in kinds:
            raise ValueError(f"unknown kind {kind!r}{did_you_mean(kind, kinds)}")
        self._fns[name] = SymbolicFunction(name, torch_fn, sympy_fn, complexity, safe_fn or torch_fn, **properties)
        return self

    def remove(self, name: str) -> SymbolicLibrary:
        """Remove ``name`` from this library and return the library."""
        del self._fns[self.canonical_name(name)]
        return self

    def subset(self, names: Sequence[str]) -> SymbolicLibrary:
        """A new library with only ``names`` (in that order; special functions may be named explicitly)."""
        if isinstance(names, str):
            names = [names]
        pool = self if all(n in self for n in names) else self.with_special()
        return SymbolicLibrary(pool[n] for n in names)

    def with_special(self) -> SymbolicLibrary:
        """A new library with the special functions (besselj0, besselj1, erf, fresnels, fresnelc) added."""
        lib = self.copy()
        for fn in _builtin_functions():
            if fn.special and fn.name not in lib:
                lib._fns[fn.name] = fn
        return lib

    def without(self, names: Iterable[str]) -> SymbolicLibrary:
        """A new library without ``names``."""
        drop = {self.canonical_name(n) for n in names}
        return SymbolicLibrary(fn for n, fn in self._fns.items() if n not in drop)

    def replace(self, name: str, **changes: Any) -> SymbolicLibrary:
        """A new library where function ``name`` has some fields changed (e.g. ``complexity``)."""
        lib = self.copy()
        canon = self.canonical_name(name)
        lib._fns[canon] = replace(self._fns[canon], **changes)
        return lib


def default_library(*, special: bool = False) -> SymbolicLibrary:
    """A fresh library with pykan's default functions (and the opt-in special functions if ``special``).

    Default names: ``x, x^2, x^3, x^4, x^5, 1/x, 1/x^2, 1/x^3, sqrt, x^1.5, 1/sqrt(x), exp, log, abs, sin, cos,
    tan, tanh, sgn, arcsin, arccos, arctan, arctanh, gaussian, 0``. Specials: ``besselj0, besselj1, erf,
    fresnels, fresnelc`` (sympy ``besselj(0, x)``, ``besselj(1, x)``, ``erf``, ``fresnels``, ``fresnelc``).
    """
    fns = [fn for fn in _builtin_functions() if special or not fn.special]
    return SymbolicLibrary([*fns, *_ADDED.values()])


# Functions added by pykan's ``add_symbolic`` (kanlens.pykan_utils): every new default library includes them.
_ADDED: dict[str, SymbolicFunction] = {}


def register_global(name: str, torch_fn: Callable[[torch.Tensor], torch.Tensor], sympy_fn: Callable[[Any], Any],
                    complexity: float = 1.0, safe_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
    """Add a function to every library :func:`default_library` makes from now on (pykan's ``add_symbolic``)."""
    _ADDED[name] = SymbolicLibrary().register(name, torch_fn, sympy_fn, complexity, safe_fn)[name]


def resolve_library(
    lib: SymbolicLibrary | Sequence[str] | str | None, base: SymbolicLibrary | None = None
) -> SymbolicLibrary:
    """Turn a user ``lib=`` argument into a :class:`SymbolicLibrary`.

    ``None`` -> ``base`` (or the default library); a list of names -> that subset of ``base`` (special functions
    may be named); a library -> itself.
    """
    if lib is None:
        return base if base is not None else default_library()
    if isinstance(lib, SymbolicLibrary):
        return lib
    if isinstance(lib, str):
        lib = [lib]
    if not isinstance(lib, Sequence) or not all(isinstance(n, str) for n in lib):
        raise TypeError(f"lib must be None, a SymbolicLibrary or a list of function names, got {lib!r}")
    if len(lib) == 0:
        raise ValueError("lib is an empty list of function names")
    return (base if base is not None else default_library()).subset(list(lib))
