"""The sequential VAE of C-DSVAE / DSVAE: static s, dynamic z_1:T, learned LSTM prior.

Posterior: frame encoder -> BiLSTM; q(s|x_1:T) from [forward state at T, backward state
at 1]; q(z_t|x) from a one-way RNN over the BiLSTM outputs. Prior: p(s) = N(0, I) and
p(z_t|z_<t) from two stacked LSTM layers with z_0 = 0. Decoder: p(x_t|s, z_t) per frame, for
spectral frames optionally followed by a postnet: residual 1-D convolutions over time that sharpen
what the per-frame decoder blurs (Tacotron 2's postnet), so x_t then also reads z_{t-k..t+k}.

Draws with a ``generator`` are made on the generator's device and moved to the model's, so a
seeded CPU generator gives the same samples whether the model is on the CPU or a GPU.

Under bfloat16 autocast the recurrent layers run in float32: CUDA's autocast runs cuDNN RNNs in
float16 whatever dtype autocast was asked for (``aten/src/ATen/cudnn/AutocastRNN.cpp`` casts to
``kHalf``), and bfloat16 training has no loss scaler to keep float16 gradients from underflowing.
Float16 autocast keeps its float16 RNNs, guarded by the trainer's GradScaler.
"""

from typing import NamedTuple, Optional

import torch
from torch import nn
from torch.nn import functional as F

from cdsvae.models.frames import build_frame_coders


class Encoding(NamedTuple):
    """Posterior parameters and one reparameterised sample of s (B, Ds) and z (B, T, Dz)."""

    s_mean: torch.Tensor
    s_logvar: torch.Tensor
    s: torch.Tensor
    z_mean: torch.Tensor
    z_logvar: torch.Tensor
    z: torch.Tensor


class VAEOutput(NamedTuple):
    """Everything the objective needs from one forward pass.

    ``s_mean_content`` (B, Ds) and ``z_mean_motion`` (B, T, Dz) are the posterior means
    of the content and motion views, present only when the views were passed in.
    """

    s_mean: torch.Tensor
    s_logvar: torch.Tensor
    s: torch.Tensor
    z_mean: torch.Tensor
    z_logvar: torch.Tensor
    z: torch.Tensor
    z_prior_mean: torch.Tensor
    z_prior_logvar: torch.Tensor
    recon: torch.Tensor
    s_mean_content: Optional[torch.Tensor] = None
    z_mean_motion: Optional[torch.Tensor] = None


def _randn(shape, generator, device, dtype=None):
    """N(0, I) of ``shape`` drawn from ``generator`` on its own device, then moved to ``device``."""
    noise = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return noise.to(device)


def _reparameterize(mean, logvar, generator=None):
    if generator is None:  # the same draw as randn(mean.shape), in a form torch.compile takes with dynamic shapes
        noise = torch.randn_like(mean, memory_format=torch.contiguous_format)
    else:
        noise = _randn(mean.shape, generator, mean.device, mean.dtype)
    return mean + torch.exp(0.5 * logvar) * noise


# Device types with autocast, found once: asking torch.amp.is_autocast_available inside the
# forward pass would break torch.compile's graph at every recurrent layer.
_AUTOCAST_DEVICE_TYPES = frozenset(t for t in ("cpu", "cuda", "xpu", "mps", "hpu", "mtia")
                                   if torch.amp.is_autocast_available(t))


def _run_rnn(rnn, x, state=None):
    """``rnn(x, state)``, in float32 under bfloat16 autocast (see the module doc)."""
    kind = x.device.type
    if not (kind in _AUTOCAST_DEVICE_TYPES and torch.is_autocast_enabled(kind)
            and torch.get_autocast_dtype(kind) == torch.bfloat16):
        return rnn(x, state)
    if state is not None:
        state = tuple(t.float() for t in state) if isinstance(state, tuple) else state.float()
    with torch.autocast(device_type=kind, enabled=False):
        return rnn(x.float(), state)


class Postnet(nn.Module):
    """Residual stack over time on decoded spectral frames (B, T, F): ``layers`` convolutions of
    width ``kernel`` with zero padding, BatchNorm and tanh between them; the output is the input
    plus the stack's. Under the authors' init the last layer starts near zero, so training starts
    from the per-frame decoder's output."""

    def __init__(self, feat_dim, channels, layers, kernel=5):
        super().__init__()
        if layers < 1 or kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"a postnet needs at least one layer and an odd kernel, got {layers} and {kernel}")
        dims = [feat_dim] + [channels] * (layers - 1) + [feat_dim]
        mods = []
        for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
            mods.append(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2))
            if i < layers - 1:
                mods += [nn.BatchNorm1d(c_out), nn.Tanh()]
        self.layers = nn.Sequential(*mods)

    def forward(self, frames):
        return frames + self.layers(frames.transpose(1, 2)).transpose(1, 2)


