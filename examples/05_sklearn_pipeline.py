"""scikit-learn: a KAN inside a Pipeline with cross-validation, next to two baselines, and a formula from data.

Tabular data with 4 features, of which only two matter: ``y = sin(pi*a) + 0.5*b^2 + noise``. We

1. cross-validate ``Pipeline(StandardScaler, KANRegressor)`` against linear regression and gradient boosting,
2. fit the KAN on all data, list its feature importances (the two junk features get ~0) and draw it,
3. run ``KANRegressor(symbolic=True)`` on the raw features and print the candidate formulas.

Saves ``05_kan_pipeline.png`` (the fitted network) into ``--out``.

Run:  python examples/05_sklearn_pipeline.py --out docs/images/   (about 40 s on a laptop CPU; needs scikit-learn)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kanlens.sklearn import KANRegressor

FEATURES = ["a", "b", "junk1", "junk2"]


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, len(FEATURES)))
    y = np.sin(np.pi * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.01 * rng.standard_normal(n)
    return X, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs (default: docs/images)")
    parser.add_argument("--steps", type=int, default=20, help="LBFGS steps of each KAN fit")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    X, y = make_data(400)

    # 1. cross-validation: the KAN is just another estimator
    cv = KFold(n_splits=4, shuffle=True, random_state=0)
    candidates = {
        "linear regression": make_pipeline(StandardScaler(), LinearRegression()),
        "gradient boosting": GradientBoostingRegressor(random_state=0),
        "KAN [4, 5, 1]": make_pipeline(StandardScaler(), KANRegressor(steps=args.steps, lamb=1e-3)),
    }
    print(f"{'model':<20} {'R^2 (4-fold CV)':>16}")
    for name, est in candidates.items():
        scores = cross_val_score(est, X, y, cv=cv)
        print(f"{name:<20} {scores.mean():>9.4f} ± {scores.std():.4f}")

    # 2. fit on everything and look inside: attribution scores per feature, and the network itself
    pipe = candidates["KAN [4, 5, 1]"].fit(X, y)
    kan = pipe[-1]
    for name, s in zip(FEATURES, kan.feature_importances_):
        print(f"feature importance {name:<6} {s:.3f}")
    kan.plot(pipe[0].transform(X), in_vars=FEATURES, title="KANRegressor inside a Pipeline",
             path=out / "05_kan_pipeline.png")

    # 3. a formula: raw features (no scaling), so the constants are in the data's own units
    # a short search (15 CPU s for the formula search, half the steps): an example, not a benchmark
    sym = KANRegressor(symbolic=True, normalize=False, steps=max(1, args.steps // 2), time_budget=15).fit(X, y)
    print("candidate formulas (» = chosen):")
    print(sym.equations())
    print("R^2 of the formula:", round(sym.score(X, y), 5))
    print(f"done in {time.perf_counter() - t0:.1f} s; image in {out}/")


if __name__ == "__main__":
    main()
