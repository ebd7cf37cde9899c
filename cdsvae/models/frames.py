"""Per-frame encoders and decoders, one pair per input modality.

Encoders map a batch of frames (N, *frame_shape) to embeddings (N, g_dim); frames of
augmented views passed as ``extra`` (M, *frame_shape) share the call without touching
the batch-norm statistics (see :mod:`cdsvae.models.norm`) and come back after x's,
as (N + M, g_dim). Decoders map (N, in_dim) back to frames.
"""

from torch import nn

from cdsvae.models.norm import ReferenceBatchNorm1d, ReferenceBatchNorm2d, apply_layers


def _check_frames(frame_shape, *batches):
    for x in batches:
        if x is not None and tuple(x.shape[1:]) != frame_shape:
            raise ValueError(f"expected frames of shape {frame_shape}, got {tuple(x.shape[1:])}")


class Conv64Encoder(nn.Module):
    """DCGAN-style stack for C x 64 x 64 images, as in the authors' image model.

    4 x [conv 4x4 stride 2, BN, LeakyReLU 0.2] (width, 2, 4, 8 x width channels),
    then conv 4x4 to g_dim, BN, tanh.
    """

    def __init__(self, in_channels=3, g_dim=128, width=64):
        super().__init__()
        self.frame_shape = (in_channels, 64, 64)
        layers = []
        channels = [in_channels, width, 2 * width, 4 * width, 8 * width]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1),
                ReferenceBatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(8 * width, g_dim, 4, 1, 0), ReferenceBatchNorm2d(g_dim), nn.Tanh()]
        self.layers = nn.ModuleList(layers)

    def forward(self, x, extra=None):
        _check_frames(self.frame_shape, x, extra)
        return apply_layers(self.layers, x, extra).flatten(1)


class Conv64Decoder(nn.Module):
    """Mirror of :class:`Conv64Encoder` with transposed convolutions and a sigmoid output."""

    def __init__(self, in_dim, out_channels=3, width=64):
        super().__init__()
        channels = [8 * width, 4 * width, 2 * width, width]
        layers = [nn.ConvTranspose2d(in_dim, channels[0], 4, 1, 0), nn.BatchNorm2d(channels[0]),
                  nn.LeakyReLU(0.2, inplace=True)]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers += [nn.ConvTranspose2d(width, out_channels, 4, 2, 1), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, h):
        return self.layers(h[:, :, None, None])


class MLPFrameEncoder(nn.Module):
    """Two hidden layers for spectral frames of ``feat_dim`` bins (e.g. 80 log-mel)."""

    def __init__(self, feat_dim, g_dim=128, hidden=256):
        super().__init__()
        self.frame_shape = (feat_dim,)
        self.layers = nn.ModuleList([
            nn.Linear(feat_dim, hidden), ReferenceBatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden), ReferenceBatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, g_dim), ReferenceBatchNorm1d(g_dim), nn.Tanh(),
        ])

    def forward(self, x, extra=None):
        _check_frames(self.frame_shape, x, extra)
        return apply_layers(self.layers, x, extra)


class MLPFrameDecoder(nn.Module):
    """Mirror of :class:`MLPFrameEncoder`; linear output because log-mel is unbounded."""

    def __init__(self, in_dim, feat_dim, hidden=256):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden, feat_dim),
        )

    def forward(self, h):
        return self.layers(h)


def _halvings(length, times=3):
    for _ in range(times):
        length = (length + 1) // 2
    return length


class Conv1dFrameEncoder(nn.Module):
    """1-D convolutions along the frequency axis of one spectral frame.

    3 x [conv 5 stride 2, BN, LeakyReLU] with (c, 2c, 4c) channels, c = hidden // 8,
    then a linear layer to g_dim, BN, tanh: local spectral patterns (formants,
    harmonics) share weights across frequency.
    """

    def __init__(self, feat_dim, g_dim=128, hidden=256):
        super().__init__()
        c = max(hidden // 8, 1)
        self.frame_shape = (feat_dim,)
        length = _halvings(feat_dim)
        self.layers = nn.ModuleList([
            nn.Conv1d(1, c, 5, 2, 2), ReferenceBatchNorm1d(c), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(c, 2 * c, 5, 2, 2), ReferenceBatchNorm1d(2 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(2 * c, 4 * c, 5, 2, 2), ReferenceBatchNorm1d(4 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(1), nn.Linear(4 * c * length, g_dim), ReferenceBatchNorm1d(g_dim), nn.Tanh(),
        ])

    def forward(self, x, extra=None):
        _check_frames(self.frame_shape, x, extra)
        return apply_layers(self.layers, x[:, None, :], None if extra is None else extra[:, None, :])


class Conv1dFrameDecoder(nn.Module):
    """Mirror of :class:`Conv1dFrameEncoder`; output cropped to ``feat_dim``, linear."""

    def __init__(self, in_dim, feat_dim, hidden=256):
        super().__init__()
        c = max(hidden // 8, 1)
        self.feat_dim = feat_dim
        self.length = _halvings(feat_dim)
        self.channels = 4 * c
        self.fc = nn.Sequential(nn.Linear(in_dim, 4 * c * self.length),
                                nn.BatchNorm1d(4 * c * self.length), nn.LeakyReLU(0.2, inplace=True))
        self.deconv = nn.Sequential(
            nn.ConvTranspose1d(4 * c, 2 * c, 4, 2, 1), nn.BatchNorm1d(2 * c), nn.LeakyReLU(0.2, inplace=True),
            nn.ConvTranspose1d(2 * c, c, 4, 2, 1), nn.BatchNorm1d(c), nn.LeakyReLU(0.2, inplace=True),
            nn.ConvTranspose1d(c, 1, 4, 2, 1),
        )

    def forward(self, h):
        h = self.fc(h).view(h.shape[0], self.channels, self.length)
        return self.deconv(h)[:, 0, : self.feat_dim]


def build_frame_coders(frame, g_dim, dec_in_dim, in_channels=3, feat_dim=80, conv_width=64,
                       frame_hidden=256):
    """(encoder, decoder) for a frame type: "conv64", "mlp" or "conv1d"."""
    if frame == "conv64":
        return (Conv64Encoder(in_channels, g_dim, conv_width),
                Conv64Decoder(dec_in_dim, in_channels, conv_width))
    if frame == "mlp":
        return (MLPFrameEncoder(feat_dim, g_dim, frame_hidden),
                MLPFrameDecoder(dec_in_dim, feat_dim, frame_hidden))
    if frame == "conv1d":
        return (Conv1dFrameEncoder(feat_dim, g_dim, frame_hidden),
                Conv1dFrameDecoder(dec_in_dim, feat_dim, frame_hidden))
    raise ValueError(f"unknown frame type {frame!r}; expected one of conv64, mlp, conv1d")


__all__ = [
    "Conv64Encoder", "Conv64Decoder", "MLPFrameEncoder", "MLPFrameDecoder",
    "Conv1dFrameEncoder", "Conv1dFrameDecoder", "build_frame_coders",
]
