"""IndexTTS2's BigVGAN fused anti-aliased activation (CUDA), compiled ahead of time.

`forward(inputs, up_filter, down_filter, alpha, beta)` is the kernel that
indextts.s2mel.modules.bigvgan.alias_free_activation.cuda.load.load() would otherwise
JIT-compile; the factory's Index-TTS wheel returns this module from load() instead.
"""

import torch  # noqa: F401  (loads libtorch and libc10, which _C links against)

from indextts_bigvgan_kernel import _C

forward = _C.forward
__all__ = ["forward"]
