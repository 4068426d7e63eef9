"""Training and checkpoints: exact resume, atomic self-describing checkpoints, refusing bad files."""
import os
import pickle

import numpy as np
import pytest
import torch
from conftest import micro_cfg

import data
import sfvgen
import train
import video


def test_resume_gives_the_same_losses_and_weights_as_an_uninterrupted_run(tmp_path):
    full = train.main(micro_cfg(out=str(tmp_path / "a"), max_steps=4), quiet=True)
    train.main(micro_cfg(out=str(tmp_path / "b"), max_steps=2), quiet=True)
    rest = train.main(micro_cfg(out=str(tmp_path / "b"), max_steps=4, resume=True), quiet=True)
    assert rest["step"] == 4 and rest["losses"] == full["losses"][2:]
    a = torch.load(tmp_path / "a" / "ckpt.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_checkpoint_is_self_describing_and_round_trips(tmp_path):
    cfg = micro_cfg(out=str(tmp_path), max_steps=2)
    train.main(cfg, quiet=True)
    ckpt = sfvgen.load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert {"config", "step", "model", "ema", "optimizer", "rng"} <= set(ckpt) and ckpt["step"] == 2
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path))  # written to a temp name, then renamed
    model, cfg2, _ = sfvgen.load_model(str(tmp_path / "ckpt.pt"))
    assert cfg2 == cfg
    ref = sfvgen.VideoUNet(cfg)
    ref.load_state_dict(ckpt["ema"])
    x, t = torch.randn(1, 3, 3, 16, 16), torch.tensor([[0, 30, 30]])
    tok = sfvgen.null_tokens(1, "cpu")
    with torch.no_grad():
        assert torch.equal(model(x, t, tok, 1), ref.eval()(x, t, tok, 1))
    train.export(str(tmp_path / "ckpt.pt"), str(tmp_path / "small.pt"), quiet=True)
    small, _, _ = sfvgen.load_model(str(tmp_path / "small.pt"))
    with torch.no_grad():
        assert torch.allclose(small(x, t, tok, 1), ref(x, t, tok, 1), atol=2e-2)


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


def test_bad_checkpoints_give_one_line_errors_naming_the_file(tmp_path):
    train.main(micro_cfg(out=str(tmp_path), max_steps=1), quiet=True)
    good = (tmp_path / "ckpt.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.pt").write_text("hello")
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": Boom()}))  # a pickle that runs a command when unpickled
    bad_cfg = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    bad_cfg["config"]["no_such_field"] = 1
    torch.save(bad_cfg, tmp_path / "incompatible.pt")
    torch.save({"x": Boom()}, tmp_path / "evil-torch.pt")  # the same inside a torch archive
    for name, msg in [("trunc.pt", "damaged or cut short"), ("text.pt", "not a file torch.save wrote"),
                      ("evil.pt", "not a file torch.save wrote"), ("evil-torch.pt", "asks to run code"),
                      ("missing.pt", "no such file"), ("incompatible.pt", "incompatible config")]:
        with pytest.raises(ValueError, match=msg) as e:
            sfvgen.load_model(str(tmp_path / name))
        assert name in str(e.value) and "\n" not in str(e.value)
        assert "weights_only" not in str(e.value)  # plain words; never advice to switch the safety check off
    assert not os.path.exists("pwned_by_checkpoint")


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = micro_cfg(out=str(tmp_path), max_steps=6, ckpt_every=2)
    real = sfvgen.Diffusion.loss
    calls = {"n": 0}

    def flaky(self, *a, **k):
        calls["n"] += 1
        loss = real(self, *a, **k)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(sfvgen.Diffusion, "loss", flaky)
    with pytest.raises(SystemExit, match="nan at step 3.*last good checkpoint"):
        train.main(cfg, quiet=True)
    ckpt = sfvgen.load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_own_data_clips_are_cut_from_the_folder_and_train_py_data_trains_on_them(tmp_path):
    folder = video.write_example_folder(str(tmp_path / "videos"), n_videos=3)
    cfg = micro_cfg(data=folder, out=str(tmp_path / "run"), max_steps=2)
    episodes = video.load_folder(folder, cfg.world())
    assert [e.split for e in episodes] == ["train", "train", "val"]  # the last fifth held out by default
    ctx, tok, tgt = video.sample_folder_batch(np.random.default_rng(0), episodes, 8, cfg.world(), n_ctx=1)
    for c, a, g in zip(ctx, tok, tgt):  # every clip: consecutive frames of one video, with that chunk's action
        clip = np.concatenate([c, g])
        hits = [(e.actions, i) for e in episodes for i in range(len(e.frames) - len(clip) + 1)
                if np.array_equal(e.frames[i:i + len(clip)], clip)]
        assert hits and any(data.tokenize(actions[(i + 1) // cfg.chunk]) == list(a) for actions, i in hits)
    out = train.main(cfg, quiet=True)
    assert out["step"] == 2 and sfvgen.load_checkpoint(str(tmp_path / "run" / "ckpt.pt"))["config"]["data"] == folder
