"""hw7 (visible): the UNet's blocks keep their shapes, a fresh block mixes no frames, and guidance 1 is the plain
conditional prediction."""
import torch

from .common import close, micro_cfg, micro_model, random_frames, wake


def check_the_blocks_keep_the_clip_layout(sf):
    """ResBlock: (B, N, C_in, H, W) -> (B, N, C_out, H, W); AttnBlock: (B, N, C, H, W) -> the same shape; the UNet
    returns one prediction per frame."""
    cfg = micro_cfg(sf)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6, 6)
    res = sf.ResBlock(8, 16, 12)
    y = res(x, torch.randn(2, 3, 12))
    assert y.shape == (2, 3, 16, 6, 6), f"ResBlock output {tuple(y.shape)}, expected (2, 3, 16, 6, 6)"
    attn = sf.AttnBlock(8, cfg, True, True)
    text = torch.randn(2, 3, cfg.text_dim)
    z = attn(x, text, torch.arange(3) + 2 * cfg.chunk - 1)
    assert z.shape == x.shape, f"AttnBlock output {tuple(z.shape)}, expected {tuple(x.shape)}"
    model = micro_model(sf, cfg)
    out = model(random_frames(cfg, 3), torch.tensor([[0, 40, 40]]), sf.action_tokens(["go up"], "cpu"), 1)
    assert out.shape == (1, 3, 3, cfg.size, cfg.size), f"VideoUNet output {tuple(out.shape)}"


def check_a_fresh_resblock_mixes_no_frames(sf):
    """The temporal conv starts at zero, so a fresh ResBlock is an image block: a change in frame 1 changes frame 1 of
    the output and no other frame."""
    torch.manual_seed(0)
    res = sf.ResBlock(8, 8, 12)
    x, emb = torch.randn(1, 3, 8, 6, 6), torch.randn(1, 3, 12)
    y = res(x, emb)
    x2 = x.clone()
    x2[:, 1] += torch.randn(x2[:, 1].shape, generator=torch.Generator().manual_seed(5))
    y2 = res(x2, emb)
    assert not torch.allclose(y2[:, 1], y[:, 1]), "a change in frame 1 did not reach frame 1 of the output"
    close(y2[:, [0, 2]], y[:, [0, 2]], 1e-6, "frames 0 and 2 of a fresh ResBlock after a change in frame 1")


def check_guidance_1_is_the_conditional_prediction(sf):
    """guided(model, clip, t, tokens, f_p, 1.0) returns the model's conditional prediction of the f_g target frames."""
    cfg = micro_cfg(sf)
    model, d = wake(micro_model(sf, cfg), 0.3), sf.Diffusion(cfg)
    clip, t = random_frames(cfg, 3), torch.tensor([[0, 60, 60]])
    tokens = sf.action_tokens(["go left"], "cpu")
    with torch.no_grad():
        got = d.guided(model, clip, t, tokens, 1, 1.0)
        want = model(clip, t, tokens, 1)[:, 1:]
    close(got, want, 1e-5, "guided(..., g = 1)")


CHECKS = [check_the_blocks_keep_the_clip_layout, check_a_fresh_resblock_mixes_no_frames,
          check_guidance_1_is_the_conditional_prediction]
