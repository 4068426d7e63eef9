# %% [markdown]
# # hw4, you should see: a LoRA on the trained model learns one window
# Your `LoRA` wraps the checkpoint's temporal layers (cfg.lora_targets); Adam trains only A and B on one held-out window
# of two chunks (the fast loss of hw5, 64 steps). The fast loss on fixed draws falls, the slow weights do not move, and
# merge / unmerge give W back bit for bit. Rows: truth | the one-step x_0 estimate at t = T/2 before | after.

# %%
import os
import sys

here = os.path.abspath(os.path.dirname(__file__) if "__file__" in globals() else os.getcwd())
while not os.path.isfile(os.path.join(here, "sfvgen.py")) and os.path.dirname(here) != here:
    here = os.path.dirname(here)
sys.path.insert(0, here)
from exercises.runs.common import load, report, save, start, strip  # noqa: E402

args, sfvgen = start(4, "hw4: a LoRA on the checkpoint learns one window")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import data  # noqa: E402

model, cfg, diffusion = load(args, sfvgen)
ae = model.autoencoder
rng = np.random.default_rng(args.seed)
actions = [str(a) for a in rng.choice(["go left", "go right", "go up", "go down"], 2)]
truth, _ = data.render_episode(cfg.test_seeds[0] + args.seed, actions, cfg.world())
window = sfvgen.to_model(truth[None, 1:], "cpu", ae)                          # [X_1 ; X_2]: (1, 2K, C, h, w)
null = sfvgen.null_tokens(1, "cpu")
fast = sfvgen.with_lora(model, cfg)                                           # your LoRA, on the chosen layers
phi = {k: v.clone() for k, v in sfvgen.slow_state_dict(fast).items()}
n = 16                                                                        # fixed draws to measure the loss on
probe = [diffusion.draw(window, 0.0, torch.Generator().manual_seed(100 + i)) for i in range(n)]


def fast_loss():
    with torch.no_grad():
        return float(np.mean([diffusion.loss(fast, window[:, :0], window, null, draws=d).item() for d in probe]))


def estimate():
    t = torch.tensor([cfg.timesteps // 2])
    eps = torch.randn(window.shape, generator=torch.Generator().manual_seed(args.seed))
    x_t = diffusion.q_sample(window, t, eps)
    with torch.no_grad():
        pred = fast(x_t, t[:, None].expand(1, window.shape[1]), null, 0)
    return sfvgen.to_frames(diffusion.x0_eps(x_t, t, pred)[0], ae)[0]


# %%
before, picture_before = fast_loss(), estimate()
opt = torch.optim.Adam(sfvgen.lora_parameters(fast), lr=cfg.fast_lr)
sfvgen.fast_update(fast, diffusion, opt, window[:, :0], window, null, 64, sfvgen.fast_generator(args.seed))
after, picture_after = fast_loss(), estimate()
W = [m.base.weight.detach().clone() for m in sfvgen.lora_modules(fast)]
sfvgen.merge_lora(fast)
sfvgen.unmerge_lora(fast)
exact = all(torch.equal(w, m.base.weight) for w, m in zip(W, sfvgen.lora_modules(fast)))
moved = sum(not torch.equal(v, phi[k]) for k, v in sfvgen.slow_state_dict(fast).items())
print(f"{len(sfvgen.lora_modules(fast))} LoRA layers; fast loss {before:.4f} -> {after:.4f}; slow tensors moved: {moved}; "
      f"W after merge + unmerge {'bit for bit' if exact else 'NOT'} the same")
save(args, strip([truth[1:], picture_before, picture_after]))
report(args, {"fast_loss_after_over_before": (after / before, " x", 3)})
