"""hw5 (hidden): Algorithm 1a, fast learning in generation (local_window, generate_long)."""
import copy

import torch

from ..visible.common import close, latent_cfg, micro_cfg, random_frames, same_state, world_episode
from .models import context_net

ACTIONS = ["go right", "go up", "go left"]


def setup(sf, cfg=None, **over):
    cfg = cfg or micro_cfg(sf, **{"fast_lr": 1e-2, "sample_steps": 2, **over})
    model = context_net(sf, cfg)
    first = world_episode(sf, cfg, ACTIONS[:1], seed=3)[0]  # (H, W, 3) uint8
    return cfg, model, sf.Diffusion(cfg), first


def sample_spy(sf, d):
    """Replaces d.sample by a wrapper that records (ctx, tokens, n_frames, steps, guidance, eta, output) per call."""
    calls, sample = [], d.sample

    def spy(model, ctx, tokens, n_frames, generator=None, steps=None, guidance=None, eta=None):
        out = sample(model, ctx, tokens, n_frames, generator=generator, steps=steps, guidance=guidance, eta=eta)
        calls.append(dict(ctx=ctx.detach().cpu().clone(), tokens=tokens.cpu().clone(), n=n_frames, steps=steps,
                          guidance=guidance, eta=eta, out=out.detach().cpu().clone()))
        return out

    d.sample = spy
    return calls


def frames_diff(a, b):
    assert a.shape == b.shape, f"frames of shape {a.shape}, expected {b.shape}"
    return int(abs(a.astype(int) - b.astype(int)).max())


def check_local_window_is_the_last_two_chunks_with_no_context_and_the_null_action(sf):
    """local_window(history, tokens) = (an empty context, [X_(i-1) ; X_i], the null tokens), for any history length:
    the local rule learns the last two chunks, all of them targets, without the action."""
    cfg = micro_cfg(sf)
    history = [random_frames(cfg, 1, seed=0)] + [random_frames(cfg, 2, seed=s) for s in (1, 2, 3)]
    for n in (2, 4):
        ctx, target, tokens = sf.local_window(history[:n], sf.action_tokens(["go up"], "cpu"))
        assert ctx.shape == (1, 0, 3, cfg.size, cfg.size), f"the local rule has no clean context, got {ctx.shape[1]} frames"
        assert torch.equal(target, torch.cat(history[n - 2:n], 1)), \
            f"history of {n}: the window must be the last two chunks [X_(i-1) ; X_i]"
        assert torch.equal(tokens, sf.null_tokens(1, "cpu")), "the fast loss is taken with the null action"


def check_each_chunk_is_sampled_after_the_previous_chunk_with_its_action(sf):
    """One Diffusion.sample call per action: its context is the previous chunk (X_0: the start frame, in model space),
    its tokens that action's, K = cfg.chunk new frames, the sampler settings from cfg (sample_steps, guidance, eta);
    the returned frames are those chunks, after the start frame."""
    cfg, model, _, first = setup(sf, sample_steps=3, guidance=2.0, eta=0.5)
    d = sf.Diffusion(micro_cfg(sf))  # its own defaults differ from cfg's: generate_long must pass cfg's
    calls = sample_spy(sf, d)
    res = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=4)
    assert len(calls) == len(ACTIONS), f"{len(calls)} sampler calls for {len(ACTIONS)} actions: one chunk per action"
    prev = sf.to_model(first[None, None])
    for i, (c, a) in enumerate(zip(calls, ACTIONS)):
        assert torch.equal(c["ctx"], prev), f"chunk {i + 1} was not sampled after the previous chunk " \
                                            f"({'the start frame' if i == 0 else f'chunk {i}'}): the wrong context"
        assert torch.equal(c["tokens"], sf.action_tokens([a], "cpu")), f"chunk {i + 1} was sampled without its action"
        assert c["n"] == cfg.chunk, f"chunk {i + 1}: {c['n']} frames sampled, expected K = cfg.chunk = {cfg.chunk}"
        got = (c["steps"], c["guidance"], c["eta"])
        assert got == (cfg.sample_steps, cfg.guidance, cfg.eta), \
            f"the sampler settings {got}: generate_long takes them from cfg (sample_steps, guidance, eta)"
        prev = c["out"]
    want = sf.to_frames(torch.cat([sf.to_model(first[None, None])] + [c["out"] for c in calls], 1))[0]
    assert frames_diff(res["frames"], want) == 0, "the returned frames are not the start frame and the sampled chunks"


