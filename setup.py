from setuptools import find_packages, setup

setup(
    name="cdsvae",
    version="0.1.0",
    description="Contrastively Disentangled Sequential VAE (C-DSVAE) recipes for speech and video",
    python_requires=">=3.11",
    packages=find_packages(include=["cdsvae", "cdsvae.*"]),
    install_requires=[],  # the pinned environment is tools/requirements.txt
    entry_points={"console_scripts": []},
)
