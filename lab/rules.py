"""The fast rules the paper ablates, and one of ours, as window functions for Algorithm 1a's update.

The core learns the paper's local rule (`sfvgen.local_window`). A window function takes the history of
chunks [X_0 (the start frame), X_1, .., X_i] (each (1, N_i, 3, H, W)) and the newest chunk's action tokens
(1, L), and returns (context, target, tokens) for `sfvgen.fast_update`. Pass one as `window=` to
`sfvgen.generate_long`, `sfvgen.fast_learn_chunk`, `sfvgen.slow_fast_iteration` or `train.main`:

    local     [X_{i-1} ; X_i] as targets, no context, null action       the paper's rule (sfvgen.local_window)
    original  context X_{i-1} (clean), target X_i, with the action       text Temp-LoRA (Wang et al. 2024), the paper's ablation
    global    [X_{j-1} ; X_j], j drawn from the whole history            the paper's ablation (Table 3)
    reversed  a rule's window and the same window played backwards      ours, not the paper's (--fast-reverse)

And the noise levels the fast loss draws (ours, --fast-t-min): `FastNoise` is a Diffusion whose loss draws t in
[t_min T, T] only. Generation samples with `Diffusion.sample`, which never draws, so handing generate_long a
FastNoise changes fast learning alone.

python -m lab.eval --ablate measures them (the paper's Table 3 rows on the fast rule).
"""
import numpy as np
import torch

import sfvgen

RULES = ("local", "original", "global")


def original_window(history, tokens):
    """Text Temp-LoRA's rule: the newest chunk X_i given the clean X_{i-1}, conditioned on its action
    (the loop passes no action: the null action then)."""
    x0 = history[-1]
    tokens = sfvgen.null_tokens(1, x0.device) if tokens is None else tokens
    return history[-2], x0, tokens


def global_window(rng):
    """The global rule: [X_{j-1} ; X_j] for j drawn uniformly from 1..i with `rng` (np.random.Generator), a
    window anywhere in the history, all of it a target, null action."""
    def window(history, tokens):
        j = int(rng.integers(1, len(history)))
        return sfvgen.local_window(history[:j + 1], tokens)
    return window


def reversed_window(base=sfvgen.local_window):
    """Ours: `base`'s window learned twice in one batch, as played and played backwards (the view of the same
    places when the camera walks back). For the rules without context (local, global)."""
    def window(history, tokens):
        ctx, x0, _ = base(history, tokens)
        if ctx.shape[1]:
            raise ValueError("the reversed window needs a rule without context (local or global)")
        both = torch.cat([x0, x0.flip(1)])  # (2, N, 3, H, W)
        return both[:, :0], both, sfvgen.null_tokens(2, x0.device)
    return window


def make_window(rule="local", reverse=False, rng=None):
    """The window function of a rule name (RULES), reversed when asked; `rng` (np.random.Generator) draws the
    global rule's windows, np.random.default_rng(0) when not given."""
    if rule not in RULES:
        raise ValueError(f"unknown fast rule {rule!r}; rules: {list(RULES)}")
    if reverse and rule == "original":
        raise ValueError("--fast-reverse plays a window without context backwards: use --fast-rule local or global")
    window = {"local": sfvgen.local_window, "original": original_window}.get(rule)
    if rule == "global":
        window = global_window(np.random.default_rng(0) if rng is None else rng)
    return reversed_window(window) if reverse else window


class FastNoise(sfvgen.Diffusion):
    """sfvgen.Diffusion whose loss draws the noise level t uniformly in [max(1, t_min T), T] (t_min a fraction):
    the fast loss then learns only the noise levels where a frame's content is decided (ours)."""

    def __init__(self, cfg, device="cpu", t_min=0.0):
        super().__init__(cfg, device)
        self.t_lo = max(1, int(round(t_min * self.T)))

    def draw(self, x0, p_uncond=0.0, generator=None):
        t, eps, drop = super().draw(x0, p_uncond, generator)
        return self.t_lo + (t - 1) * (self.T - self.t_lo + 1) // self.T, eps, drop  # 1..T onto t_lo..T
