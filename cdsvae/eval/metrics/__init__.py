"""Metrics, measured on a frozen model with the judges of :mod:`cdsvae.eval.judges`.

embeddings, factors      per-utterance s and z, whole-utterance factors and log-mel decoded from them (speech)
trials, scoring, eer     speaker verification: trial lists, cosine scoring, EER and minDCF (speech)
per                      unit error rates (phone, token or character) of decoded sequences (speech)
swap, disentangle        swap speaker scores and the disentanglement metrics of stage 6 (speech)
video_swap               the video judge's protocols A and B on a trained video model
"""
