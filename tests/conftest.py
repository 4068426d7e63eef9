"""Shared test helpers: a micro config small enough that every test runs on a CPU in seconds."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataclasses import asdict  # noqa: E402

import torch  # noqa: E402

import sfvgen  # noqa: E402

torch.set_num_threads(1)  # micro models run as fast on one thread, and a busy machine does not oversubscribe


def micro_cfg(**overrides):
    base = dict(size=16, canvas=64, speed=2, chunk=2, channels=8, mults=(1, 2), attn_levels=(1,),
                temporal_attn_levels=(1,), heads=2, text_dim=16, timesteps=100, sample_steps=4, batch=4,
                warmup=5, max_steps=4, log_every=1000, eval_every=1000, ckpt_every=2, threads=1)
    return sfvgen.Config(**{**base, **overrides})


def cli(cfg):
    """The config as train.py flags."""
    out = []
    for k, v in asdict(cfg).items():
        v = ",".join(map(str, v)) if isinstance(v, tuple) else ("on" if v is True else "off" if v is False else v)
        if v != "":
            out += ["--" + k.replace("_", "-"), str(v)]
    return out


def loop_episodes(cfg, seed=0):
    """One outer iteration's episodes of the slow-fast loop (train.sources), in the worlds 0..49."""
    import numpy as np

    import train
    return train.sources(cfg)[2](np.random.default_rng(seed), range(0, 50))
