"""One C-DSVAE experiment, ``exp/<tag>/``: its config (:mod:`~cdsvae.experiment.schema`), its data and
what it learnt from (:mod:`~cdsvae.experiment.inputs`), its per-step loss
(:mod:`~cdsvae.experiment.loss`), the training run (:mod:`~cdsvae.experiment.run`), and
loading it back, or a packed copy of it, for evaluation and inference
(:mod:`~cdsvae.experiment.load`, which never imports the training loop).

The package imports nothing itself, so importing one of its modules never loads the others:
``from cdsvae.experiment.load import load_model``.
"""
