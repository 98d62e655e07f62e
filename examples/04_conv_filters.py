"""KAN convolution on real digits: train a small KAN-conv classifier, then read its filters.

Trains :class:`kanlens.vision.KANConvNet` on scikit-learn's 8x8 digits (1,797 images; or on MNIST IDX files with
``--mnist FOLDER``), then saves into ``--out``:

* ``04_conv_kernels.png``   every first-layer filter as a K x K block of learned element functions (faded by
  importance, tinted by the slope of their affine fit: the block also reads as an ordinary kernel),
* ``04_conv_response.png``  one filter on one test image: receptive field, input patch, per-element responses,
  element curves with the patch values marked, output map,
* ``04_conv_responses.png`` the test image and every filter's output map,
* ``04_conv_symbolic.txt`` the conv auto_symbolic report: which elements/filters are (nearly) linear, i.e. ordinary
  convolutions, and which are genuinely non-linear (with the best symbolic-library function).

Run:  python examples/04_conv_filters.py --out docs/images/   (well under a minute on a laptop CPU)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from kanlens.symbolic.conv import auto_symbolic_conv
from kanlens.vision import KANConvNet, count_parameters, evaluate, train_classifier


def load_data(mnist: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    if mnist:
        from kanlens.idx import load_mnist

        x, y = load_mnist(mnist, split="test")
        return x[:8000], y[:8000], x[8000:], y[8000:], 28
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    return x[:1400], y[:1400], x[1400:], y[1400:], 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNGs (default: docs/images)")
    parser.add_argument("--mnist", default=None, help="folder with MNIST IDX files (default: sklearn 8x8 digits)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (small tensors: 1 is best)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    from kanlens.plotting.conv import plot_conv_kernels, plot_conv_response, plot_conv_responses

    x_tr, y_tr, x_te, y_te, size = load_data(args.mnist)
    padding = 1 if size < 16 else 0
    model = KANConvNet(channels=(6, 8), image_size=size, padding=padding, grid=5, k=3, activation=True, seed=0)
    t0 = time.perf_counter()
    res = train_classifier(model, x_tr, y_tr, epochs=args.epochs, batch_size=64, lr=1e-2, max_shift=1, seed=0)
    acc = evaluate(model, x_te, y_te)
    print(
        f"KANConvNet {count_parameters(model)} params: held-out accuracy {acc:.2%} on {len(y_te)} images "
        f"({res.epochs} epochs, {time.perf_counter() - t0:.1f} s)"
    )

    first = model.convs[0]
    sample = x_te[:256]
    plot_conv_kernels(first, x=sample, path=out / "04_conv_kernels.png")
    image = x_te[0]
    plot_conv_response(first, image, out_channel=0, path=out / "04_conv_response.png")
    plot_conv_responses(first, image, path=out / "04_conv_responses.png")

    report = auto_symbolic_conv(first, sample, lib=["x", "x^2", "x^3", "exp", "sin", "tanh", "sqrt", "abs"])
    text = str(report)
    (out / "04_conv_symbolic.txt").write_text(text + "\n")
    print(text)
    print(f"wrote 04_conv_kernels.png, 04_conv_response.png, 04_conv_responses.png, 04_conv_symbolic.txt into {out}/")


if __name__ == "__main__":
    main()
