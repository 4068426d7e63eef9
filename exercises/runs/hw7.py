# %% [markdown]
# # hw7, you should see: what the action and the guidance scale do
# From one held-out start frame, one chunk per action, sampled with your blocks and your `guided` at guidance 0 (the
# unconditional model: it must guess the move), 1 (the plain conditional model) and 3, all from the same noise.
# Rows: the four actions; columns: truth | g = 0 | g = 1 | g = 3 (each the chunk's K frames).

# %%
import os
import sys

here = os.path.abspath(os.path.dirname(__file__) if "__file__" in globals() else os.getcwd())
while not os.path.isfile(os.path.join(here, "sfvgen.py")) and os.path.dirname(here) != here:
    here = os.path.dirname(here)
sys.path.insert(0, here)
from exercises.runs.common import load, report, save, start, strip  # noqa: E402

args, sfvgen = start(7, "hw7: one chunk per action at guidance 0, 1 and 3")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402
import metrics  # noqa: E402

model, cfg, diffusion = load(args, sfvgen)
ae = model.autoencoder
world = cfg.test_seeds[0] + 10 + args.seed
scores = {g: [] for g in (0.0, 1.0, 3.0)}
rows = []
for action in ("go left", "go right", "go up", "go down"):
    truth, _ = data.render_episode(world, [action], cfg.world())
    x0 = sfvgen.to_model(truth[None, :1], "cpu", ae)
    row = [truth[1:]]
    for g in scores:
        chunk = diffusion.sample(model, x0, sfvgen.action_tokens([action], "cpu"), cfg.chunk,
                                 generator=torch.Generator().manual_seed(args.seed), guidance=g)
        frames = sfvgen.to_frames(chunk, ae)[0]
        scores[g].append(metrics.psnr(frames, truth[1:]))
        row.append(frames)
    rows.append(np.concatenate(row))
    print(f"{action}: PSNR at guidance 0 / 1 / 3: " + " / ".join(f"{scores[g][-1]:.2f}" for g in scores) + " dB")
save(args, strip(rows, scale=2))
mean = {g: float(np.mean(v)) for g, v in scores.items()}
report(args, {"psnr_guidance_1": (mean[1.0], " dB", 2), "action_gain": (mean[1.0] - mean[0.0], " dB", 2)})
