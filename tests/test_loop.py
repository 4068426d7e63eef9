"""The slow-fast learning loop (Algorithm 1b) and planning with an inverse-dynamics model."""
from dataclasses import replace

import numpy as np
import torch
from conftest import loop_episodes, micro_cfg

import sfvgen


def setup(fast_steps=2, episodes=2):
    cfg = micro_cfg(fast_steps=fast_steps, loop_episodes=episodes, loop_out_chunks=2, fast_lr=1e-2)
    torch.manual_seed(0)
    model = sfvgen.VideoUNet(cfg)
    sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=0)
    diffusion = sfvgen.Diffusion(cfg, torch.device("cpu"))
    episodes = loop_episodes(cfg)
    return cfg, model, diffusion, episodes


def same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_loop_episodes_take_the_configured_kinds_in_turn():
    spec = micro_cfg().world()
    for kinds, backs in (("go-back", [2, 2, 2]), ("out-and-back,go-back", [0, 2, 0])):
        cfg = micro_cfg(loop_kinds=kinds, loop_episodes=3, loop_out_chunks=2)
        episodes = loop_episodes(cfg)
        assert [actions.count("go back") for _, actions in episodes] == backs
        assert all(frames.shape[0] == 1 + len(actions) * spec.chunk for frames, actions in episodes)


def test_inner_loop_changes_only_the_lora_and_stores_one_triple_per_chunk():
    cfg, model, diffusion, episodes = setup()
    slow_before = {k: v.clone() for k, v in sfvgen.slow_state_dict(model).items()}
    _, Ds = sfvgen.slow_fast_iteration(model, diffusion, cfg, episodes, torch.Generator().manual_seed(0))
    assert same(sfvgen.slow_state_dict(model), slow_before)  # Phi is not stepped here (train.main steps it)
    assert len(Ds) == sum(len(actions) for _, actions in episodes)
    assert not same(Ds[1][3], Ds[0][3])  # the fast weights did move between chunks


def test_snapshot_i_equals_the_lora_after_i_fast_updates():
    cfg, model, diffusion, episodes = setup(episodes=1)
    _, Ds = sfvgen.slow_fast_iteration(model, diffusion, cfg, episodes, torch.Generator().manual_seed(0))
    # replay the episode by hand with the same generator: reset, then one update per chunk on [X_i ; X_{i+1}]
    frames, actions = episodes[0]
    x = sfvgen.to_model(frames[None])
    X = [x[:, :1]] + list(x[:, 1:].split(cfg.chunk, dim=1))
    sfvgen.reset_lora(model)
    opt = torch.optim.Adam(sfvgen.lora_parameters(model), lr=cfg.fast_lr)
    gen = torch.Generator().manual_seed(0)
    for i in range(len(actions)):
        assert same(sfvgen.lora_state(model), Ds[i][3]), f"snapshot {i} is not the LoRA after {i} updates"
        assert torch.equal(Ds[i][0], X[i]) and torch.equal(Ds[i][1], X[i + 1])
        window = torch.cat([X[i], X[i + 1]], 1)
        sfvgen.fast_update(model, diffusion, opt, window[:, :0], window, sfvgen.null_tokens(1, "cpu"), cfg.fast_steps, gen)


def test_outer_step_gives_gradients_to_the_slow_weights_only_and_leaves_snapshots_untouched():
    cfg, model, diffusion, episodes = setup()
    loss, Ds = sfvgen.slow_fast_iteration(model, diffusion, cfg, episodes, torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in sfvgen.lora_parameters(model))  # Theta_i frozen in the outer step
    slow = [p for n, p in model.named_parameters() if ".lora_" not in n]
    assert np.isfinite(loss) and sum(float(p.grad.abs().sum()) for p in slow if p.grad is not None) > 0
    assert all(not any(v.abs().sum() > 0 for k, v in theta.items() if "lora_B" in k) for *_, theta in Ds[:1])  # Theta_0 fresh
    assert sfvgen.lora_state(model) and all(float(v.abs().sum()) == 0 for k, v in sfvgen.lora_state(model).items()
                                            if "lora_B" in k)  # Theta reset after the step


def test_outer_step_uses_the_snapshot_memory():
    # the same episodes and noise draws; with a fast learning rate of 0 every snapshot is the fresh LoRA (no
    # memory): the slow loss must differ when the snapshots hold what the episode taught them
    cfg, model, diffusion, episodes = setup(episodes=1)
    losses = []
    for lr in (0.0, 1e-2):
        model.zero_grad(set_to_none=True)
        loss, _ = sfvgen.slow_fast_iteration(model, diffusion, replace(cfg, fast_lr=lr), episodes, torch.Generator().manual_seed(1))
        losses.append(loss)
    assert losses[0] != losses[1]


def test_the_loop_runs_one_outer_iteration_end_to_end(tmp_path):
    import train
    init = tmp_path / "init"
    train.main(micro_cfg(max_steps=1, out=str(init)), quiet=True)
    cfg = micro_cfg(loop=True, init=str(init / "ckpt.pt"), max_steps=1, loop_episodes=1, loop_out_chunks=2, lr=1e-3,
                    out=str(tmp_path / "loop"))
    out = train.main(cfg, quiet=True)
    assert out["step"] == 1 and np.isfinite(out["losses"][0])
    model, _, _ = sfvgen.load_model(str(tmp_path / "loop" / "ckpt.pt"))  # a plain video model, no LoRA keys
    start, _, _ = sfvgen.load_model(str(init / "ckpt.pt"))
    diff = [not torch.equal(a, b) for a, b in zip(model.state_dict().values(), start.state_dict().values())]
    assert any(diff) and not any(isinstance(m, sfvgen.LoRA) for m in model.modules())
