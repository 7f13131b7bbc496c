"""indextts-deps's smoke test: Index-TTS's real inference path on CPU with random weights,
and the prebuilt BigVGAN kernel found where the package looks for it.

    python /opt/indextts/smoke.py [--full] [WORKDIR]

--full: the official sizes (~5 GB of random weights, ~9 GB of memory): the time and peak
memory of the real model's constructor and one infer() on this machine's CPU.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def device_code(library: Path) -> list[str]:
    """The SASS/PTX architectures of a CUDA .so, read from its fat binaries (the layout
    cuobjdump reads: 0xBA55ED50 headers, then entries with kind and SM number)."""
    data, found = library.read_bytes(), set()
    magic = struct.pack("<I", 0xBA55ED50)
    at = data.find(magic)
    while at >= 0:
        _, _, header, size = struct.unpack_from("<IHHQ", data, at)
        entry, end = at + header, at + header + size
        while header and entry + 32 <= min(end, len(data)):
            kind, _, entry_header, payload, _, _, _, sm = struct.unpack_from("<HHIQIIII", data, entry)
            if not entry_header:
                break
            if kind in (1, 2) and 10 <= sm < 1000:
                found.add(("ptx_" if kind == 1 else "sm_") + str(sm))
            entry += entry_header + payload
        at = data.find(magic, max(end, at + 4))
    return sorted(found)


def kernel() -> str:
    import torch
    from indextts.s2mel.modules.bigvgan.alias_free_activation.cuda import load

    module = load.load()  # the package's own entry point: JIT-compiles unless prebuilt
    assert module.__name__ == "indextts_bigvgan_kernel", module
    library = Path(module._C.__file__)
    archs = device_code(library)
    assert {"sm_80", "sm_90"} <= set(archs), archs
    return (f"BigVGAN kernel prebuilt: {library.name} ({', '.join(archs)}), loaded against"
            f" torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")


def synthesize(work: Path, *, full: bool = False) -> str:
    import soundfile as sf

    checkpoints = work / "checkpoints"
    subprocess.run([sys.executable, str(Path(__file__).with_name("make_checkpoint.py")),
                    str(checkpoints), *(["--full"] if full else [])], check=True)
    # IndexTTS2 reads its Hugging Face cache from ./checkpoints/hf_cache (infer_v2 sets it),
    # offline: a file missing there is an error, not a download
    os.chdir(work)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from indextts.infer_v2 import IndexTTS2

    started = time.monotonic()
    tts = IndexTTS2(cfg_path=str(checkpoints / "config.yaml"), model_dir=str(checkpoints),
                    device="cpu")
    built = time.monotonic() - started
    rate = 22050
    t = np.arange(2 * rate) / rate
    prompt = work / "prompt.wav"
    sf.write(prompt, (0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t)).astype("float32"), rate)
    started = time.monotonic()
    tts.infer(spk_audio_prompt=str(prompt), text="Basefactory speaks with Index-TTS.",
              output_path=str(work / "out.wav"), max_mel_tokens=60, verbose=False)
    took = time.monotonic() - started
    data, sr = sf.read(work / "out.wav")
    assert sr == rate and data.shape[0] > rate // 10, (sr, data.shape)
    assert float(np.abs(data).max()) > 1e-4, "the waveform is silent"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    return (f"index-tts {md.version('tts-webui.index-tts')} IndexTTS2 (random weights,"
            f" {'official sizes' if full else 'reduced'}): {data.shape[0] / sr:.2f} s of audio"
            f" at {sr} Hz, built in {built:.1f} s, infer() in {took:.1f} s, peak memory"
            f" {peak:.1f} GB")


def main() -> int:
    args = sys.argv[1:]
    full = "--full" in args
    args = [a for a in args if a != "--full"]
    with tempfile.TemporaryDirectory(prefix="indextts-smoke-") as tmp:
        work = Path(args[0]) if args else Path(tmp)
        print(kernel(), flush=True)
        print(synthesize(work, full=full), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
