"""A speechbrain HiFi-GAN directory (hyperparams.yaml + generator.ckpt) loads offline and voices a swap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _packed import packed_speech
from cdsvae.io import UserError

HPARAMS = """\
sample_rate: 16000
generator: !new:speechbrain.lobes.models.HifiGAN.HifiganGenerator
    in_channels: {n_mels}
    out_channels: 1
    resblock_type: "1"
    resblock_dilation_sizes: [[1, 3, 5]]
    resblock_kernel_sizes: [3]
    upsample_kernel_sizes: [4, 4]
    upsample_initial_channel: 8
    upsample_factors: [2, 2]
    inference_padding: 0
modules:
    generator: !ref <generator>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        generator: !ref <generator>
"""


def tiny_hifigan(model_dir, n_mels):
    from speechbrain.lobes.models.HifiGAN import HifiganGenerator

    torch.manual_seed(3)
    gen = HifiganGenerator(n_mels, 1, "1", [[1, 3, 5]], [3], [4, 4], 8, [2, 2], inference_padding=0)
    model_dir.mkdir()
    (model_dir / "hyperparams.yaml").write_text(HPARAMS.format(n_mels=n_mels))
    torch.save(gen.state_dict(), model_dir / "generator.ckpt")
    return gen


def test_a_saved_hifigan_directory_voices_the_swap(tmp_path):
    from cdsvae import Disentangler

    _, packed, wavs = packed_speech(tmp_path)
    gen = tiny_hifigan(tmp_path / "hifigan", 16)
    model = Disentangler.from_packed(packed, vocoder=tmp_path / "hifigan")
    swap = model.swap(content=wavs["spkA_u0"], speaker=wavs["spkB_u0"])
    gen.remove_weight_norm()
    with torch.no_grad():
        want = gen.inference(torch.from_numpy(swap.features.T.copy())[None]).reshape(-1).numpy()
    assert swap.sample_rate == 16000 and swap.waveform.shape == (50 * 4,)
    np.testing.assert_allclose(swap.waveform, want, atol=1e-5)
    assert sorted(p.name for p in (tmp_path / "hifigan").iterdir()) == ["generator.ckpt", "hyperparams.yaml"]


def test_a_vocoder_for_other_features_or_no_vocoder_is_refused(tmp_path):
    from cdsvae import Disentangler

    _, packed, _ = packed_speech(tmp_path)
    tiny_hifigan(tmp_path / "hifigan80", 80)
    with pytest.raises(UserError, match="takes 80 mel bins, the model's features have 16"):
        Disentangler.from_packed(packed, vocoder=tmp_path / "hifigan80")
    with pytest.raises(UserError, match="not a speechbrain vocoder directory"):
        Disentangler.from_packed(packed, vocoder=tmp_path)
