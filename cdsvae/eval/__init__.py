"""Evaluation: scoring the trained models, their demos, and the reports made from the results.

judges/   the trusted networks that score generations: the speaker judge (in-recipe ECAPA-TDNN or a
          pretrained speechbrain model), the CTC content judge and probe, and the video judge
metrics/  what is measured: embeddings and whole-utterance factors of a model, trials, cosine scoring,
          EER/minDCF, unit error rates, swap scores and the speech disentanglement metrics
report/   RESULTS.md and index.html from finished experiments: they read results, never load a model
demo/     the demo step: wav files and pictures in exp/<tag>/demo/
"""
