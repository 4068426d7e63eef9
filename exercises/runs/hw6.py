# %% [markdown]
# # hw6, you should see: one outer iteration of the slow-fast loop on the trained model
# Your `slow_fast_iteration` on two held-out out-and-back episodes (4 chunks each): L, the size of the snapshots
# Theta_i (they grow along an episode and start at zero in each), and the same L with every snapshot replaced by the
# fresh LoRA (what the episodes' memories are worth to the slow loss). Picture, per entry of the first episode:
# X_i's last frame | X_(i+1), and a bar as long as |Theta_i|.

# %%
import os
import sys

here = os.path.abspath(os.path.dirname(__file__) if "__file__" in globals() else os.getcwd())
while not os.path.isfile(os.path.join(here, "sfvgen.py")) and os.path.dirname(here) != here:
    here = os.path.dirname(here)
sys.path.insert(0, here)
from exercises.runs.common import load, report, save, start, strip  # noqa: E402

args, sfvgen = start(6, "hw6: one outer iteration of Algorithm 1b")
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402

model, cfg, diffusion = load(args, sfvgen)
ae = model.autoencoder
episodes = data.sample_episodes(np.random.default_rng(args.seed), list(range(*cfg.test_seeds)), 2, cfg.world(),
                                ("out-and-back",), out_chunks=2)

# %%
def iteration(fast_lr):
    m = sfvgen.with_lora(model, cfg)
    L, Ds = sfvgen.slow_fast_iteration(m, diffusion, replace(cfg, fast_lr=fast_lr), episodes,
                                       torch.Generator().manual_seed(args.seed))
    grad = torch.cat([p.grad.flatten() for p in sfvgen.slow_parameters(m) if p.grad is not None]).norm().item()
    return L, Ds, grad


L, Ds, grad = iteration(cfg.fast_lr)
L0, _, _ = iteration(0.0)  # the same draws, every snapshot the fresh LoRA
size = [torch.cat([v.flatten() for k, v in th.items() if "lora_B" in k]).norm().item() for _, _, _, th in Ds]
print(f"L = {L:.4f} with the episodes' memories, {L0:.4f} with fresh LoRAs; |grad Phi| = {grad:.3f}; "
      f"|B| of Theta_i: {[round(s, 3) for s in size]}")

# %%
rows = []
n0 = len(episodes[0][1])
for i in range(n0):
    x_i, x_next = sfvgen.to_frames(Ds[i][0], ae)[0], sfvgen.to_frames(Ds[i][1], ae)[0]
    bar = np.full((1,) + x_i.shape[1:], 255, np.uint8)
    bar[0, 12:20, :max(1, int(x_i.shape[2] * size[i] / max(max(size), 1e-12)))] = (40, 90, 200)
    rows.append(np.concatenate([x_i[-1:], x_next, bar]))
save(args, strip(rows))
report(args, {"loss": (L, "", 4), "memory_minus_fresh": (L - L0, "", 4)})
