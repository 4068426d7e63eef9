"""Latent models: a frozen per-frame autoencoder (the paper's VAE in miniature) and the UNet on its latents."""
import numpy as np
import torch
from conftest import loop_episodes, micro_cfg

import data
import metrics
import sfvgen
import train


def latent_cfg(**overrides):
    return micro_cfg(latent_channels=4, ae_width=16, **overrides)


def test_autoencoder_shapes_and_round_trip_on_a_rendered_frame():
    torch.manual_seed(0)
    frame = data.World(200_000).view(10, 20)                      # (32, 32, 3) uint8
    x = sfvgen.to_model(frame[None, None])[0]                     # (1, 3, 32, 32) in [-1, 1]
    ae = sfvgen.FrameAutoencoder(8, 32)
    assert ae.encode(x).shape == (1, 8, 8, 8) and ae.decode(ae.encode(x)).shape == (1, 3, 32, 32)
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    for _ in range(150):  # learn this one frame: encode then decode gives it back
        loss = torch.nn.functional.mse_loss(ae.decode(ae.encode(x)), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = sfvgen.to_model(frame[None, None], autoencoder=ae)        # the one conversion in, through the autoencoder
    back = sfvgen.to_frames(z, autoencoder=ae)                    # ... and out: (1, 1, 32, 32, 3) uint8
    assert z.shape == (1, 1, 8, 8, 8) and back.shape == (1, 1, 32, 32, 3) and back.dtype == np.uint8
    assert metrics.psnr(back[0, 0], frame) > 20


def test_a_four_pixel_camera_move_shifts_the_latents_by_one_pixel():
    world = data.World(200_001, data.WorldSpec(marker=False))
    ae = sfvgen.FrameAutoencoder(8, 32)
    with torch.no_grad():
        a = ae.encode(sfvgen.to_model(world.view(40, 60)[None, None])[0])   # (1, 8, 8, 8)
        b = ae.encode(sfvgen.to_model(world.view(40, 64)[None, None])[0])   # the camera 4 px to the right
    assert torch.allclose(a[..., 1:], b[..., :-1], atol=1e-5)               # all of the overlap, borders included


def test_latent_statistics_are_stored_and_restored_with_the_model(tmp_path):
    ae_run = train.main(latent_cfg(stage="autoencoder", out=str(tmp_path / "ae"), max_steps=3), quiet=True)
    assert ae_run["step"] == 3
    stored = sfvgen.load_checkpoint(str(tmp_path / "ae" / "ckpt.pt"), require=("config", "autoencoder"))["autoencoder"]
    assert not torch.equal(stored["mean"], torch.zeros(4)) and not torch.equal(stored["std"], torch.ones(4))
    train.main(latent_cfg(autoencoder=str(tmp_path / "ae" / "ckpt.pt"), out=str(tmp_path / "lat"), max_steps=2), quiet=True)
    model, cfg, _ = sfvgen.load_model(str(tmp_path / "lat" / "ckpt.pt"))
    for k, v in stored.items():  # the frozen autoencoder and its statistics travel inside the model's checkpoint
        assert torch.equal(model.autoencoder.state_dict()[k], v), k
    assert cfg.latent_channels == 4 and not any(p.requires_grad for p in model.autoencoder.parameters())


def test_a_latent_checkpoint_generates_the_same_video_twice(tmp_path):
    train.main(latent_cfg(stage="autoencoder", out=str(tmp_path / "ae"), max_steps=2), quiet=True)
    train.main(latent_cfg(autoencoder=str(tmp_path / "ae" / "ckpt.pt"), out=str(tmp_path), max_steps=2), quiet=True)
    model, cfg, _ = sfvgen.load_model(str(tmp_path / "ckpt.pt"))
    model = sfvgen.with_lora(model, cfg)
    before = {k: v.clone() for k, v in model.autoencoder.state_dict().items()}
    first = data.render_episode(200_000, ["go right"], cfg.world())[0][0]
    videos = [sfvgen.generate_long(sfvgen.copy.deepcopy(model), sfvgen.Diffusion(cfg), cfg, first, ["go right", "go left"],
                                   fast_learning=True, seed=3) for _ in range(2)]
    assert videos[0]["frames"].shape == (1 + 2 * cfg.chunk, cfg.size, cfg.size, 3) and videos[0]["frames"].dtype == np.uint8
    assert np.array_equal(videos[0]["frames"], videos[1]["frames"])
    assert videos[0]["memory"].history[-1].shape[2:] == (4, cfg.size // 4, cfg.size // 4)  # memory holds latents
    assert all(torch.equal(before[k], v) for k, v in model.autoencoder.state_dict().items())  # fast learning leaves it frozen


def test_the_pixel_path_is_unchanged():
    cfg = micro_cfg()
    model = sfvgen.VideoUNet(cfg)
    assert model.autoencoder is None and model.inp.in_channels == 6 and model.out[-1].out_channels == 3
    frames = np.random.default_rng(0).integers(0, 256, (1, 2, 16, 16, 3), dtype=np.uint8)
    x = sfvgen.to_model(frames)
    assert torch.equal(x, torch.as_tensor(frames).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0)
    assert np.array_equal(sfvgen.to_frames(x), frames)
    assert not any(k.startswith("autoencoder") for k in model.state_dict())


def test_the_loop_learns_on_latents_and_leaves_the_autoencoder_frozen():
    # Algorithm 1b on a latent model: the snapshots and the slow gradient live in latent space, and the
    # frozen autoencoder gets no gradient and does not move
    cfg = latent_cfg(loop_episodes=1, loop_out_chunks=2, fast_lr=1e-2)
    torch.manual_seed(0)
    model = sfvgen.VideoUNet(cfg)
    sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=0)
    ae_before = {k: v.clone() for k, v in model.autoencoder.state_dict().items()}
    episodes = loop_episodes(cfg)
    loss, Ds = sfvgen.slow_fast_iteration(model, sfvgen.Diffusion(cfg), cfg, episodes, torch.Generator().manual_seed(0))
    assert np.isfinite(loss) and Ds[0][1].shape[2] == cfg.latent_channels  # X_{i+1} is latents: (1, K, C, h, w)
    assert all(p.grad is None for p in model.autoencoder.parameters())
    assert all(torch.equal(v, ae_before[k]) for k, v in model.autoencoder.state_dict().items())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in sfvgen.slow_parameters(model))


def test_phi_is_every_weight_but_theta_and_the_frozen_autoencoder():
    # slow learning's optimizer, its EMA and set_trainable all read Phi from sfvgen.slow_parameters
    cfg = latent_cfg()
    model = sfvgen.VideoUNet(cfg)
    sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=0)
    phi, theta = set(map(id, sfvgen.slow_parameters(model))), set(map(id, sfvgen.lora_parameters(model)))
    ae = set(map(id, model.autoencoder.parameters()))
    assert phi and theta and not phi & theta and not phi & ae
    assert phi | theta | ae == set(map(id, model.parameters()))
    for which, trains in (("slow", phi), ("fast", theta)):
        sfvgen.set_trainable(model, which)
        assert {id(p) for p in model.parameters() if p.requires_grad} == trains