def check_the_video_follows_its_context(sf):
    """With a network whose prediction leans on its context, the video without fast learning is chunk-by-chunk
    sampling with one generator seeded with `seed`: each chunk continues the previous one."""
    cfg, model, d, first = setup(sf)
    res = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=False, seed=5)
    gen, history = torch.Generator().manual_seed(5), [sf.to_model(first[None, None])]
    sf.set_trainable(model, "fast")
    for a in ACTIONS:
        history.append(d.sample(model, history[-1], sf.action_tokens([a], "cpu"), cfg.chunk, generator=gen))
    diff = frames_diff(res["frames"], sf.to_frames(torch.cat(history, 1))[0])
    assert diff <= 1, f"the video differs from sampling each chunk after the previous one by up to {diff} / 255 " \
                      f"(the wrong context, or the sampler's noise not from one generator seeded with `seed`)"
    assert res["fast_losses"] == [], "without fast learning there are no fast losses"


def check_fast_learning_draws_its_noise_from_its_own_generator(sf):
    """With a fast learning rate of 0 (Theta never moves) a video with fast learning is the video without it, bit for
    bit: fast learning's draws must not come from the sampler's generator (nor the global RNG)."""
    cfg, model, d, first = setup(sf, fast_lr=0.0)
    off = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=False, seed=6)["frames"]
    torch.manual_seed(123)
    on = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=6)
    assert frames_diff(on["frames"], off) == 0, \
        "with fast_lr 0 the video changed: fast learning used the sampler's generator (it must draw from its own, " \
        "fast_generator(seed), so videos with and without memory share the sampler's noise)"
    torch.manual_seed(321)
    again = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=6)
    assert on["fast_losses"] == again["fast_losses"], "the fast losses depend on the global RNG: draw from fast_generator(seed)"


def check_theta_is_fresh_at_the_start_of_every_video(sf):
    """Whatever Theta the model holds before the call, a new video (no memory) starts from the fresh LoRA: the same
    video and fast losses as from a fresh model, with and without fast learning."""
    cfg, model, d, first = setup(sf)
    fresh = {fl: sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=fl, seed=7) for fl in (True, False)}
    sf.generate_long(model, d, cfg, first, ACTIONS[::-1], fast_learning=True, seed=8)  # Theta now holds that video
    with torch.no_grad():
        for p in sf.lora_parameters(model):
            p.add_(0.05)
    for fl in (True, False):
        res = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=fl, seed=7)
        assert frames_diff(res["frames"], fresh[fl]["frames"]) == 0 and res["fast_losses"] == fresh[fl]["fast_losses"], \
            f"Theta was not reset at the start of the video (fast_learning={fl}): the last video's memory leaked in"


def check_one_adam_learns_the_local_window_after_every_chunk(sf):
    """Theta after the video is Algorithm 1a's: one Adam (lr cfg.fast_lr) for the whole video, its moments carried
    from chunk to chunk; after each chunk cfg.fast_steps updates on [X_(i-1) ; X_i], drawn from fast_generator(seed)."""
    cfg, model, d, first = setup(sf, fast_steps=2)
    calls = sample_spy(sf, d)
    res = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=2)
    theta = sf.lora_state(model)
    steps = [s.get("step") for s in res["memory"].opt.get("state", {}).values()]
    want_steps = len(ACTIONS) * cfg.fast_steps
    assert steps and all(float(s) == want_steps for s in steps), \
        f"the memory's Adam took {steps[:1]} steps, expected {want_steps}: one optimizer for the whole video " \
        f"(a new Adam per chunk forgets its moments), cfg.fast_steps updates per chunk"
    sf.reset_lora(model)
    sf.set_trainable(model, "fast")
    opt = torch.optim.Adam(sf.lora_parameters(model), lr=cfg.fast_lr)
    fast_gen, history = sf.fast_generator(2), [sf.to_model(first[None, None])]
    for c in calls:  # the chunks the video sampled, learned as Algorithm 1a learns them
        history.append(c["out"])
        sf.fast_learn_chunk(model, d, opt, history, None, cfg, fast_gen)
    for k in theta:
        close(theta[k], sf.lora_state(model)[k], 1e-4, f"Theta after the video against Algorithm 1a ({k})")


