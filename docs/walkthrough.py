# %% [markdown]
# # SlowFast-VGen, walked through
#
# Six short steps through the method on the demo world, each writing a PNG you can look at:
# the world, one training step of the masked loss, sampling a chunk, one fast update, memory on and off over an
# out-and-back, and the wrong-memory control.
#
# Run it as a script: `python docs/walkthrough.py [--quick] [--out out/walkthrough]` (quick: fewer chunks and
# denoising steps, under a minute on a CPU; `SFVGEN_QUICK=1` does the same), or as a notebook: `make notebooks` writes
# out/notebooks/walkthrough.ipynb from this file, and VS Code and Jupyter (with jupytext) read the `# %%` cells as they
# are. Everything runs on a CPU on one thread.

# %%
import argparse
import os
import sys
import time
from dataclasses import replace

import imageio.v3 as iio
import numpy as np
import torch

# the project folder: above this file, or (in a notebook) the current folder or the first one above it with sfvgen.py
ROOT = os.path.abspath(os.path.dirname(__file__) if "__file__" in globals() else os.getcwd())
while not os.path.isfile(os.path.join(ROOT, "sfvgen.py")) and os.path.dirname(ROOT) != ROOT:
    ROOT = os.path.dirname(ROOT)
sys.path.insert(0, ROOT)
import data  # noqa: E402
import metrics  # noqa: E402
import sfvgen  # noqa: E402
from exercises.runs.common import DEFAULT_CHECKPOINT, strip  # noqa: E402  (the classroom's checkpoint; rows of frames as one picture)

p = argparse.ArgumentParser(description="The method, step by step, with a PNG per step.")
p.add_argument("--quick", action="store_true", help="fewer chunks and denoising steps (CI)")
p.add_argument("--out", default=os.environ.get("SFVGEN_WALKTHROUGH_OUT", os.path.join(ROOT, "out", "walkthrough")),
               help="folder of the PNGs (or SFVGEN_WALKTHROUGH_OUT)")
p.add_argument("--ckpt", default=os.path.join(ROOT, DEFAULT_CHECKPOINT), help="the trained slow weights (pixel or latent)")
args, _ = p.parse_known_args()  # a notebook kernel passes its own arguments
QUICK = args.quick or os.environ.get("SFVGEN_QUICK", "") not in ("", "0")
os.makedirs(args.out, exist_ok=True)
torch.set_num_threads(1)
t_start = time.time()


def save(name, img):
    path = os.path.join(args.out, name)
    iio.imwrite(path, img)
    print(f"wrote {path} {img.shape[1]}x{img.shape[0]}")


# %% [markdown]
# ## 1. The world
# A procedural 2D world on a torus: text actions move a 32x32 camera view a few pixels per frame, and the simulator
# renders the exact ground truth of any action sequence. An out-and-back episode walks away and retraces its path,
# so the second half revisits what the first half saw: that is where episodic memory should pay.

# %%
model, cfg, _ = sfvgen.load_model(args.ckpt)
ae = model.autoencoder  # a latent model's frozen frame autoencoder (None for a pixel model): frames <-> its latents
if QUICK:
    cfg = replace(cfg, sample_steps=8)
OUT = 1 if QUICK else 3                              # chunks of the outward leg
actions = ["go right"] * OUT + ["go left"] * OUT     # an out-and-back
world = cfg.test_seeds[0] + 1
truth, positions = data.render_episode(world, actions, cfg.world())   # (1 + I K, H, W, 3) uint8
print(f"{len(actions)} actions, {truth.shape[0]} frames of {truth.shape[1]}x{truth.shape[2]}; "
      f"camera path {positions[::cfg.chunk].tolist()}")
save("1_world.png", strip([truth]))

# %% [markdown]
# ## 2. One training step of the masked loss (slow learning)
# A clip is f_p clean context frames followed by f_g noisy target frames. The context goes in at noise level t = 0,
# the targets at a random t, and the loss is taken on the targets only:
# `L = E || x_0 - net([x_ctx ; x_t], t, a) ||^2` (we predict x_0; the paper predicts eps).
# A micro model learns from one batch; the image shows context | noisy targets | the model's x_0 | the truth.

# %%
micro = sfvgen.Config(size=16, canvas=64, speed=2, chunk=2, channels=8, mults=(1, 2), attn_levels=(1,),
                      temporal_attn_levels=(1,), heads=2, text_dim=16, timesteps=100, sample_steps=4)
torch.manual_seed(0)
net = sfvgen.VideoUNet(micro)
diff_micro = sfvgen.Diffusion(micro)
ctx, tok, tgt = data.sample_batch(np.random.default_rng(0), micro.train_seeds, 4, micro.world(), n_ctx=2)
ctx, tgt, tok = sfvgen.to_model(ctx), sfvgen.to_model(tgt), torch.as_tensor(tok)   # (B, f_p, 3, H, W), (B, f_g, ...)
draws = diff_micro.draw(tgt, p_uncond=0.0, generator=torch.Generator().manual_seed(1))  # t, eps, drop: fixed for both losses
opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
losses = []
for step in range(2 if QUICK else 30):
    loss = diff_micro.loss(net, ctx, tgt, tok, draws=draws)
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
print(f"masked loss on one batch: {losses[0]:.4f} -> {losses[-1]:.4f} after {len(losses)} steps")
t, eps, _ = draws
x_t = diff_micro.q_sample(tgt, t, eps)
with torch.no_grad():
    tf = torch.cat([torch.zeros(4, 2, dtype=torch.long), t[:, None].expand(4, 2)], 1)
    pred = net(torch.cat([ctx, x_t], 1), tf, tok, 2)[:, 2:]
