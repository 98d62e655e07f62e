"""The KAN a search starts from when the user gives no width."""

from __future__ import annotations

__all__ = ["auto_width"]


def auto_width(dataset: dict) -> list[int]:
    """``[n, 2n + 1, m]`` for ``n`` inputs and ``m`` outputs: the Kolmogorov-Arnold width, enough for a sum of
    one-input functions of ``2n + 1`` sums of one-input functions. The search sparsifies and prunes it to what the
    data need; products, ratios and deeper nesting are found by the target transforms and the structure stages
    (separability, pair symmetries, low rank), which start smaller searches of their own.

    Shapes:
        ``dataset["train_input"]`` ``(n_samples, n)``, ``dataset["train_label"]`` ``(n_samples, m)``.

    Example:
        >>> import torch
        >>> auto_width({"train_input": torch.zeros(10, 3), "train_label": torch.zeros(10, 1)})
        [3, 7, 1]
    """
    n, m = int(dataset["train_input"].shape[1]), int(dataset["train_label"].shape[1])
    return [n, 2 * n + 1, m]
