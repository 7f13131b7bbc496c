# BigVGAN's anti-aliased activation, the fused CUDA kernel IndexTTS2 uses, compiled ahead of
# time as an ordinary torch extension. The kernel's sources are not copied here: the
# recipe's pre_build takes them from the pinned Index-TTS wheel into cuda/ (sha256-checked),
# so this wheel is built from exactly the code that wheel would JIT-compile at run time.
#
# The package's own load.py passes `-gencode arch=compute_70,code=sm_70`, which CUDA 13's
# nvcc rejects; here the architectures come from TORCH_CUDA_ARCH_LIST (cpp_extension's
# own -gencode flags), and the other nvcc flags are load.py's.
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CUDAExtension

NVCC_FLAGS = [
    "-O3", "--use_fast_math",
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "--expt-relaxed-constexpr", "--expt-extended-lambda",
]

setup(
    name="indextts-bigvgan-kernel",
    version="2.0.1",
    description="IndexTTS2's BigVGAN anti-aliased activation CUDA kernel, compiled ahead of time",
    license="MIT",
    packages=["indextts_bigvgan_kernel"],
    ext_modules=[
        CUDAExtension(
            "indextts_bigvgan_kernel._C",
            ["cuda/anti_alias_activation.cpp", "cuda/anti_alias_activation_cuda.cu"],
            extra_compile_args={"cxx": ["-O3"], "nvcc": NVCC_FLAGS},
        )
    ],
    cmdclass={"build_ext": BuildExtension},
    python_requires=">=3.10",
)