clips = [sfvgen.to_frames(z) for z in (ctx, x_t, pred, tgt)]  # each (B, 2, H, W, 3)
save("2_train_step.png", strip([np.concatenate([c[b] for c in clips]) for b in range(4)], scale=6))  # one row per clip

# %% [markdown]
# ## 3. Sampling a chunk (the slow weights alone)
# DDIM from pure noise to K frames after the context frame; at every denoising step the clean context is put back
# in front of the noisy frames. Top: ground truth; bottom: the start frame and the sampled chunk.

# %%
diffusion = sfvgen.Diffusion(cfg)
x0 = sfvgen.to_model(truth[None, :1], "cpu", ae)                          # (1, 1, C, H, W): X_0
X1 = diffusion.sample(model, x0, sfvgen.action_tokens([actions[0]], "cpu"), cfg.chunk,
                      generator=torch.Generator().manual_seed(0))        # (1, K, 3, H, W)
chunk = sfvgen.to_frames(torch.cat([x0, X1], 1), ae)[0]
print(f"sampled chunk 1 ({cfg.sample_steps} steps): PSNR {metrics.psnr(chunk[1:], truth[1:1 + cfg.chunk]):.2f} dB against the truth")
save("3_sample.png", strip([truth[:1 + cfg.chunk], chunk]))

# %% [markdown]
# ## 4. One fast update: which weights move
# After a chunk, TEMP-LoRA learns the window [X_0 ; X_1] with the slow weights Phi frozen. The LoRA's B starts at
# zero, so at the first Adam step A gets no gradient (dL/dA holds B): only B moves; from the second step A moves
# too. The image: one bar per adapted layer, its length |(alpha / r) B A| / |W| after two steps (the longest bar
# is the layer that moved most).

# %%
fast = sfvgen.with_lora(model, cfg)
phi0 = {k: v.clone() for k, v in sfvgen.slow_state_dict(fast).items()}
theta0 = sfvgen.lora_state(fast)
fast_opt = torch.optim.Adam(sfvgen.lora_parameters(fast), lr=cfg.fast_lr)
window_ctx, window, null = sfvgen.local_window([x0, sfvgen.to_model(truth[None, 1:1 + cfg.chunk], "cpu", ae)], None)
for step in (1, 2):
    sfvgen.fast_update(fast, diffusion, fast_opt, window_ctx, window, null, 1, torch.Generator().manual_seed(step))
    moved = {k for k, v in sfvgen.lora_state(fast).items() if not torch.equal(v, theta0[k])}
    print(f"after step {step}: {sum('lora_B' in k for k in moved)} B and {sum('lora_A' in k for k in moved)} A of "
          f"{len(theta0) // 2} LoRA layers moved; slow weights moved: "
          f"{sum(not torch.equal(v, phi0[k]) for k, v in sfvgen.slow_state_dict(fast).items())}")
rel = np.array([(m.delta_weight().norm() / m.base.weight.norm()).item() for m in sfvgen.lora_modules(fast)])
print(f"relative change |delta W| / |W| per adapted layer: {rel.min():.2e} .. {rel.max():.2e}")
bars = np.full((len(rel), 200, 3), 255, np.uint8)
for i, r in enumerate(rel):
    bars[i, :max(1, int(200 * r / rel.max()))] = (40, 90, 200)
save("4_fast_update.png", bars.repeat(6, 0).repeat(2, 1))

# %% [markdown]
# ## 5. Memory on and off over an out-and-back (Algorithm 1a)
# The same episode generated chunk by chunk twice from the same noise: without fast learning, and with TEMP-LoRA
# learning every generated chunk. On the way back the view revisits places; the fast weights have seen them.
# Rows: without memory | with memory | ground truth.

# %%
off = sfvgen.generate_long(model, diffusion, cfg, truth[0], actions, fast_learning=False, seed=0)["frames"]
on = sfvgen.generate_long(fast, diffusion, cfg, truth[0], actions, fast_learning=True, seed=0)["frames"]
back = slice(1 + OUT * cfg.chunk, None)  # the return leg
print(f"return-leg PSNR: without memory {metrics.psnr(off[back], truth[back]):.2f} dB, "
      f"with memory {metrics.psnr(on[back], truth[back]):.2f} dB")
save("5_memory.png", strip([off, on, truth]))

# %% [markdown]
# ## 6. The wrong-memory control
# Is the gain memory of this place, or just a LoRA that steadies the sampler? Learn a LoRA on another world's
# episode, freeze it, and plug it in from the first frame of this one. A real memory effect is the gain of row 2
# above this control. In one world either can win: one episode proves nothing, which is why docs/results.md pairs
# 20 worlds and gives an interval (exercises/stretch.md asks for it).
# Rows: with memory | with another world's memory | ground truth.

# %%
other = data.render_episode(world + 1, actions, cfg.world())[0]
sfvgen.generate_long(fast, diffusion, cfg, other[0], actions, fast_learning=True, seed=0)
wrong_lora = sfvgen.lora_state(fast)  # the other world's memory
start = sfvgen.Memory.start(truth[0], seed=0, autoencoder=ae, lora=wrong_lora)  # this world's start frame, the other world's LoRA
wrong = sfvgen.generate_long(fast, diffusion, cfg, None, actions, fast_learning=False, memory=start)["frames"]
wrong = np.concatenate([truth[:1], wrong])  # a continuation returns only the new frames
print(f"return-leg PSNR with the wrong memory: {metrics.psnr(wrong[back], truth[back]):.2f} dB")
save("6_wrong_memory.png", strip([on, wrong, truth]))
print(f"done in {time.time() - t_start:.0f} s; the PNGs are in {args.out}")
