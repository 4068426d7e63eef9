"""hw6 (visible): slow_fast_iteration returns the loss and Ds as promised and leaves the model as promised."""
import numpy as np
import torch

from .common import micro_cfg, micro_model, same_state, wake


def setup(sf, episodes=2):
    cfg = micro_cfg(sf, fast_steps=1, fast_lr=1e-2)
    model, d = wake(micro_model(sf, cfg, lora=True)), sf.Diffusion(cfg)
    eps = sf.data.sample_episodes(np.random.default_rng(0), list(range(50)), episodes, cfg.world(),
                                  ("out-and-back",), out_chunks=1)
    return cfg, model, d, eps


def check_it_returns_the_loss_and_one_entry_per_chunk(sf):
    """(L, Ds): L a finite float; Ds one (X_i, X_(i+1), tokens, Theta_i) per chunk of every episode, Theta_i a state
    dict with the model's LoRA keys."""
    cfg, model, d, episodes = setup(sf)
    L, Ds = sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    assert isinstance(L, float) and np.isfinite(L), f"L should be a finite float, got {L!r}"
    n = sum(len(a) for _, a in episodes)
    assert isinstance(Ds, list) and len(Ds) == n, f"Ds: {len(Ds)} entries for {n} chunks"
    keys = set(sf.lora_state(model))
    for i, entry in enumerate(Ds):
        assert len(entry) == 4, f"Ds[{i}]: expected (X_i, X_(i+1), tokens, Theta_i)"
        assert isinstance(entry[3], dict) and set(entry[3]) == keys, f"Ds[{i}][3] is not a LoRA state"


def check_phi_is_not_stepped_and_theta_is_fresh_afterwards(sf):
    """The call leaves Phi's values alone (the caller steps it) and the fresh LoRA in the model."""
    cfg, model, d, episodes = setup(sf, 1)
    slow, fresh = {k: v.clone() for k, v in sf.slow_state_dict(model).items()}, sf.lora_state(model)
    sf.slow_fast_iteration(model, d, cfg, episodes, torch.Generator().manual_seed(0))
    assert same_state(sf.slow_state_dict(model), slow), "Phi changed: the outer step leaves gradients, the caller steps"
    assert same_state(sf.lora_state(model), fresh), "the model should hold the fresh LoRA after the call"


CHECKS = [check_it_returns_the_loss_and_one_entry_per_chunk, check_phi_is_not_stepped_and_theta_is_fresh_afterwards]
