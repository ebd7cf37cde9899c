"""Evaluation: scoring the trained models, their demos, and the reports made from the results.

eer, trials, scoring, embeddings  speaker verification of s and z (speech)
per, swap                          unit error rates (content judges) and swap speaker scores (speech)
ctc, ctc_model, units              the CTC recogniser: content judge and probe of z and s (speech)
judge                              the judge classifier and its metrics (video)
speaker_judge, speechbrain_judge   the speaker judge (speech): in-recipe ECAPA-TDNN or a pretrained speechbrain model
demo, speech_demo, video_demo      the demo step: wav files and pictures in exp/<tag>/demo/
experiment, results, tables        reading finished experiments into rows and tables
plots, environment                 figures and the environment header shared by the reports
report, video_report               RESULTS.md files; they read results and never load a model
"""
