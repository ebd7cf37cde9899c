"""Frame encoders/decoders per modality and the sequential VAE built from a config dict."""

from cdsvae.errors import UserError
from cdsvae.models.sequential import Encoding, SequentialVAE, VAEOutput

MODEL_DEFAULTS = {
    "frame": "conv64",      # conv64: (C, 64, 64) images in [0, 1]; mlp | conv1d: (F,) spectral frames
    "in_channels": 3,       # image channels (conv64)
    "feat_dim": 80,         # bins per spectral frame (mlp, conv1d)
    "s_dim": 256,
    "z_dim": 32,
    "hidden_dim": 256,      # BiLSTM (per direction), z RNN and prior LSTM
    "g_dim": 128,           # frame embedding
    "conv_width": 64,       # channels of the first conv64 layer (doubled three times)
    "frame_hidden": 256,    # spectral frame coder width (mlp hidden units; conv1d uses hidden/8 channels)
    "z_rnn": "rnn",         # q(z_t) recurrence over the BiLSTM outputs: rnn (authors) | lstm
    "z_input_norm": "none",  # none (authors) | instance: q(z_t) sees the BiLSTM outputs normalised over
                             # time per channel, so what is constant over a sequence reaches z less easily
    "init": "normal",       # normal: conv/linear weights N(0, init_std), biases 0 (authors) | default
    "init_std": 0.01,
}

_CHOICES = {"frame": ("conv64", "mlp", "conv1d"), "z_rnn": ("rnn", "lstm"), "z_input_norm": ("none", "instance"),
            "init": ("normal", "default")}


def resolve_model_config(cfg):
    """MODEL_DEFAULTS updated by ``cfg``, checked; bad keys or values raise UserError naming the key."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(MODEL_DEFAULTS))
    if unknown:
        raise UserError(f"unknown model key(s) {', '.join(unknown)}; valid keys: {', '.join(MODEL_DEFAULTS)}")
    resolved = {**MODEL_DEFAULTS, **cfg}
    for key, value in resolved.items():
        if key in _CHOICES:
            if value not in _CHOICES[key]:
                raise UserError(f"model.{key} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
        elif key == "init_std":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise UserError(f"model.init_std must be a positive number, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"model.{key} must be a positive integer, got {value!r}")
    return resolved


def build_model(cfg):
    """A SequentialVAE from a (partial) model config; the resolved config is kept as ``model.config``."""
    resolved = resolve_model_config(cfg)
    model = SequentialVAE(**resolved)
    model.config = resolved
    return model


__all__ = ["MODEL_DEFAULTS", "Encoding", "SequentialVAE", "VAEOutput", "build_model", "resolve_model_config"]
