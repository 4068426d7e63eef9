"""The memory matrix (lab/matrix.py): the arms' contexts, the controls, the summary numbers, MemoryUNet and the
memory-mix training (lab/train.py)."""
import os

import numpy as np
import pytest
import torch
from conftest import micro_cfg

import data
import metrics
import sfvgen
from lab import matrix
from lab.stats import bootstrap_ci


def episode(kind="out-and-back", n=3, cfg=None):
    spec = (cfg or sfvgen.Config()).world()
    actions = data.make_actions(kind, np.random.default_rng(1), n=n)
    return actions, *data.render_episode(200_001, actions, spec)


def test_pose_retrieval_picks_the_earlier_frames_at_the_new_frames_poses():
    actions, frames, pos = episode()
    K, n = 4, 3
    for i in range(n + 1, 2 * n):  # return chunks: every new pose was seen on the outward leg
        first = 1 + i * K
        ids, n_mem = matrix.context_ids(matrix.RETRIEVE, first, K, pos, np.random.default_rng(0))
        assert n_mem == K and ids[n_mem:] == list(range(first - K, first))  # memory, then the previous chunk
        assert all(m < first - K for m in ids[:n_mem])                      # only from outside the previous chunk
        assert np.array_equal(pos[ids[:n_mem]], pos[first:first + K])     # the same camera poses, in order
        assert np.array_equal(frames[ids[:n_mem]], frames[first:first + K])  # a static world: the same views
    ids, n_mem = matrix.context_ids(matrix.RETRIEVE, 1 + K, K, pos, np.random.default_rng(0))
    assert n_mem == 0  # the outward leg revisits nothing: no memory frames, the no-memory context


def test_random_retrieval_draws_as_many_frames_from_the_same_pool():
    _, _, pos = episode()
    K, first = 4, 1 + 5 * 4
    ids_r, n_r = matrix.context_ids(matrix.RETRIEVE, first, K, pos, np.random.default_rng(0))
    seen = set()
    for s in range(50):
        ids, n = matrix.context_ids(matrix.RANDOM, first, K, pos, np.random.default_rng(s))
        assert n == n_r and ids[n:] == ids_r[n_r:]
        assert all(0 <= m < first - K for m in ids[:n])
        seen |= set(ids[:n])
    assert len(seen) > 2 * K  # random, over the whole pool, not the pose matches


def test_windows_and_ceiling_contexts():
    _, _, pos = episode()
    K, first = 4, 1 + 5 * 4
    rng = np.random.default_rng(0)
    assert matrix.context_ids(matrix.NONE, first, K, pos, rng) == (list(range(first - K, first)), 0)
    assert matrix.context_ids("window 2", first, K, pos, rng) == (list(range(first - 2 * K, first)), 0)
    assert matrix.context_ids(matrix.CEILING, first, K, pos, rng) == (list(range(first)), 0)
    ids, _ = matrix.context_ids("window 4", 1 + K, K, pos, rng)
    assert len(ids) == 4 * K and ids[-K:] == list(range(1, 1 + K)) and set(ids[:-K]) == {0}


def micro(latent=False):
    """A random MemoryUNet: on pixels, or on the latents of a random frame autoencoder (latent=True)."""
    cfg = micro_cfg(fast_steps=2, fast_lr=1e-2, **(dict(latent_channels=4, ae_width=16) if latent else {}))
    torch.manual_seed(0)
    model = matrix.MemoryUNet(cfg)
    with torch.no_grad():  # a non-trivial network, so contexts and fast weights change the frames
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return cfg, model, sfvgen.Diffusion(cfg, torch.device("cpu"))


