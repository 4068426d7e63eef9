"""hw5 (visible): local_window and generate_long keep their interface promises."""
import torch

from .common import micro_cfg, micro_model, random_frames, wake, world_episode

ACTIONS = ["go right", "go up", "go left"]


def check_local_window_returns_an_empty_context_a_window_and_tokens(sf):
    """local_window(history, tokens) -> (context (1, 0, C, H, W), window (1, n, C, H, W), tokens (1, L))."""
    cfg = micro_cfg(sf)
    history = [random_frames(cfg, 1, 0)] + [random_frames(cfg, 2, s) for s in (1, 2)]
    ctx, window, tokens = sf.local_window(history, sf.action_tokens(["go up"], "cpu"))
    assert ctx.shape == (1, 0, 3, cfg.size, cfg.size), f"context shape {tuple(ctx.shape)}, expected no frames"
    assert window.dim() == 5 and window.shape[0] == 1 and window.shape[2:] == (3, cfg.size, cfg.size), \
        f"window shape {tuple(window.shape)}"
    assert tokens.shape == (1, sf.data.MAX_WORDS), f"tokens shape {tuple(tokens.shape)}"


def check_generate_long_returns_frames_losses_and_a_memory(sf):
    """frames (1 + I K, H, W, 3) uint8 (the start frame first), one finite fast loss per chunk, a Memory after I chunks;
    a continuation returns the I K new frames only."""
    cfg = micro_cfg(sf, fast_lr=1e-2, sample_steps=2)
    model, d = wake(micro_model(sf, cfg, lora=True)), sf.Diffusion(cfg)
    first = world_episode(sf, cfg, ACTIONS[:1], seed=3)[0]
    res = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=0)
    n = 1 + len(ACTIONS) * cfg.chunk
    assert set(res) >= {"frames", "fast_losses", "memory"}, f"keys {sorted(res)}"
    f = res["frames"]
    assert f.shape == (n, cfg.size, cfg.size, 3) and f.dtype == "uint8", f"frames {f.shape} {f.dtype}, expected ({n}, H, W, 3) uint8"
    assert (f[0] == first).all(), "a pixel model's first frame is the start frame"
    assert len(res["fast_losses"]) == len(ACTIONS) and all(torch.isfinite(torch.tensor(res["fast_losses"]))), \
        f"fast losses {res['fast_losses']}: one finite loss per chunk"
    assert isinstance(res["memory"], sf.Memory) and res["memory"].chunk == len(ACTIONS), "memory: a Memory after the chunks"
    more = sf.generate_long(model, d, cfg, None, ACTIONS[:1], fast_learning=True, memory=res["memory"])
    assert more["frames"].shape == (cfg.chunk, cfg.size, cfg.size, 3), f"a continuation's frames {more['frames'].shape}"


def check_the_same_seed_gives_the_same_video(sf):
    """Two calls with the same seed give the same frames and fast losses; another seed another video."""
    cfg = micro_cfg(sf, fast_lr=1e-2, sample_steps=2)
    model, d = wake(micro_model(sf, cfg, lora=True)), sf.Diffusion(cfg)
    first = world_episode(sf, cfg, ACTIONS[:1], seed=3)[0]
    a, b, c = (sf.generate_long(model, d, cfg, first, ACTIONS[:2], fast_learning=True, seed=s) for s in (0, 0, 1))
    assert (a["frames"] == b["frames"]).all() and a["fast_losses"] == b["fast_losses"], "the same seed gave another video"
    assert (a["frames"] != c["frames"]).any(), "another seed gave the same video"


CHECKS = [check_local_window_returns_an_empty_context_a_window_and_tokens,
          check_generate_long_returns_frames_losses_and_a_memory, check_the_same_seed_gives_the_same_video]
