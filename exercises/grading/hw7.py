"""hw7 (hidden): the video UNet's factorized blocks (ResBlock, AttnBlock) and classifier-free guidance
(Diffusion.guided)."""
import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from ..visible.common import close, micro_cfg, random_frames
from .models import Spy


def resblock(sf, c_in=16, c_out=16, E=12, seed=0):
    """A ResBlock with every layer random (the temporal conv too), in eval mode."""
    torch.manual_seed(seed)
    b = sf.ResBlock(c_in, c_out, E)
    with torch.no_grad():
        b.temporal_conv.weight.normal_(0, 0.3)
        b.temporal_conv.bias.normal_(0, 0.1)
    return b.eval()


def attnblock(sf, spatial=True, temporal=True, seed=0, dim=16):
    """An AttnBlock (micro config) with every output projection random (they start at zero)."""
    cfg = micro_cfg(sf)
    torch.manual_seed(seed)
    b = sf.AttnBlock(dim, cfg, spatial, temporal)
    with torch.no_grad():
        for n, p in b.named_parameters():
            if "to_out" in n:
                p.normal_(0, 0.5)
    return b.eval(), cfg


def inputs(B=2, N=4, C=16, S=6, E=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((B, N, C, S, S), generator=g), torch.randn((B, N, E), generator=g)


def text_and_pos(cfg, B=2, N=4, seed=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((B, 3, cfg.text_dim), generator=g), torch.arange(N) + 2 * cfg.chunk - 1


def bump(shape, seed=5):
    """A random change (a constant one would vanish in the blocks' GroupNorm / LayerNorm)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def changed(a, b, tol=1e-6):
    return (a - b).abs().max().item() > tol


def check_a_change_in_one_frame_reaches_only_the_neighbouring_frames(sf):
    """ResBlock: the spatial convs see one frame, the temporal conv (kernel 3) each pixel's neighbouring frames, so a
    change in frame 1 of clip 0 changes frames 0, 1 and 2 of clip 0, not frame 3, and nothing of clip 1."""
    b = resblock(sf)
    x, emb = inputs()
    with torch.no_grad():
        y = b(x, emb)
        x2 = x.clone()
        x2[0, 1] += bump(x2[0, 1].shape)
        y2 = b(x2, emb)
    assert changed(y2[0, 1], y[0, 1]), "a change in frame 1 did not reach frame 1"
    assert changed(y2[0, 0], y[0, 0]) and changed(y2[0, 2], y[0, 2]), \
        "a change in frame 1 did not reach frames 0 and 2: the temporal conv must mix each pixel with the same pixel " \
        "in the neighbouring frames"
    assert not changed(y2[0, 3], y[0, 3]), "a change in frame 1 reached frame 3: one temporal conv of kernel 3 " \
                                           "mixes neighbouring frames only"
    assert not changed(y2[1], y[1]), "a change in clip 0 reached clip 1: frames and clips got mixed in a rearrange"


def check_the_resblock_keeps_its_residual_paths(sf):
    """With the convs and the embedding at zero the block is its skip path: skip(x) (a 1x1 conv when the width
    changes, the identity otherwise); with only the temporal conv at zero it is a per-frame image block."""
    for c_in, c_out in ((16, 32), (16, 16)):
        b = resblock(sf, c_in, c_out)
        x, emb = inputs(C=c_in)
        with torch.no_grad():
            for layer in (b.conv1, b.conv2, b.temporal_conv, b.emb):
                layer.weight.zero_()
                layer.bias.zero_()
            want = sf.per_frame(b.skip, x)
            close(b(x, emb), want, 1e-5, f"ResBlock({c_in}, {c_out}) with zero convs: the residual (skip) path")
    b = resblock(sf)
    x, emb = inputs()
    with torch.no_grad():
        y = b(x, emb)
        b.temporal_conv.weight.zero_()
        b.temporal_conv.bias.zero_()
        y0 = b(x, emb)
        x2 = x.clone()
        x2[:, 1] += bump(x2[:, 1].shape)
        y2 = b(x2, emb)
    assert changed(y, y0), "the temporal conv does not change the output"
    close(y2[:, [0, 2, 3]], y0[:, [0, 2, 3]], 1e-5, "frames 0, 2, 3 after a change in frame 1, the temporal conv at "
          "zero (the temporal conv is a residual added to the image block)")


def check_each_frame_gets_its_own_embedding(sf):
    """The per-frame embedding (noise level + frame offset) of frame n reaches frame n: with the temporal conv at zero,
    a change in frame 1's embedding changes frame 1 only."""
    b = resblock(sf)
    x, emb = inputs()
    with torch.no_grad():
        b.temporal_conv.weight.zero_()
        b.temporal_conv.bias.zero_()
        y = b(x, emb)
        e2 = emb.clone()
        e2[:, 1] += bump(e2[:, 1].shape)
        y2 = b(x, e2)
    assert changed(y2[:, 1], y[:, 1]), "frame 1's embedding does not reach frame 1"
    close(y2[:, [0, 2, 3]], y[:, [0, 2, 3]], 1e-5, "the other frames after a change in frame 1's embedding")


def check_the_resblock_is_the_factorized_block(sf):
    """ResBlock(x, emb) = h + TemporalConv(h) per pixel over frames, with h = skip(x) + conv2(silu(norm2(conv1(silu(
    norm1(x))) + emb))) per frame (pre-activation: each conv after its norm and SiLU)."""
    b = resblock(sf, 16, 32)
    x, emb = inputs()
    B, N = x.shape[:2]
    with torch.no_grad():
        f = rearrange(x, "b n c h w -> (b n) c h w")
        h = b.conv1(F.silu(b.norm1(f))) + rearrange(b.emb(emb), "b n c -> (b n) c 1 1")
        h = b.skip(f) + b.conv2(F.silu(b.norm2(h)))
        H, W = h.shape[-2:]
        z = rearrange(b.temporal_norm(h), "(b n) c h w -> (b h w) c n", b=B)
        h = h + rearrange(b.temporal_conv(F.silu(z)), "(b h w) c n -> (b n) c h w", b=B, h=H, w=W)
        want = rearrange(h, "(b n) c h w -> b n c h w", b=B)
        close(b(x, emb), want, 1e-5, "ResBlock against the factorized block (spatial per frame, then temporal per pixel)")


def check_cross_attention_reads_each_clips_action(sf):
    """The action reaches the block through cross-attention: another text changes the output, clip by clip (clip 1's
    text does not reach clip 0)."""
    b, cfg = attnblock(sf)
    x, _ = inputs()
    text, pos = text_and_pos(cfg)
    with torch.no_grad():
        y = b(x, text, pos)
        t2 = text.clone()
        t2[1] += bump(t2[1].shape)
        y2 = b(x, t2, pos)
    assert changed(y2[1], y[1]), "another action text did not change the output: cross-attention must attend to the text"
    assert not changed(y2[0], y[0]), "clip 1's text reached clip 0: every frame attends to its own clip's text"


def poke(b, cfg):
    """The attention block's output before and after a bump at pixel (2, 3) of clip 0, frame 1."""
    x, _ = inputs()
    text, pos = text_and_pos(cfg)
    with torch.no_grad():
        x2 = x.clone()
        x2[0, 1, :, 2, 3] += bump(x2[0, 1, :, 2, 3].shape)
        return b(x, text, pos), b(x2, text, pos)


def check_spatial_attention_stays_within_its_frame(sf):
    """Spatial self-attention mixes the pixels of one frame: with no temporal attention, a change at one pixel of frame
    1 reaches other pixels of frame 1 and no other frame or clip."""
    b, cfg = attnblock(sf, spatial=True, temporal=False)
    y, y2 = poke(b, cfg)
    assert changed(y2[0, 1, :, 4, 0], y[0, 1, :, 4, 0]), "a change at one pixel did not reach the frame's other pixels: " \
                                                         "spatial self-attention"
    assert not changed(y2[0, [0, 2, 3]], y[0, [0, 2, 3]]) and not changed(y2[1], y[1]), \
        "spatial attention reached other frames or clips: it attends within one frame"


def check_temporal_attention_stays_at_its_pixel(sf):
    """Temporal attention mixes the frames at one pixel: with no spatial attention, a change at pixel (2, 3) of frame 1
    reaches pixel (2, 3) of the other frames and no other pixel, nor the other clip."""
    b, cfg = attnblock(sf, spatial=False, temporal=True)
    y, y2 = poke(b, cfg)
    assert changed(y2[0, 3, :, 2, 3], y[0, 3, :, 2, 3]), \
        "a change in frame 1 did not reach frame 3 at the same pixel: temporal attention attends over the frames"
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[2, 3] = False
    assert not changed(y2[0][..., mask], y[0][..., mask]), \
        "a change at one pixel reached other pixels: temporal attention attends over frames at each pixel"
    assert not changed(y2[1], y[1]), "a change in clip 0 reached clip 1: frames and clips got mixed in a rearrange"


def check_temporal_attention_knows_where_each_frame_is(sf):
    """Temporal attention adds the frame positions (frame_pos of pos_ids) to its queries and keys: swapping two frames of
    the input does not just swap them in the output."""
    b, cfg = attnblock(sf, spatial=False, temporal=True)
    x, _ = inputs()
    text, pos = text_and_pos(cfg)
    perm = torch.tensor([0, 2, 1, 3])
    with torch.no_grad():
        y = b(x, text, pos)
        yp = b(x[:, perm], text, pos)
    assert changed(yp, y[:, perm], 1e-4), "temporal attention is blind to frame order: add the frame positions"


def check_the_attention_block_is_spatial_then_cross_then_temporal(sf):
    """AttnBlock = temporal(cross(spatial(x), text), pos) in that order: spatial self-attention over each frame's pixels,
    cross-attention of every pixel to its clip's text, temporal attention over the frames at each pixel."""
    b, cfg = attnblock(sf)
    x, _ = inputs()
    text, pos = text_and_pos(cfg)
    B, N, C, H, W = x.shape
    with torch.no_grad():
        s = b.spatial(rearrange(x, "b n c h w -> (b n) (h w) c"))
        s = b.cross(s, context=repeat(text, "b l d -> (b n) l d", n=N))
        z = b.temporal(rearrange(s, "(b n) (h w) c -> (b h w) n c", b=B, h=H), pos=b.frame_pos(pos))
        close(b(x, text, pos), rearrange(z, "(b h w) n c -> b n c h w", b=B, h=H), 1e-5,
              "AttnBlock against spatial, then cross, then temporal attention")


def two_minds(sf, f_p):
    """A network that predicts A on the target frames for an action and B for the null action."""
    null = sf.null_tokens(1, "cpu")
    g = torch.Generator().manual_seed(3)
    A, B = torch.randn((1, 2, 3, 16, 16), generator=g), torch.randn((1, 2, 3, 16, 16), generator=g)

    def out(x, tok):
        is_null = (tok == null).all(-1).reshape(-1, 1, 1, 1, 1)
        return torch.cat([x[:, :f_p] * 0 + 5.0, torch.where(is_null, B, A).expand(x.shape[0], -1, -1, -1, -1)], 1)

    return out, A, B


def check_guidance_is_the_null_prediction_plus_g_times_the_difference(sf):
    """guided(...) = pred(null) + g (pred(a) - pred(null)) on the f_g target frames: g = 1 the conditional prediction,
    g = 0 the unconditional one (the null action), g = 2.5 past the conditional one, away from the unconditional."""
    cfg = micro_cfg(sf)
    d = sf.Diffusion(cfg)
    out, A, B = two_minds(sf, 1)
    clip, t = random_frames(cfg, 3), torch.tensor([[0, 60, 60]])
    tokens = sf.action_tokens(["go up"], "cpu")
    for g, what in ((1.0, "the conditional prediction"), (0.0, "the unconditional prediction (the null action)"),
                    (2.5, "null + 2.5 (cond - null)")):
        got = d.guided(Spy(out), clip, t, tokens, 1, g).detach()
        assert got.shape == (1, 2, 3, cfg.size, cfg.size), f"guided returned shape {tuple(got.shape)}: the target frames only"
        close(got, B + g * (A - B), 1e-5, f"guidance {g}: expected {what}")


def check_both_branches_see_the_same_clip_and_noise_levels(sf):
    """The conditional and the unconditional prediction are taken on the same clip, noise levels and n_ctx; one with
    the clip's action, the other with the null action."""
    cfg = micro_cfg(sf)
    d = sf.Diffusion(cfg)
    out, _, _ = two_minds(sf, 2)
    spy = Spy(out)
    clip, t = random_frames(cfg, 4, B=2), torch.tensor([[0, 0, 60, 60]] * 2)
    tokens = sf.action_tokens(["go up", "go left"], "cpu")
    d.guided(spy, clip, t, tokens, 2, 3.0)
    rows = [(c["x"][i], c["t"][i], c["tokens"][i], c["n_ctx"]) for c in spy.calls for i in range(len(c["x"]))]
    null = sf.null_tokens(1, "cpu")[0]
    for b in range(2):
        for want, name in ((tokens[b], "its action"), (null, "the null action")):
            ok = any(torch.equal(x, clip[b]) and torch.equal(tt, t[b]) and torch.equal(tok, want) and n == 2
                     for x, tt, tok, n in rows)
            assert ok, f"clip {b}: no prediction on the clip (same noise levels, n_ctx) with {name}"


CHECKS = [check_a_change_in_one_frame_reaches_only_the_neighbouring_frames, check_the_resblock_keeps_its_residual_paths,
          check_each_frame_gets_its_own_embedding, check_the_resblock_is_the_factorized_block,
          check_cross_attention_reads_each_clips_action, check_spatial_attention_stays_within_its_frame,
          check_temporal_attention_stays_at_its_pixel, check_temporal_attention_knows_where_each_frame_is,
          check_the_attention_block_is_spatial_then_cross_then_temporal,
          check_guidance_is_the_null_prediction_plus_g_times_the_difference,
          check_both_branches_see_the_same_clip_and_noise_levels]
