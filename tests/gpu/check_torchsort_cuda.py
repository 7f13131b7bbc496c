"""Run on a machine with a GPU (the `device` tool's, here): build the torchsort recipe's
pinned sdist against that machine's torch and CUDA exactly as the recipe says (no build
isolation, TORCH_CUDA_ARCH_LIST=8.0;9.0, its torch as a constraint), check the device
code per architecture, then run the CUDA kernel on the GPU against the CPU kernel.
Prints one JSON document, which bench/gpu-run.md records (run it by hand on a GPU host)."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHA = "416a7dd2ab88332b27e98318d7fb2e0243b9fb6f1fffcf77760d63103d70dd04"


def main(sdist: str, out: str) -> int:
    import torch

    result: dict[str, object] = {"torch": torch.__version__, "cuda": torch.version.cuda,
                                 "python": sys.version.split()[0]}
    data = Path(sdist).read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHA, "the sdist is not the recipe's pin"
    work = Path(tempfile.mkdtemp())
    constraints = work / "constraints.txt"
    constraints.write_text(f"torch=={torch.__version__}\n")
    env = {**os.environ, "TORCH_CUDA_ARCH_LIST": "8.0;9.0", "MAX_JOBS": "16",
           "PIP_CONSTRAINT": str(constraints), "PIP_NO_INDEX": "1"}
    started = time.monotonic()
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-w", str(work / "dist"), sdist],
                           env=env, capture_output=True, text=True)
    result["build_s"] = round(time.monotonic() - started, 1)
    if build.returncode != 0:
        result["build_error"] = build.stdout[-3000:] + build.stderr[-3000:]
        Path(out).write_text(json.dumps(result, indent=2))
        return 1
    wheel = next((work / "dist").glob("*.whl"))
    result["wheel"] = wheel.name
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                    "--target", str(target), str(wheel)], check=True, capture_output=True)
    so = glob.glob(str(target / "torchsort" / "isotonic_cuda*.so"))
    result["cuda_extension"] = bool(so)
    if so:
        elf = subprocess.run(["cuobjdump", "--list-elf", so[0]], capture_output=True,
                             text=True).stdout
        result["device_code"] = sorted({p.split(".")[-2] for p in elf.split() if ".sm_" in p})
    sys.path.insert(0, str(target))
    import torchsort

    result["gpu"] = torch.cuda.get_device_name(0)
    x = torch.randn(64, 4096, dtype=torch.float32)
    cpu = torchsort.soft_rank(x, regularization_strength=0.1)
    gpu_in = x.cuda()
    torchsort.soft_rank(gpu_in, regularization_strength=0.1)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        gpu = torchsort.soft_rank(gpu_in, regularization_strength=0.1)
    torch.cuda.synchronize()
    gpu_ms = (time.perf_counter() - t0) / 20 * 1000
    t0 = time.perf_counter()
    for _ in range(3):
        torchsort.soft_rank(x, regularization_strength=0.1)
    cpu_ms = (time.perf_counter() - t0) / 3 * 1000
    result["max_abs_diff_gpu_vs_cpu"] = float((gpu.cpu() - cpu).abs().max())
    result["kernel_ran_on"] = str(gpu.device)
    result["soft_rank_64x4096_ms"] = {"gpu": round(gpu_ms, 3), "cpu": round(cpu_ms, 1)}
    result["passed"] = bool(so) and result["max_abs_diff_gpu_vs_cpu"] < 1e-3 and \
        {"sm_80", "sm_90"} <= set(result.get("device_code", []))  # type: ignore[arg-type]
    Path(out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