@pytest.mark.parametrize("latent", [False, True], ids=["pixels", "latents"])
def test_rollout_is_the_generator_and_continues_exactly(latent):
    # on a latent model too: the arms work on latents, and decoding them gives generate_long's video
    cfg, model, diffusion = micro(latent)
    actions, truth, pos = episode(n=2, cfg=cfg)
    sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=0)
    for arm, fast in ((matrix.NONE, False), (matrix.TEMP_LORA, True)):
        want = sfvgen.generate_long(model, diffusion, cfg, truth[0], actions, fast_learning=fast, seed=cfg.seed)["frames"]
        start = matrix.start_state(truth[0], cfg.seed, "cpu", model.autoencoder)
        whole, _ = matrix.rollout(model, diffusion, cfg, arm, actions, pos, start)
        assert np.array_equal(sfvgen.to_frames(whole["x"], model.autoencoder)[0], want)
        half, _ = matrix.rollout(model, diffusion, cfg, arm, actions[:2], pos, start)  # stop and go on: the same
        rest, _ = matrix.rollout(model, diffusion, cfg, arm, actions[2:], pos, half)
        assert torch.equal(rest["x"], whole["x"])


@pytest.mark.parametrize("latent", [False, True], ids=["pixels", "latents"])
def test_memory_changes_the_return_but_not_the_shared_outward_leg(latent):
    cfg, model, diffusion = micro(latent)
    actions, truth, pos = episode(n=2, cfg=cfg)
    start = matrix.start_state(truth[0], cfg.seed, "cpu", model.autoencoder)
    none, _ = matrix.rollout(model, diffusion, cfg, matrix.NONE, actions, pos, start)
    turn = matrix.first_revisit_chunk(pos, cfg.chunk, len(actions))
    cut = 1 + turn * cfg.chunk
    for arm in (matrix.RETRIEVE, matrix.COPY):
        s, _ = matrix.rollout(model, diffusion, cfg, arm, actions, pos, start)
        assert torch.equal(s["x"][:, :cut], none["x"][:, :cut])       # nothing to remember on the way out
        assert not torch.equal(s["x"][:, cut:], none["x"][:, cut:])   # the return sees the memory
    copy, _ = matrix.rollout(model, diffusion, cfg, matrix.COPY, actions, pos, start)
    for n in range(cut, copy["x"].shape[1]):                            # the bound: every revisit is the first visit
        m = matrix.revisit_matches(pos, [n], n)
        assert not m or torch.equal(copy["x"][:, n], copy["x"][:, m[0]])


def test_the_reset_control_restores_the_fresh_lora():
    cfg, model, diffusion = micro()
    actions, truth, pos = episode(n=2, cfg=cfg)
    sfvgen.add_lora(model, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=0)
    fresh = sfvgen.lora_state(model)
    learned, _ = matrix.rollout(model, diffusion, cfg, matrix.TEMP_LORA, actions[:2], pos, matrix.start_state(truth[0], 0, "cpu"))
    assert any(not torch.equal(learned["lora"][k], fresh[k]) for k in fresh)  # the outward leg was learned
    reset, _ = matrix.rollout(model, diffusion, cfg, matrix.TEMP_LORA, [], pos, dict(learned, lora=None, opt=None))
    assert all(torch.equal(reset["lora"][k], fresh[k]) for k in fresh)


def test_gap_fraction_is_zero_for_no_memory_and_one_for_the_ceiling():
    rng = np.random.default_rng(0)
    per_world = [{matrix.NONE: dict(return_psnr=12 + rng.random()), matrix.CEILING: dict(return_psnr=15 + rng.random()),
                  "half": dict(return_psnr=13.5 + rng.random())} for _ in range(8)]
    table = matrix.summarize(per_world, [matrix.NONE, matrix.CEILING, "half"])
    assert table[matrix.NONE]["gap_closed"] == 0.0
    assert table[matrix.CEILING]["gap_closed"] == 1.0
    assert 0.2 < table["half"]["gap_closed"] < 0.8
    assert np.isnan(table["half"]["copy_gap_closed"])  # no copy-bound row, no fraction of it


def test_confidence_intervals_contain_the_mean_and_shrink_with_more_worlds():
    widths = []
    for n in (2, 8, 32):  # worlds with the same spread of per-world gains, more of them
        mean, lo, hi = bootstrap_ci(np.tile([-1.0, 0.5, 2.0, 4.5], n))
        assert lo <= mean <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]


