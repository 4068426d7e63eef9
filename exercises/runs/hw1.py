# %% [markdown]
# # hw1, you should see: one denoising step of the trained model
# Noise held-out target chunks to t = T/4, T/2 and 3T/4 with your `q_sample`, let the checkpoint predict, and turn its
# prediction back into an x_0 estimate with your `x0_eps`. If the forward process or its inverse is off, the estimate is
# garbage even though the network is fine. Rows: t = T/4, T/2, 3T/4; columns: x_t (decoded) | x_0 estimate | truth.

# %%
import os
import sys

here = os.path.abspath(os.path.dirname(__file__) if "__file__" in globals() else os.getcwd())
while not os.path.isfile(os.path.join(here, "sfvgen.py")) and os.path.dirname(here) != here:
    here = os.path.dirname(here)
sys.path.insert(0, here)
from exercises.runs.common import load, report, save, start, strip  # noqa: E402

args, sfvgen = start(1, "hw1: one denoising step of the checkpoint at three noise levels")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402
import metrics  # noqa: E402

model, cfg, diffusion = load(args, sfvgen)
ae = model.autoencoder  # None for a pixel model: then the "latents" are the frames
rng = np.random.default_rng(args.seed)
ctx, tok, tgt = data.sample_batch(rng, cfg.test_seeds, 8, cfg.world(), n_ctx=cfg.chunk)  # uint8 clips
ctx_m, tgt_m = sfvgen.to_model(ctx, "cpu", ae), sfvgen.to_model(tgt, "cpu", ae)         # the model's space
tokens = torch.as_tensor(tok)
gen = torch.Generator().manual_seed(args.seed)
eps = torch.randn(tgt_m.shape, generator=gen)

# %%
rows, psnr = [], {}
T, f_p = cfg.timesteps, ctx_m.shape[1]
for frac in (0.25, 0.5, 0.75):
    t = torch.full((8,), int(frac * T))
    x_t = diffusion.q_sample(tgt_m, t, eps)
    t_frames = torch.cat([torch.zeros(8, f_p, dtype=torch.long), t[:, None].expand(8, tgt_m.shape[1])], 1)
    with torch.no_grad():
        pred = model(torch.cat([ctx_m, x_t], 1), t_frames, tokens, f_p)[:, f_p:]
    x0_hat, _ = diffusion.x0_eps(x_t, t, pred)
    est = sfvgen.to_frames(x0_hat, ae)
    psnr[frac] = metrics.psnr(est, tgt)
    print(f"t = {int(frac * T)}: PSNR of the one-step x_0 estimate {psnr[frac]:.2f} dB")
    rows.append(np.concatenate([sfvgen.to_frames(x_t, ae)[0], est[0], tgt[0]]))
save(args, strip(rows))
report(args, {"psnr_x0_at_half_T": (psnr[0.5], " dB", 2)})
