# %% [markdown]
# # hw3, you should see: a chunk sampled by your sampler
# One chunk after the start frame in 4 held-out worlds, each with a random action, sampled by your `sample` from the
# checkpoint (DDIM, cfg.sample_steps steps), against the simulator's truth. Rows: truth, sample, per world.
# The baseline "repeat the start frame" shows what a sampler that ignores the action would get.

# %%
import os
import sys

here = os.path.abspath(os.path.dirname(__file__) if "__file__" in globals() else os.getcwd())
while not os.path.isfile(os.path.join(here, "sfvgen.py")) and os.path.dirname(here) != here:
    here = os.path.dirname(here)
sys.path.insert(0, here)
from exercises.runs.common import load, report, save, start, strip  # noqa: E402

args, sfvgen = start(3, "hw3: one sampled chunk in four held-out worlds")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402
import metrics  # noqa: E402

model, cfg, diffusion = load(args, sfvgen)
ae = model.autoencoder
rng = np.random.default_rng(args.seed)
rows, got, repeat = [], [], []
for w in range(4):
    world = cfg.test_seeds[0] + 4 * args.seed + w
    action = str(rng.choice(["go left", "go right", "go up", "go down"]))
    truth, _ = data.render_episode(world, [action], cfg.world())                  # (1 + K, H, W, 3)
    x0 = sfvgen.to_model(truth[None, :1], "cpu", ae)
    chunk = diffusion.sample(model, x0, sfvgen.action_tokens([action], "cpu"), cfg.chunk,
                             generator=torch.Generator().manual_seed(args.seed))
    frames = sfvgen.to_frames(chunk, ae)[0]
    got.append(metrics.psnr(frames, truth[1:]))
    repeat.append(metrics.psnr(np.repeat(truth[:1], cfg.chunk, 0), truth[1:]))
    print(f"world {world}, {action}: PSNR {got[-1]:.2f} dB (repeating the start frame: {repeat[-1]:.2f} dB)")
    rows += [truth, np.concatenate([truth[:1], frames])]
save(args, strip(rows))
report(args, {"chunk_psnr": (float(np.mean(got)), " dB", 2),
              "over_repeat": (float(np.mean(got) - np.mean(repeat)), " dB", 2)})