def test_memory_training_clips_have_the_arms_contexts():
    rng, K = np.random.default_rng(0), 4
    ctx, _, tgt, n_mem = matrix.sample_memory_batch(rng, (0, 100), 3, mode="retrieve", n_out=3)
    assert n_mem in (1, K) and np.array_equal(ctx[:, :n_mem], tgt[:, K - n_mem:])  # retrieved = the places ahead
    for mode, f_p in (("window2", 2 * K), ("window4", 4 * K)):
        assert matrix.sample_memory_batch(rng, (0, 100), 2, mode=mode)[0].shape[1] == f_p
    ctx, _, tgt, n_mem = matrix.sample_memory_batch(rng, (0, 100), 2, mode="random", n_out=3)
    assert n_mem in (1, K) and ctx.shape[1] == n_mem + K


def test_model_takes_long_and_retrieved_contexts():
    cfg, model, diffusion = micro()
    K = cfg.chunk
    x = torch.randn(1, 9 * K, 3, cfg.size, cfg.size)  # 8 chunks of context: past the 2K learned offsets
    t = torch.zeros(1, 9 * K, dtype=torch.long)
    t[:, 8 * K:] = 50
    tok = sfvgen.null_tokens(1, "cpu")
    out = model(x, t, tok, 8 * K)
    assert out.shape == x.shape and torch.isfinite(out).all()
    x, t = x[:, -3 * K:], t[:, -3 * K:]  # 2 chunks of context: the first one as retrieved memory or as the past
    past = model(x, t, tok, 2 * K)[:, -K:]
    model.n_mem = K
    assert model.frame_positions(3 * K, 2 * K, "cpu")[:K].tolist() == [0] * K  # the "from memory" position
    assert not torch.allclose(model(x, t, tok, 2 * K)[:, -K:], past)
    model.n_mem = 0
    assert torch.equal(model(x, t, tok, 2 * K)[:, -K:], past)


def test_memory_unet_is_the_video_unet_until_frames_are_retrieved():
    cfg, model, _ = micro()
    plain = sfvgen.VideoUNet(cfg)
    plain.load_state_dict(model.state_dict())  # the same keys: checkpoints load into either
    x, t, tok = torch.randn(1, 3 * cfg.chunk, 3, cfg.size, cfg.size), torch.zeros(1, 3 * cfg.chunk, dtype=torch.long), \
        sfvgen.null_tokens(1, "cpu")
    t[:, 2 * cfg.chunk:] = 30
    assert torch.equal(model(x, t, tok, 2 * cfg.chunk), plain(x, t, tok, 2 * cfg.chunk))
    mem = matrix.memory_model(plain)
    assert isinstance(mem, matrix.MemoryUNet) and mem.n_mem == 0
    assert all(torch.equal(a, b) for a, b in zip(mem.state_dict().values(), plain.state_dict().values()))


def test_memory_mix_training_sets_the_retrieved_frames_of_each_batch(tmp_path):
    import train
    from lab import train as lab_train
    cfg = micro_cfg(max_steps=3, out=str(tmp_path / "mem"))
    built, seen = [], []
    network = lambda c: built.append(matrix.MemoryUNet(c)) or built[0]  # noqa: E731
    batches = lab_train.memory_batches(cfg, lambda: built[0], 1.0)

    def record(rng, seeds, n_ctx=None):
        batch = batches(rng, seeds, n_ctx)
        seen.append((built[0].n_mem, batch[0].shape[1]))  # retrieved frames, context frames
        return batch
    out = train.main(cfg, quiet=True, batches=record, network=network)
    model = built[0]
    assert out["step"] == 3 and all(np.isfinite(out["losses"]))
    assert seen and all(0 <= n <= f_p for n, f_p in seen)  # every batch is a memory batch, its n_mem set
    loaded, _, _ = sfvgen.load_model(str(tmp_path / "mem" / "ckpt.pt"))  # a plain VideoUNet loads it
    assert isinstance(loaded, sfvgen.VideoUNet)
    plain = lab_train.memory_batches(cfg, lambda: model, 0.0)
    ctx, tok, tgt = plain(np.random.default_rng(0), cfg.train_seeds)
    assert model.n_mem == 0 and tgt.shape[1] in (cfg.chunk, 2 * cfg.chunk)


