"""Training: a generic resumable, distributed trainer (``trainer``, its options and the modules it
uses). What an experiment trains with it (config, datasets, loss, the run) is :mod:`cdsvae.experiment`.

The package imports nothing itself, so importing one of its modules never loads the others:
``from cdsvae.train.trainer import Trainer``.
"""
