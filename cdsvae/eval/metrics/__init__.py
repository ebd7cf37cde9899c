"""Metrics of speech models, measured on a frozen model with the judges of :mod:`cdsvae.eval.judges`.

embeddings, factors      per-utterance s and z, whole-utterance factors and log-mel decoded from them
trials, scoring, eer     speaker verification: trial lists, cosine scoring, EER and minDCF
per                      unit error rates (phone, token or character) of decoded sequences
swap, disentangle        swap speaker scores and the disentanglement metrics of stage 6
"""