class SequentialVAE(nn.Module):
    """Sequential VAE over (B, T, *frame_shape) inputs; build it with ``build_model``."""

    def __init__(self, frame="conv64", in_channels=3, feat_dim=80, s_dim=256, z_dim=32,
                 hidden_dim=256, g_dim=128, conv_width=64, frame_hidden=256, z_rnn="rnn",
                 init="normal", init_std=0.01, z_input_norm="none", postnet_layers=0):
        super().__init__()
        self.s_dim, self.z_dim, self.hidden_dim = s_dim, z_dim, hidden_dim
        self.frame_encoder, self.frame_decoder = build_frame_coders(
            frame, g_dim, s_dim + z_dim, in_channels=in_channels, feat_dim=feat_dim,
            conv_width=conv_width, frame_hidden=frame_hidden)
        self.frame_shape = tuple(self.frame_encoder.frame_shape)
        self.frame_encoder_dim = g_dim
        self.lstm = nn.LSTM(g_dim, hidden_dim, batch_first=True, bidirectional=True)
        self.s_mean_head = nn.Linear(2 * hidden_dim, s_dim)
        self.s_logvar_head = nn.Linear(2 * hidden_dim, s_dim)
        if z_rnn == "rnn":
            self.z_rnn = nn.RNN(2 * hidden_dim, hidden_dim, batch_first=True)
        elif z_rnn == "lstm":
            self.z_rnn = nn.LSTM(2 * hidden_dim, hidden_dim, batch_first=True)
        else:
            raise ValueError(f"unknown z_rnn {z_rnn!r}; expected rnn or lstm")
        if z_input_norm != "none" and z_input_norm != "instance":
            raise ValueError(f"unknown z_input_norm {z_input_norm!r}; expected none or instance")
        self.z_input_norm = z_input_norm
        self.postnet = None
        if postnet_layers:
            if len(self.frame_shape) != 1:
                raise ValueError(f"a postnet needs spectral frames (mlp, conv1d), not frames of shape {self.frame_shape}")
            self.postnet = Postnet(self.frame_shape[0], hidden_dim, postnet_layers)
        self.z_mean_head = nn.Linear(hidden_dim, z_dim)
        self.z_logvar_head = nn.Linear(hidden_dim, z_dim)
        # Two stacked LSTM layers are the authors' two stacked LSTMCells; one call runs the
        # teacher-forced sequence, step-by-step calls with the carried state run generation.
        self.prior_lstm = nn.LSTM(z_dim, hidden_dim, num_layers=2, batch_first=True)
        self.prior_mean_head = nn.Linear(hidden_dim, z_dim)
        self.prior_logvar_head = nn.Linear(hidden_dim, z_dim)
        if init == "normal":
            self._init_normal(init_std)
        elif init != "default":
            raise ValueError(f"unknown init {init!r}; expected normal or default")

    def _init_normal(self, std):
        """Authors' init: conv and linear weights N(0, std), biases 0; RNNs keep PyTorch's."""
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def device(self):
        return next(self.parameters()).device

    def _check_sequences(self, x, name="x"):
        if x.dim() != 2 + len(self.frame_shape) or tuple(x.shape[2:]) != self.frame_shape:
            layout = ", ".join(["B", "T"] + [str(d) for d in self.frame_shape])
            raise ValueError(f"{name} must have shape ({layout}), got {tuple(x.shape)}")
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"{name} must hold at least one sequence of one frame, got {tuple(x.shape)}")

    def _embed(self, x, views=None):
        """Frame embeddings (B, T, g) of x (B, T, ...), then of ``views`` (K*B, T, ...) if given.

        BatchNorm statistics come from x's frames alone (see :mod:`cdsvae.models.frames`).
        """
        b, t = x.shape[:2]
        frames = x.reshape(b * t, *self.frame_shape)
        if views is None:
            return self.frame_encoder(frames).view(b, t, -1)
        view_frames = views.reshape(-1, *self.frame_shape)
        return self.frame_encoder(frames, view_frames).view(-1, t, self.frame_encoder_dim)

    def _posteriors(self, h):
        out, _ = _run_rnn(self.lstm, h)
        n = self.hidden_dim
        summary = torch.cat([out[:, -1, :n], out[:, 0, n:]], dim=-1)
        z_in = out
        if self.z_input_norm == "instance":
            # each channel's mean and scale over the sequence removed (no affine): per-sequence
            # statistics, such as the voice, stay out of q(z_t)'s input
            z_in = F.instance_norm(out.transpose(1, 2)).transpose(1, 2)
        zh, _ = _run_rnn(self.z_rnn, z_in)
        return (self.s_mean_head(summary), self.s_logvar_head(summary),
                self.z_mean_head(zh), self.z_logvar_head(zh))

    def _prior(self, z):
        """Teacher-forced p(z_t | z_<t) for every t from the given trajectory, z_0 = 0."""
        shifted = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)
        out, _ = _run_rnn(self.prior_lstm, shifted)
        return self.prior_mean_head(out), self.prior_logvar_head(out)

    def _decode(self, s, z):
        b, t = z.shape[:2]
        h = torch.cat([s[:, None, :].expand(b, t, s.shape[-1]), z], dim=-1)
        frames = self.frame_decoder(h.reshape(b * t, -1)).view(b, t, *self.frame_shape)
        return frames if self.postnet is None else self.postnet(frames)

    def forward(self, x, x_content=None, x_motion=None, content_index=None, sample=None):
        """Encode x, decode it, and encode the views when given.

        The views share one frame-encoder call with x, with batch-norm statistics taken
        from x alone (see :mod:`cdsvae.models.frames`), and are never decoded.
        ``content_index`` (B, T) is an alternative to ``x_content``: the content view is
        x with frames reordered per sequence, so its frame embeddings are x's reordered
        and the frame encoder need not run on it at all. ``sample`` defaults to the
        training mode: eval passes use posterior means, so validation losses are
        deterministic.
        """
        self._check_sequences(x)
        b, t = x.shape[:2]
        if sample is None:
            sample = self.training
        if x_content is not None and content_index is not None:
            raise ValueError("give the content view either as x_content or as content_index, not both")
        views = []
        for name, view in (("x_motion", x_motion), ("x_content", x_content)):
            if view is not None:
                if view.shape != x.shape:
                    raise ValueError(f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(view.shape)}")
                views.append(view)
        h = self._embed(x, (torch.cat(views) if len(views) > 1 else views[0]) if views else None)
        if content_index is not None:
            if content_index.shape != (b, t):
                raise ValueError(f"content_index must have shape {(b, t)}, got {tuple(content_index.shape)}")
            index = content_index.to(device=h.device, dtype=torch.long)[:, :, None].expand(b, t, h.shape[-1])
            h = torch.cat([h, torch.gather(h[:b], 1, index)])
        s_mean, s_logvar, z_mean, z_logvar = self._posteriors(h)
        s_mean_content = z_mean_motion = None
        if x_motion is not None:
            z_mean_motion = z_mean[b:2 * b]
        if x_content is not None or content_index is not None:
            s_mean_content = s_mean[-b:]
        s_mean, s_logvar, z_mean, z_logvar = s_mean[:b], s_logvar[:b], z_mean[:b], z_logvar[:b]
        if sample:
            s, z = _reparameterize(s_mean, s_logvar), _reparameterize(z_mean, z_logvar)
        else:
            s, z = s_mean, z_mean
        z_prior_mean, z_prior_logvar = self._prior(z)
        recon = self._decode(s, z)
        return VAEOutput(s_mean, s_logvar, s, z_mean, z_logvar, z, z_prior_mean, z_prior_logvar,
                         recon, s_mean_content, z_mean_motion)

    def encode(self, x, generator=None):
        """Posterior means, log-variances and one sample of s and z_1:T for x (B, T, ...)."""
        self._check_sequences(x)
        s_mean, s_logvar, z_mean, z_logvar = self._posteriors(self._embed(x))
        return Encoding(s_mean, s_logvar, _reparameterize(s_mean, s_logvar, generator),
                        z_mean, z_logvar, _reparameterize(z_mean, z_logvar, generator))

    def decode(self, s, z):
        """Frames (B, T, ...) from s (B, Ds) and z (B, T, Dz)."""
        if s.dim() != 2 or z.dim() != 3 or s.shape[0] != z.shape[0]:
            raise ValueError(f"decode expects s (B, Ds) and z (B, T, Dz), got {tuple(s.shape)} and {tuple(z.shape)}")
        return self._decode(s, z)

    @torch.no_grad()
    def sample_s(self, n, generator=None):
        """n draws of s from p(s) = N(0, I)."""
        if generator is None:
            return torch.randn(n, self.s_dim, device=self.device)
        return _randn((n, self.s_dim), generator, self.device)

    @torch.no_grad()
    def sample_z_prior(self, n, length, generator=None, sample=True):
        """n trajectories z_1:T (n, T, Dz) from the learned prior, run free (each step fed its own draw)."""
        if length < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        z_prev = torch.zeros(n, 1, self.z_dim, device=self.device)
        state, steps = None, []
        for _ in range(length):
            out, state = _run_rnn(self.prior_lstm, z_prev, state)
            mean, logvar = self.prior_mean_head(out), self.prior_logvar_head(out)
            z_prev = _reparameterize(mean, logvar, generator) if sample else mean
            steps.append(z_prev)
        return torch.cat(steps, dim=1)

    @torch.no_grad()
    def generate(self, n, length, generator=None):
        """n sequences of ``length`` frames with s and z_1:T both drawn from the priors."""
        return self._decode(self.sample_s(n, generator), self.sample_z_prior(n, length, generator))

    @torch.no_grad()
    def swap(self, x_s, x_z):
        """Decode s of x_s with z_1:T of x_z (posterior means); a batch of 1 on either side is broadcast."""
        s = self.encode(x_s).s_mean
        z = self.encode(x_z).z_mean
        if s.shape[0] != z.shape[0]:
            if s.shape[0] == 1:
                s = s.expand(z.shape[0], -1)
            elif z.shape[0] == 1:
                z = z.expand(s.shape[0], -1, -1)
            else:
                raise ValueError(f"swap needs equal batch sizes (or 1), got {x_s.shape[0]} and {x_z.shape[0]}")
        return self._decode(s, z)
