"""Packaging for lavis-gated, a Salesforce LAVIS plugin (style-gated BLIP-2 for art VQA/captioning)."""
from setuptools import find_packages, setup

setup(
    name="lavis-gated",
    version="0.1.0",
    description="Style-aware BLIP-2 (K/V-modulated Q-Former cross-attention) as a LAVIS plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["lavis_gated", "lavis_gated.*"]),
    package_data={"lavis_gated": ["configs/**/*.yaml", "configs/**/*.json", "configs/**/*.txt"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=[
        "salesforce-lavis==1.0.2",
        "torch>=2.6",  # weights_only loading with safe_globals, get_total_norm
        "torchvision",
        "timm==0.4.12",
        "transformers>=4.25,<4.27",
        "tokenizers<0.14",
        "huggingface-hub<1.0",
        "numpy<2",
        "opencv-python-headless==4.5.5.64",
        "fairscale==0.4.4",
        "omegaconf",
        "webdataset",
        "pandas",
        "pillow",
        "peft>=0.6,<0.14",
        "tqdm",
        "matplotlib",
        "pycocoevalcap",
    ],
    extras_require={"test": ["pytest"]},
)