def test_new_kinds_return_to_the_start_and_calibration_edits_one_shape():
    spec = sfvgen.Config().world()
    for kind in ("triangle", "L"):
        actions = data.make_actions(kind, np.random.default_rng(3), n=2)
        pos = data.trajectory(actions, (0, 0), spec)
        assert tuple(pos[-1]) == (0, 0) and matrix.first_revisit_chunk(pos, spec.chunk, len(actions)) < len(actions)
    world = data.World(7, spec)
    for edit in (dict(drop=2), dict(swap=(2, 3))):
        diff = np.argwhere((matrix.edited_world(world, **edit).canvas != world.canvas).any(-1))
        cy, cx, r = world.shapes[2][:3]
        d = np.minimum(np.abs(diff - [cy, cx]) % spec.canvas, spec.canvas - np.abs(diff - [cy, cx]) % spec.canvas)
        assert len(diff) and (d <= r).all()  # only shape 2's pixels changed
    calib = matrix.calibration(spec, range(200_000, 200_004))
    assert all(0 < c["psnr"] < 60 and 0 < c["ssim"] < 1 for c in calib.values())


def test_pooled_psnr_is_the_psnr_of_the_frames_together():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 8, 8, 3))
    b = np.clip(a + rng.normal(0, 1, a.shape) * np.arange(1, 6)[:, None, None, None] * 5, 0, 255)
    assert abs(matrix.pooled_psnr(metrics.psnr_per_frame(a, b)) - metrics.psnr(a, b)) < 1e-6


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS (Linux)")
def test_peak_memory_sees_a_new_allocation():
    before = matrix.peak_rss_mb()
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024
    mb = before - rss + 200  # enough to pass the earlier peak by 200 MB
    block = np.ones(int(mb * 2 ** 20 // 8))  # touched
    assert matrix.peak_rss_mb() > before + 150 and block.sum() > 0


@pytest.mark.parametrize("latent", [False, True], ids=["pixels", "latents"])
def test_the_matrix_entry_point_writes_calibration_and_the_table(tmp_path, latent):
    import json

    import train
    from lab import plan
    extra = {}
    if latent:  # a latent checkpoint: its autoencoder first; the arms then splice latents and score decoded frames
        train.main(micro_cfg(latent_channels=4, ae_width=16, stage="autoencoder", max_steps=1, out=str(tmp_path / "ae")), quiet=True)
        extra = dict(latent_channels=4, ae_width=16, autoencoder=str(tmp_path / "ae" / "ckpt.pt"))
    train.main(micro_cfg(max_steps=1, out=str(tmp_path / "m"), **extra), quiet=True)
    cfg = micro_cfg()
    idm = plan.train_inverse_dynamics(cfg, torch.device("cpu"), steps=2, batch=4)
    sfvgen.save_checkpoint(str(tmp_path / "idm.pt"), dict(size=cfg.size, model=idm.state_dict()))
    table, curves = matrix.main(["--ckpt", str(tmp_path / "m" / "ckpt.pt"), "--worlds", "2", "--out-chunks", "2",
                                 "--arms", "pose retrieval,ground-truth first visits", "--idm", str(tmp_path / "idm.pt"),
                                 "--out", str(tmp_path / "x"), "--device", "cpu", "--threads", "1"])
    saved = json.load(open(tmp_path / "x" / "memory_matrix_out-and-back.json"))
    assert list(saved["table"]) == list(table) and {matrix.NONE, matrix.RETRIEVE, matrix.GT} <= set(table)
    assert all(0 < r["return_psnr"][0] < 99 for r in table.values())  # scored on decoded frames, not on latents
    assert (tmp_path / "x" / "calibration.json").exists() and len(saved["per_world"]) == 2
    with pytest.raises(SystemExit, match="--worlds N"):
        matrix.main(["--ckpt", str(tmp_path / "m" / "ckpt.pt"), "--out", str(tmp_path / "x")])
