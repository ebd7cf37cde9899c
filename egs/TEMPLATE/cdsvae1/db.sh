# Corpus roots of every recipe (each recipe's db.sh is a symlink to this file).  A recipe
# reads the one it needs in local/data.sh; set it here (or in the environment, e.g.
# `TIMIT=/data/timit ./run.sh`).  An empty or wrong root makes stage 1 stop with a message
# saying what it expected to find there.

# LDC93S1 TIMIT: the directory holding TRAIN/ and TEST/ (upper- or lower-case names), e.g.
# <disc>/TIMIT, or <copy>/data in copies with a .WAV.wav beside every .WAV.
TIMIT=${TIMIT:-}
# VCTK 0.92: the directory holding wav48_silence_trimmed/ and txt/ (or the older wav48/).
VCTK=${VCTK:-}
# Sprites: the authors' data.pkl, or the directory of the generator's per-(action, direction)
# npy files.  Empty: the recipe makes a procedural Sprites-like set on this machine.
SPRITES=${SPRITES:-}
# MNIST: the directory holding the IDX files (train-images-idx3-ubyte[.gz], ...).
# Empty: SM-MNIST is made from scikit-learn's bundled digits.
MNIST=${MNIST:-}
# The embedded mini corpus: where local/make_corpus.py writes it (made on first use; a
# relative path is taken from the recipe directory).
MINI_CORPUS=${MINI_CORPUS:-corpus}
# Your own corpus (egs/custom): a folder of audio by speaker, DIR/<speaker>/**/<name>.<wav|flac|ogg|sph>,
# or a tab-separated manifest with the columns path, speaker and optionally text.  The recipe's
# --audio_dir and --manifest options win over these.
CUSTOM_AUDIO_DIR=${CUSTOM_AUDIO_DIR:-}
CUSTOM_MANIFEST=${CUSTOM_MANIFEST:-}
