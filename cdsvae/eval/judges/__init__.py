"""Judges: supervised networks the evaluation trusts to score what a model generates.

speaker, speechbrain   the speaker judge of speech: an in-recipe ECAPA-TDNN, or a pretrained speechbrain model
ctc, ctc_model, units  the CTC recogniser: content judge of speech, and the probe of z and s
config                 the sections of a judge config (speaker, content, probe, swap) and their defaults
speech, speech_steps   the two speech judges of a recipe (config, gates), trained once and shared by every
                       experiment; their steps on disk (stage 5)
video, video_steps     the video judge classifier with IS, H(y|x) and H(y); its steps on disk (stages 5-6)
"""
