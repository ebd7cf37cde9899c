from setuptools import find_packages, setup

setup(
    name="cdsvae",
    version="0.1.0",
    description="Contrastively Disentangled Sequential VAE (C-DSVAE) recipes for speech and video",
    python_requires=">=3.11",
    packages=find_packages(include=["cdsvae", "cdsvae.*"]),
    package_data={"cdsvae.eval.report": ["templates/*.html"]},
    install_requires=[],  # the pinned environment is tools/requirements.txt
    entry_points={
        "console_scripts": [
            "cdsvae-check-experiment = cdsvae.bin.check_experiment:cli",
            "cdsvae-compute-cmvn-stats = cdsvae.bin.compute_cmvn_stats:cli",
            "cdsvae-compute-eer = cdsvae.bin.compute_eer:cli",
            "cdsvae-convert = cdsvae.bin.convert:cli",
            "cdsvae-disentangle = cdsvae.bin.disentangle:cli",
            "cdsvae-embed = cdsvae.bin.embed:cli",
            "cdsvae-extract-embeddings = cdsvae.bin.extract_embeddings:cli",
            "cdsvae-judge-eval = cdsvae.bin.judge_eval:cli",
            "cdsvae-make-demo = cdsvae.bin.make_demo:cli",
            "cdsvae-make-fbank = cdsvae.bin.make_fbank:cli",
            "cdsvae-make-report = cdsvae.bin.make_report:cli",
            "cdsvae-make-units = cdsvae.bin.make_units:cli",
            "cdsvae-pack = cdsvae.bin.pack:cli",
            "cdsvae-score = cdsvae.bin.score:cli",
            "cdsvae-split-data-dir = cdsvae.bin.split_data_dir:cli",
            "cdsvae-subset-data-dir = cdsvae.bin.subset_data_dir:cli",
            "cdsvae-train = cdsvae.bin.train:cli",
            "cdsvae-train-judge = cdsvae.bin.train_judge:cli",
            "cdsvae-train-speech-judge = cdsvae.bin.train_speech_judge:cli",
            "cdsvae-validate-data-dir = cdsvae.bin.validate_data_dir:cli",
            "cdsvae-video-report = cdsvae.bin.video_report:cli",
            "cdsvae-world-vc = cdsvae.bin.world_vc:cli",
        ]
    },
)
