# %% [markdown]
# # hw2, you should see: the masked loss of the trained model
# Your `loss` on 16 held-out clips (the previous chunk as context, the next chunk as targets), with fixed draws: with
# the right context, with another clip's context, and with the action dropped. A model that uses its context and its
# action has a clearly lower loss with both. Columns of the picture: context | noisy targets | x_0 predicted | truth.

# %%
import os
import sys

here = os.path.abspath(os.path.dirname(__file__) if "__file__" in globals() else os.getcwd())
while not os.path.isfile(os.path.join(here, "sfvgen.py")) and os.path.dirname(here) != here:
    here = os.path.dirname(here)
sys.path.insert(0, here)
from exercises.runs.common import load, report, save, start, strip  # noqa: E402

args, sfvgen = start(2, "hw2: the checkpoint's masked loss with the right and a wrong context")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402

model, cfg, diffusion = load(args, sfvgen)
ae = model.autoencoder
ctx, tok, tgt = data.sample_batch(np.random.default_rng(args.seed), cfg.test_seeds, 16, cfg.world(), n_ctx=cfg.chunk)
ctx_m, tgt_m, tokens = sfvgen.to_model(ctx, "cpu", ae), sfvgen.to_model(tgt, "cpu", ae), torch.as_tensor(tok)
t, eps, _ = diffusion.draw(tgt_m, 0.0, torch.Generator().manual_seed(args.seed))

# %%
with torch.no_grad():
    right = diffusion.loss(model, ctx_m, tgt_m, tokens, draws=(t, eps, None)).item()
    wrong = diffusion.loss(model, ctx_m.roll(1, 0), tgt_m, tokens, draws=(t, eps, None)).item()
    no_action = diffusion.loss(model, ctx_m, tgt_m, tokens, draws=(t, eps, torch.ones(16, dtype=torch.bool))).item()
print(f"L_slow: right context {right:.4f}, another clip's context {wrong:.4f}, action dropped {no_action:.4f}")

# %%
x_t = diffusion.q_sample(tgt_m, t, eps)
f_p = ctx_m.shape[1]
t_frames = torch.cat([torch.zeros(16, f_p, dtype=torch.long), t[:, None].expand(16, tgt_m.shape[1])], 1)
with torch.no_grad():
    pred = model(torch.cat([ctx_m, x_t], 1), t_frames, tokens, f_p)[:, f_p:]
x0_hat = pred if cfg.prediction == "x0" else diffusion.x0_eps(x_t, t, pred)[0]
rows = [np.concatenate([ctx[b], sfvgen.to_frames(x_t[b:b + 1], ae)[0], sfvgen.to_frames(x0_hat[b:b + 1], ae)[0], tgt[b]])
        for b in range(4)]
save(args, strip(rows))
report(args, {"loss": (right, "", 4), "wrong_context_over_right": (wrong / right, " x", 2)})
