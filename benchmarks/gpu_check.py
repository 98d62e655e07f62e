"""GPU check: the canonical fit on CUDA vs CPU, and the layer throughput table on the GPU.

    python benchmarks/gpu_check.py            # exits 0 with a message when no CUDA device is present

Checks: the GPU fit's test RMSE is within 2x of the CPU fit's (same seed, same data), every tensor of the trained
model lives on the GPU, and prints the throughput table of benchmarks/speed.py on the GPU (kanlens vs
equal-parameter MLP, and pykan if installed).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: GPU check skipped")
        return 0
    import speed

    from kanlens import KAN, create_dataset

    results = {}
    for device in ("cpu", "cuda"):
        ds = create_dataset(speed.toy, n_var=2, seed=0, device=device)
        model = KAN(width=[2, 5, 1], grid=5, k=3, seed=0, device=device)
        t0 = time.perf_counter()
        h = model.fit(ds, opt="LBFGS", steps=50, lamb=0.001, progress=False)
        results[device] = (h.test_loss[-1], time.perf_counter() - t0)
        devices = {t.device.type for t in model.state_dict().values() if isinstance(t, torch.Tensor)}
        assert devices == {torch.device(device).type}, f"tensors on {devices}, expected {device}"
        fine = model.refine(10)
        h2 = fine.fit(ds, opt="LBFGS", steps=50, progress=False)
        print(f"{device}: test RMSE {h.test_loss[-1]:.4g} ({results[device][1]:.1f} s), "
              f"after refine(10)+50 steps {h2.test_loss[-1]:.4g}")
    ratio = results["cuda"][0] / results["cpu"][0]
    print(f"GPU/CPU test RMSE ratio: {ratio:.2f} (must be within 2x)")
    ok = 0.5 <= ratio <= 2.0
    speed.main(["--device", "cuda", "--no-fit", "--seconds", "1"])
    print("GPU check", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