def check_fast_learning_learns_the_window_it_is_given(sf):
    """`window` is the fast rule: it is called once per chunk with the history (the newest chunk last), and what it
    returns is what Theta learns (the lab swaps rules through it)."""
    cfg, model, d, first = setup(sf)
    seen = []

    def newest_only(history, tokens):
        seen.append([h.shape[1] for h in history])
        return history[-1][:, :0], history[-1], sf.null_tokens(1, history[-1].device)

    sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=3, window=newest_only)
    theta_newest = sf.lora_state(model)
    assert len(seen) == len(ACTIONS), f"the window was called {len(seen)} times for {len(ACTIONS)} chunks: " \
                                      f"generate_long must use its `window` argument"
    assert [s[-1] for s in seen] == [cfg.chunk] * len(ACTIONS) and len(seen[0]) >= 2, \
        f"the window got histories of chunk lengths {seen}: the newest chunk last"
    sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=3)
    assert not same_state(sf.lora_state(model), theta_newest), "another window gave the same Theta: the window is ignored"


def check_a_memory_is_a_value(sf):
    """Two calls, the second continuing from the first's memory, give one call's video and Theta; continuing twice
    from one memory gives the same video and Theta twice, and leaves that memory as it was (its optimizer state and
    LoRA copied, never shared with the running Adam)."""
    cfg, model, d, first = setup(sf)
    whole = sf.generate_long(model, d, cfg, first, ACTIONS, fast_learning=True, seed=1)
    theta = sf.lora_state(model)
    a = sf.generate_long(model, d, cfg, first, ACTIONS[:2], fast_learning=True, seed=1)
    kept = copy.deepcopy(a["memory"])
    b = sf.generate_long(model, d, cfg, None, ACTIONS[2:], fast_learning=True, seed=1, memory=a["memory"])
    assert b["frames"].shape[0] == len(ACTIONS[2:]) * cfg.chunk, "a continuation returns only the new frames"
    assert frames_diff(whole["frames"][1 + 2 * cfg.chunk:], b["frames"]) == 0, \
        "the continued video differs from the one-call video (history, generators or Theta not taken from the memory)"
    assert same_state(sf.lora_state(model), theta), "Theta after the continuation differs from Theta after one call"
    m = a["memory"]
    unchanged = same_state(m.lora, kept.lora) and all(torch.equal(m.history[i], kept.history[i]) for i in range(len(kept.history)))
    for key, state in kept.opt.get("state", {}).items():
        unchanged = unchanged and same_state(m.opt["state"][key], state)
    assert unchanged, "continuing changed the memory it started from: copy the memory (Adam's moments, Theta, the " \
                      "history) instead of sharing its tensors with the running optimizer and model"
    c = sf.generate_long(model, d, cfg, None, ACTIONS[2:], fast_learning=True, seed=1, memory=a["memory"])
    assert frames_diff(b["frames"], c["frames"]) == 0 and b["fast_losses"] == c["fast_losses"], \
        "continuing twice from one memory gave two videos: a memory is a value"


def check_a_latent_model_goes_through_its_autoencoder_once_each_way(sf):
    """A latent model: the start frame is encoded (to_model with model.autoencoder), sampling and fast learning work on
    latents, and the returned frames are the decoded chunks (to_frames with model.autoencoder): pixels, not latents."""
    cfg = latent_cfg(sf, fast_lr=1e-2, sample_steps=2)
    cfg, model, d, first = setup(sf, cfg)
    calls = sample_spy(sf, d)
    res = sf.generate_long(model, d, cfg, first, ACTIONS[:2], fast_learning=True, seed=4)
    n = 1 + 2 * cfg.chunk
    assert res["frames"].shape == (n, cfg.size, cfg.size, 3), \
        f"frames {res['frames'].shape}: a latent model returns decoded frames ({n}, {cfg.size}, {cfg.size}, 3)"
    x0 = sf.to_model(first[None, None], "cpu", model.autoencoder)
    assert calls and torch.allclose(calls[0]["ctx"], x0, atol=1e-6), \
        "the first chunk's context must be the start frame's latents (to_model with the model's autoencoder)"
    want = sf.to_frames(torch.cat([x0] + [c["out"] for c in calls], 1), model.autoencoder)[0]
    assert frames_diff(res["frames"], want) <= 1, "the frames are not the decoded latents [X_0 ; X_1 ; ...]"
    assert len(res["fast_losses"]) == 2 and all(torch.isfinite(torch.tensor(res["fast_losses"]))), \
        "fast learning on latents gave no finite loss per chunk"


CHECKS = [check_local_window_is_the_last_two_chunks_with_no_context_and_the_null_action,
          check_each_chunk_is_sampled_after_the_previous_chunk_with_its_action, check_the_video_follows_its_context,
          check_fast_learning_draws_its_noise_from_its_own_generator, check_theta_is_fresh_at_the_start_of_every_video,
          check_one_adam_learns_the_local_window_after_every_chunk, check_fast_learning_learns_the_window_it_is_given,
          check_a_memory_is_a_value, check_a_latent_model_goes_through_its_autoencoder_once_each_way]
