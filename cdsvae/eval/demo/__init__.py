"""The demo step: what a trained model sounds or looks like, in exp/<tag>/demo/.

index          the demo directory's index and how reports link it
speech, video  wav files and log-mel pictures (speech); swap grids and samples (video)
"""
