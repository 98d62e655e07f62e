"""Shared helper of the benchmark scripts: what machine a table was measured on."""

from __future__ import annotations

import os
import platform

import torch

SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_description() -> str:
    """CPU model, logical CPUs, the SIMD flags that decide torch's kernels (from /proc/cpuinfo where there is one),
    torch's version and CPU capability."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = " ".join(f for f in SIMD_FLAGS if f in flags) or "unknown"
    return (f"{model}; {os.cpu_count()} logical CPUs; flags: {simd}; torch {torch.__version__} capability "
            f"{torch.backends.cpu.get_cpu_capability()}")
