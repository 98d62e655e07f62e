"""KAN-conv classifier vs an equal-parameter CNN on real MNIST digits (fixed split, fixed training budget).

Data: the MNIST *test* set (10,000 images, IDX files, gzip or raw) from ``--data``; the first 8,000 images train,
the last 2,000 evaluate. Nothing is downloaded.

Both models share one skeleton (:mod:`kanlens.vision`) and are trained the same way (Adam, one-cycle learning
rate, batch 64, same epochs and augmentation, same seeds); the CNN's widths are chosen so that its parameter
count is the closest to the KAN's (:func:`kanlens.vision.matched_cnn`). The 5.3K-parameter anchor CNN (8 -> 16
channels) is trained too for reference. Times are wall-clock and process CPU seconds.

Usage:
    python benchmarks/conv_mnist.py [--data ../shared/data/mnist] [--epochs 20] [--seeds 0 1 2]
        [--threads 1] [--save runs/conv_mnist_kan.pt] [--out docs/benchmarks_conv.md] [--plots docs/images]
        [--validation] [--kan '{"hidden_range": [-4, 4]}'] [--weight-decay 1e-4] [--max-shift 1]
        [--cnn-also-shift 2]

``--validation`` is for model selection: it trains on the first 6,000 training digits and reports accuracy on the
next 2,000, leaving the 2,000 held-out digits untouched (its ``--out`` section is ``conv_mnist_validation``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from _markdown import write_section

from kanlens.idx import load_mnist
from kanlens.vision import CNN, KANConvNet, count_parameters, evaluate, matched_cnn, train_classifier

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"
# hidden_range (-3, 3): the batch-normalised inputs of stage 2 leave the default (-2, 2) grid ~10% of the time
KAN_CONFIG = dict(channels=(7, 13), grid=(1, 3), k=(1, 3), activation=(False, True), hidden_range=(-3.0, 3.0),
                  shared_shape=(False, True))


def read_filters(model: KANConvNet, images: torch.Tensor, plots: str | None) -> str:
    """auto_symbolic reports of both KAN-conv stages (and, with ``plots``, their kernel / response figures)."""
    from kanlens.symbolic.conv import auto_symbolic_conv

    model.eval()
    inputs: dict[int, torch.Tensor] = {}
    hooks = [
        c.register_forward_pre_hook(lambda m, a, i=i: inputs.__setitem__(i, a[0])) for i, c in enumerate(model.convs)
    ]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    texts = []
    for i, conv in enumerate(model.convs):
        rep = auto_symbolic_conv(conv, inputs[i], fit_library=False)
        texts.append(f"stage {i + 1} ({conv.in_channels} -> {conv.out_channels}, grid {conv.num}, k {conv.k}):\n{rep}")
    if plots:
        import matplotlib

        matplotlib.use("Agg")
        from kanlens.plotting.conv import plot_conv_kernels, plot_conv_response, plot_conv_responses

        out = Path(plots)
        out.mkdir(parents=True, exist_ok=True)
        plot_conv_kernels(model.convs[0], x=inputs[0], path=out / "conv_kernels.png")
        plot_conv_kernels(model.convs[1], out_channels=[0, 1, 2, 3], x=inputs[1], path=out / "conv_kernels_stage2.png")
        plot_conv_response(model.convs[0], images[0], out_channel=0, path=out / "conv_response.png")
        plot_conv_responses(model.convs[0], images[0], path=out / "conv_responses.png")
    return "\n\n".join(texts)


def run(name: str, model: torch.nn.Module, data: tuple, args: argparse.Namespace, seed: int,
        max_shift: int | None = None) -> dict:
    x_tr, y_tr, x_te, y_te = data
    res = train_classifier(
        model, x_tr, y_tr, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        max_shift=args.max_shift if max_shift is None else max_shift, weight_decay=args.weight_decay, seed=seed,
    )
    acc = evaluate(model, x_te, y_te)
    row = dict(model=name, seed=seed, params=count_parameters(model), acc=acc, wall=res.seconds, cpu=res.cpu_seconds)
    print(f"{name:<28} seed {seed}  params {row['params']:>6}  acc {acc:.2%}  {res.seconds:6.1f} s wall  "
          f"{res.cpu_seconds:6.1f} s cpu  (final train loss {res.losses[-1]:.3f})", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder with t10k-images-idx3-ubyte[.gz] etc.")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--max-shift", type=int, default=1, help="random-shift augmentation (pixels), both models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-anchor", action="store_true", help="skip the 5.3K anchor CNN (8 -> 16)")
    parser.add_argument("--save", default=None, help="save the (first seed's) KAN-conv state_dict here (.pt)")
    parser.add_argument("--out", default=None, help="write/update a markdown section in this file")
    parser.add_argument("--plots", default=None, help="folder for kernel/response PNGs of the first seed's KAN")
    parser.add_argument("--validation", action="store_true",
                        help="model selection: train on the first 6,000, evaluate on the next 2,000 (held-out unused)")
    parser.add_argument("--kan", default=None, help='JSON overrides of the KAN config, e.g. \'{"grid": [1, 2]}\'')
    parser.add_argument("--weight-decay", type=float, default=0.0, help="Adam L2 weight decay, both models")
    parser.add_argument("--cnn-also-shift", type=int, default=None,
                        help="also train the matched CNN with this random-shift augmentation (e.g. its own best "
                             "recipe), as an extra row")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    x, y = load_mnist(args.data, split="test")
    if args.validation:
        data = (x[:6000], y[:6000], x[6000:8000], y[6000:8000])
    else:
        data = (x[:8000], y[:8000], x[8000:], y[8000:])
    overrides = json.loads(args.kan or "{}")
    kan_config = dict(KAN_CONFIG, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    rows = []
    reports = ""
    for seed in args.seeds:
        kan = KANConvNet(seed=seed, **kan_config)
        rows.append(run("KANConvNet" + str(kan_config["channels"]), kan, data, args, seed))
        if seed == args.seeds[0]:
            if args.save:
                torch.save(kan.state_dict(), args.save)
            reports = read_filters(kan, data[2][:256], args.plots)
        cnn = matched_cnn(count_parameters(kan), seed=seed)
        rows.append(run("CNN" + str(cnn.config["channels"]) + " (matched)", cnn, data, args, seed))
        if args.cnn_also_shift is not None and args.cnn_also_shift != args.max_shift:
            cnn = matched_cnn(count_parameters(kan), seed=seed)
            name = f"CNN{cnn.config['channels']} (matched, shifts up to {args.cnn_also_shift} px)"
            rows.append(run(name, cnn, data, args, seed, max_shift=args.cnn_also_shift))
        if not args.no_anchor and cnn.config["channels"] != (8, 16):
            rows.append(run("CNN(8, 16) (anchor)", CNN(channels=(8, 16), seed=seed), data, args, seed))

    names = list(dict.fromkeys(r["model"] for r in rows))
    lines = [
        f"| model | params | {'validation' if args.validation else 'held-out'} acc (mean over seeds) | per seed | "
        "wall s / run | CPU s / run |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for name in names:
        rs = [r for r in rows if r["model"] == name]
        accs = [r["acc"] for r in rs]
        lines.append(
            f"| {name} | {rs[0]['params']} | {statistics.mean(accs):.2%} | "
            f"{', '.join(f'{a:.2%}' for a in accs)} | {statistics.mean(r['wall'] for r in rs):.1f} | "
            f"{statistics.mean(r['cpu'] for r in rs):.1f} |"
        )
    table = "\n".join(lines)
    cmd = "python benchmarks/conv_mnist.py " + " ".join(sys.argv[1:] if argv is None else argv)
    split = "first 8,000 train / last 2,000 held out"
    if args.validation:
        split = "first 6,000 train / next 2,000 validation"
    setup = (
        f"MNIST test set, {split}; Adam lr {args.lr} one-cycle (weight decay {args.weight_decay}), "
        f"batch {args.batch_size}, {args.epochs} epochs, random shifts up to {args.max_shift} px, "
        f"torch {torch.__version__}, {args.threads} thread(s), seeds {args.seeds}. KAN config: {kan_config}."
    )
    print(setup)
    print(table)
    print(reports)
    if args.out:
        section = "conv_mnist_validation" if args.validation else "conv_mnist"
        write_section(args.out, section, f"### KAN-conv vs CNN on MNIST\n\nCommand: `{cmd.strip()}`\n\n"
                                             f"{setup}\n\n{table}\n\n```text\n{reports}\n```\n")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"total {time.perf_counter() - started:.0f} s")
    raise SystemExit(code)
