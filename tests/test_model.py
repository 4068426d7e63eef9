"""Slow learning: the video UNet, the masked conditional loss, the samplers, the config flags."""
from dataclasses import fields

import numpy as np
import pytest
import torch
from conftest import micro_cfg

import cli
import data
import sfvgen


def make(cfg=None, seed=0):
    cfg = cfg or micro_cfg()
    torch.manual_seed(seed)
    return sfvgen.VideoUNet(cfg).eval(), sfvgen.Diffusion(cfg), cfg


def clip(cfg, B=2, f_p=2, f_g=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    ctx = torch.rand((B, f_p, 3, cfg.size, cfg.size), generator=g) * 2 - 1
    x0 = torch.rand((B, f_g, 3, cfg.size, cfg.size), generator=g) * 2 - 1
    return ctx, x0, sfvgen.action_tokens(["go left"] * B, "cpu")


def test_output_shapes_for_every_context_length():
    model, _, cfg = make()
    for f_p, f_g in [(0, 4), (1, 2), (2, 2)]:
        x = torch.randn(2, f_p + f_g, 3, cfg.size, cfg.size)
        t = torch.randint(0, cfg.timesteps, (2, f_p + f_g))
        assert model(x, t, sfvgen.null_tokens(2, "cpu"), f_p).shape == x.shape


def test_frames_round_trip_uint8():
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8, 3), dtype=np.uint8)
    x = sfvgen.to_model(frames)
    assert x.shape == (2, 3, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert np.array_equal(sfvgen.to_frames(x), frames)


class Spy(torch.nn.Module):
    """Wraps a model: records its inputs, and can add junk to its output at the context frames."""

    def __init__(self, model, junk=0.0):
        super().__init__()
        self.model, self.junk, self.calls = model, junk, []

    def forward(self, x, t, tokens, n_ctx):
        self.calls.append((x.clone(), t.clone()))
        out = self.model(x, t, tokens, n_ctx)
        return torch.cat([out[:, :n_ctx] + self.junk, out[:, n_ctx:]], dim=1)


def test_loss_ignores_context_outputs_and_reacts_to_targets():
    model, diff, cfg = make()
    ctx, x0, tok = clip(cfg)
    base = diff.loss(Spy(model), ctx, x0, tok, generator=torch.Generator().manual_seed(1))
    junk = diff.loss(Spy(model, junk=100.0), ctx, x0, tok, generator=torch.Generator().manual_seed(1))
    assert torch.equal(base, junk)  # whatever the network says at context frames does not count
    other = diff.loss(Spy(model), ctx, x0.flip(0), tok, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(base, other)  # the targets do
    spy = Spy(model)
    diff.loss(spy, ctx, x0, tok)
    x, t = spy.calls[0]
    assert torch.equal(x[:, :2], ctx) and (t[:, :2] == 0).all() and (t[:, 2:] > 0).all()  # clean context, t = 0


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_samplers_put_the_clean_context_back_at_every_step(eta):
    model, diff, cfg = make()
    ctx, _, tok = clip(cfg, B=1)
    spy = Spy(model)
    out = diff.sample(spy, ctx, tok, 3, generator=torch.Generator().manual_seed(0), eta=eta)
    assert out.shape == (1, 3, 3, cfg.size, cfg.size)
    assert len(spy.calls) == cfg.sample_steps
    for x, t in spy.calls:
        assert torch.equal(x[:, :2], ctx) and (t[:, :2] == 0).all()


def test_same_generator_same_sample_and_guidance_one_is_the_conditional_prediction():
    model, diff, cfg = make()
    ctx, x0, tok = clip(cfg, B=1)
    a = diff.sample(model, ctx, tok, 2, generator=torch.Generator().manual_seed(3))
    b = diff.sample(model, ctx, tok, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    x = torch.cat([ctx, x0], 1)
    tf = torch.tensor([[0, 0, 50, 50]])
    with torch.no_grad():
        plain = model(x, tf, tok, 2)[:, 2:]
        assert torch.allclose(diff.guided(model, x, tf, tok, 2, 1.0), plain, atol=1e-5)


def test_prediction_parameterisations_invert_the_forward_process():
    for p in ("eps", "v", "x0"):
        _, diff, cfg = make(micro_cfg(prediction=p))
        x0, eps = torch.randn(2, 2, 3, 4, 4), torch.randn(2, 2, 3, 4, 4)
        t = torch.tensor([10, 60])
        x_t = diff.q_sample(x0, t, eps)
        x0_hat, eps_hat = diff.x0_eps(x_t, t, diff.target(x0, t, eps))
        assert torch.allclose(x0_hat, x0, atol=1e-3) and torch.allclose(eps_hat, eps, atol=1e-3)


def test_a_few_hundred_steps_on_one_batch_cut_the_loss_tenfold():
    torch.manual_seed(0)
    cfg = micro_cfg()
    model, diff = sfvgen.VideoUNet(cfg), sfvgen.Diffusion(cfg)
    rng = np.random.default_rng(0)
    ctx, tok, tgt = data.sample_batch(rng, (0, 4), 4, cfg.world(), n_ctx=2)
    ctx, tgt, tok = sfvgen.to_model(ctx), sfvgen.to_model(tgt), torch.as_tensor(tok)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(250):
        loss = diff.loss(model, ctx, tgt, tok, generator=torch.Generator().manual_seed(0))  # same noise each step
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_flags_parse_and_unknown_or_bad_ones_fail(capsys):
    p = cli.config_parser("test")
    cfg = cli.config_from_args(p.parse_args(["--preset", "small", "--lora-rank", "16", "--mults", "1,2,2,2", "--fast-learning", "off"]))
    assert (cfg.size, cfg.lora_rank, cfg.mults, cfg.fast_learning) == (64, 16, (1, 2, 2, 2), False)
    # booleans: bare, negated, or an explicit value
    assert cli.config_from_args(p.parse_args(["--loop"])).loop is True
    assert cli.config_from_args(p.parse_args(["--loop", "--no-loop"])).loop is False
    assert cli.config_from_args(p.parse_args(["--loop", "on", "--bf16"])).bf16 is True
    with pytest.raises(SystemExit):
        p.parse_args(["--no-such-flag", "1"])
    with pytest.raises(ValueError, match="preset"):
        cli.config_from_args(p.parse_args(["--preset", "huge"]))
    for bad, msg in [(["--size", "30"], "halved"), (["--batch", "0"], "positive"), (["--prediction", "y"], "x0"),
                     (["--train-kinds", "random,zigzag"], "go-back")]:
        with pytest.raises(ValueError, match=msg):
            cli.config_from_args(p.parse_args(bad))
    with pytest.raises(SystemExit):
        p.parse_args(["--help"])
    helptext = capsys.readouterr().out
    assert all("--" + f.name.replace("_", "-") in helptext for f in fields(sfvgen.Config))


def test_attention_over_many_sequences_equals_the_formula():
    # more than 2^15 sequences go through in slices (a CUDA grid limit): the result must not depend on it
    torch.manual_seed(0)
    att = sfvgen.Attention(8, heads=2)
    torch.nn.init.normal_(att.to_out.weight)  # not the identity
    x = torch.randn(2 ** 15 + 3, 4, 8)  # (N, S, D): N pixel sequences of S frames
    with torch.no_grad():
        h = att.norm(x)
        q, k, v = (z.reshape(len(x), 4, 2, 4).transpose(1, 2) for z in (att.to_q(h), att.to_k(h), att.to_v(h)))
        w = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)  # sqrt(d) = 2 for d = 4 per head
        want = x + att.to_out((w @ v).transpose(1, 2).reshape(len(x), 4, 8))
        assert torch.allclose(att(x), want, atol=1e-5)
