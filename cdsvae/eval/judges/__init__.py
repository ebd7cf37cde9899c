"""Judges: supervised networks the evaluation trusts to score what a model generates.

speaker, speechbrain   the speaker judge of speech: an in-recipe ECAPA-TDNN, or a pretrained speechbrain model
ctc, ctc_model, units  the CTC recogniser: content judge of speech, and the probe of z and s
speech                 the two speech judges of a recipe, trained once and shared by every experiment
video                  the video judge classifier and its metrics (protocols A and B, IS, H(y|x), H(y))
"""
