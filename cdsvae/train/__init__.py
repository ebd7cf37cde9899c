"""Training: a generic resumable, distributed trainer (``trainer`` and the modules it uses) and the
C-DSVAE task built on it (``task``: config schema, datasets, loss, ``load_model``).

The package imports nothing itself, so importing one of its modules never loads the others:
``from cdsvae.train.task import load_model``.
"""
