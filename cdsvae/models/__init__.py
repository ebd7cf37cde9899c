"""Frame encoders/decoders per modality and the sequential VAE built from a config dict.

The ``model`` config section is declared once, here (:data:`MODEL`): keys, defaults, types and
choices; :func:`resolve_model_config` checks a (partial) model config against it.
"""

from cdsvae.config import Field, Section, validate
from cdsvae.io import UserError
from cdsvae.models.sequential import Encoding, SequentialVAE, VAEOutput

MODEL = Section({
    # conv64: (C, 64, 64) images in [0, 1]; mlp | conv1d: (F,) spectral frames
    "frame": Field("conv64", "str", choices=("conv64", "mlp", "conv1d")),
    "in_channels": Field(3, "int", minimum=1),  # image channels (conv64)
    "feat_dim": Field(80, "int", minimum=1),  # bins per spectral frame (mlp, conv1d)
    "s_dim": Field(256, "int", minimum=1),
    "z_dim": Field(32, "int", minimum=1),
    "hidden_dim": Field(256, "int", minimum=1),  # BiLSTM (per direction), z RNN and prior LSTM
    "g_dim": Field(128, "int", minimum=1),  # frame embedding
    "conv_width": Field(64, "int", minimum=1),  # channels of the first conv64 layer (doubled three times)
    # spectral frame coder width (mlp hidden units; conv1d uses hidden/8 channels)
    "frame_hidden": Field(256, "int", minimum=1),
    # q(z_t) recurrence over the BiLSTM outputs: rnn (authors) | lstm
    "z_rnn": Field("rnn", "str", choices=("rnn", "lstm")),
    # none (authors) | instance: q(z_t) sees the BiLSTM outputs normalised over time per channel,
    # so what is constant over a sequence reaches z less easily
    "z_input_norm": Field("none", "str", choices=("none", "instance")),
    # 0 (authors): p(x_t|s, z_t) per frame | N: spectral frames then pass a residual postnet of N
    # convolutions over time (kernel 5, hidden_dim channels)
    "postnet_layers": Field(0, "int", minimum=0),
    # normal: conv/linear weights N(0, init_std), biases 0 (authors) | default
    "init": Field("normal", "str", choices=("normal", "default")),
    "init_std": Field(0.01, "float", minimum=0.0),  # > 0
})


def resolve_model_config(cfg, source: str = "model config"):
    """MODEL's defaults updated by ``cfg``, checked; bad keys or values raise UserError naming the key."""
    resolved = validate({"model": dict(cfg or {})}, {"model": MODEL}, source)["model"]
    if not resolved["init_std"] > 0:
        raise UserError(f"{source}: 'model.init_std' must be a positive number, got {resolved['init_std']!r}")
    return resolved


def build_model(cfg):
    """A SequentialVAE from a (partial) model config; the resolved config is kept as ``model.config``."""
    resolved = resolve_model_config(cfg)
    model = SequentialVAE(**resolved)
    model.config = resolved
    return model


__all__ = ["MODEL", "Encoding", "SequentialVAE", "VAEOutput", "build_model", "resolve_model_config"]
