"""A tiny experiment config on synthetic data: ``tiny_config(section__key=value, ...)``."""

TINY = {"frame": "mlp", "feat_dim": 12, "s_dim": 8, "z_dim": 4, "hidden_dim": 16, "g_dim": 8, "frame_hidden": 16}


def tiny_config(**over):
    cfg = {"model": dict(TINY),
           "data": {"type": "synthetic", "frame_shape": [12], "num_train": 32, "num_valid": 16, "seq_len": 6,
                    "with_motion": True, "valid_split": "dev"},
           "train": {"epochs": 3, "batch_size": 8, "log_every": 2, "tensorboard": False, "seed": 4}}
    for key, value in over.items():
        section, name = key.split("__")
        cfg.setdefault(section, {})[name] = value
    return cfg
