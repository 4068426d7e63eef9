"""sfvgen: SlowFast-VGen (Hong et al., ICLR 2025) in one file: the model and the method.

Read it top to bottom; each part names the paper's equation or pseudocode line it implements:
- Config: one dataclass (model, world, diffusion, fast learning, training, the loop) and its presets.
- VideoUNet: a compact from-scratch video UNet (spatial conv + temporal conv per block, temporal attention,
  spatial self-attention at low resolution, action-text cross-attention).
- Diffusion: masked conditional video diffusion (slow learning): clean context frames joined with noisy
  target frames along time, loss on the target frames only; a DDIM / DDPM sampler that puts the clean
  context back at every step; classifier-free guidance on the action.
- LoRA: the hand-written low-rank adapter that holds the fast weights Theta.
- Fast learning (Algorithm 1a): `generate_long`, the chunk-by-chunk loop that trains a TEMP-LoRA on every
  generated chunk, storing episodic memory in its weights.
- The slow-fast learning loop (Algorithm 1b): `slow_fast_iteration`, one outer iteration with its inner loops.
- Checkpoints: atomic writes, weights_only loads, self-describing.

Tensor-shape legend: B batch, N frames, C channels, H W height width, D hidden width, L text tokens,
K frames per chunk, f_p context frames, f_g target frames (N = f_p + f_g); einops writes the frame axis n.
Noise: t is a noise level in 0..T (T = cfg.timesteps; t = 0 is a clean frame).
Frames are uint8 (..., H, W, 3) outside the model and float in [-1, 1] with layout (B, N, C, H, W)
inside; `to_model` and `to_frames` are the one conversion each way.
"""
import copy
import math
import os
import pickle
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange, repeat

import data
import video


# ============================================================================= config
@dataclass
class Config:
    # --- model
    preset: str = "tiny"               # named preset the other fields start from (tiny, small, gpu)
    channels: int = 32                 # base width of the UNet
    mults: tuple = (1, 2, 3)           # width multipliers per level; each level after the first halves H, W
    attn_levels: tuple = (1, 2)        # levels with spatial self-attention (0 = full resolution)
    temporal_attn_levels: tuple = (1, 2)  # levels with temporal attention over frames at each pixel
    heads: int = 4                     # attention heads
    text_dim: int = 64                 # D of the action-text encoder (stands in for the paper's frozen CLIP)
    cond_last_frame: bool = True       # feed the last context frame to every frame as 3 extra input channels
    warp_output: bool = False          # x0 = g warp(last context frame, flow) + (1 - g) x0: the net also
                                       # predicts a flow and a gate per pixel (ours; needs --prediction x0)
    latent_channels: int = 0           # C of the frozen frame autoencoder's latents; 0: the UNet sees pixels
    ae_width: int = 64                 # hidden width of the frame autoencoder (latent models only)
    # --- world (data.py)
    size: int = 32                     # H = W of a frame
    canvas: int = 256                  # side of the world's toroidal canvas
    speed: int = 4                     # camera pixels per frame
    chunk: int = 4                     # K: frames per chunk (one action per chunk)
    dynamics: bool = False             # bouncing ball and blinking light in the world
    train_seeds: tuple = (0, 100_000)  # world seeds for training [lo, hi)
    val_seeds: tuple = (100_000, 100_100)  # world seeds for validation
    test_seeds: tuple = (200_000, 200_100)  # world seeds for held-out tests and evaluation
    # --- diffusion
    timesteps: int = 1000              # discrete noise levels; t = 0 is a clean (context) frame
    prediction: str = "x0"             # what the network predicts: x0, v or eps (the paper); see README
    p_uncond: float = 0.1              # probability of dropping the action in training (for classifier-free
                                       # guidance)
    guidance: float = 1.0              # guidance scale at sampling (1 = plain conditional prediction)
    sample_steps: int = 20             # denoising steps at sampling
    eta: float = 0.0                   # 0 = DDIM (deterministic), 1 = DDPM-like ancestral sampling
    # --- LoRA and fast learning (TEMP-LoRA)
    fast_learning: bool = True         # train the TEMP-LoRA after every generated chunk (Algorithm 1a)
    lora_rank: int = 8                 # r of the LoRA
    lora_alpha: float = 8.0            # LoRA scale is alpha / r
    lora_targets: str = "temporal"     # which layers carry the LoRA: temporal, attn or all
    fast_steps: int = 2                # Adam steps on the fast loss per chunk (the largest update within +25%
                                       # time, docs/results.md)
    fast_lr: float = 1e-3              # fast learning rate
    fast_draws: int = 1                # noise draws of the window per fast step, in one batch
    # --- training (slow learning)
    batch: int = 8                     # clips per step (tiny on a CPU: peak RSS 1.7 GB; batch 16: 2.75 GB)
    lr: float = 1e-3                   # peak AdamW learning rate
    warmup: int = 200                  # linear warmup steps
    max_steps: int = 3000              # training steps
    max_minutes: float = 0.0           # also stop (with a checkpoint) after this many minutes; 0 = no limit
    snapshot_every: int = 0            # keep a half-precision EMA snapshot every N steps (0 = off)
    weight_decay: float = 0.0          # AdamW weight decay
    grad_clip: float = 1.0             # gradient norm clip
    ema_decay: float = 0.999           # EMA of the weights (used for sampling)
    log_every: int = 50                # steps between log lines
    eval_every: int = 500              # steps between validation loss + sample GIF
    ckpt_every: int = 500              # steps between checkpoints
    seed: int = 0                      # seeds python, numpy and torch
    device: str = "auto"               # auto (cuda, then mps, then cpu), cuda, mps or cpu
    bf16: bool = False                 # bf16 autocast (CUDA only)
    compile: bool = False              # torch.compile the UNet (CUDA only)
    threads: int = 0                   # CPU threads for torch (0 = torch's default)
    out: str = "runs/tiny"             # output folder of training
    resume: bool = False               # continue from out/ckpt.pt
    init: str = ""                     # start the weights from this checkpoint's EMA (fine-tuning, the loop)
    train_kinds: str = "random"        # trajectory kinds of slow learning's clips (data.KINDS), drawn evenly
    stage: str = "diffusion"           # what train.py trains: diffusion (slow learning, the loop) or
                                       # autoencoder (a latent model's, first)
    autoencoder: str = ""              # a latent model's frame autoencoder: the checkpoint of train.py
                                       # --stage autoencoder
    data: str = ""                     # train on a folder of videos with annotations.jsonl
                                       # (video.load_folder); empty: the built-in world
    # --- the slow-fast learning loop (Algorithm 1b; train.py --loop)
    loop: bool = False                 # train the slow weights with each episode's TEMP-LoRA plugged in
    loop_episodes: int = 4             # episodes per outer iteration (one slow optimizer step)
    loop_out_chunks: int = 4           # chunks of each episode's outward leg (the episode has twice as many)
    loop_kinds: str = "out-and-back,go-back"  # the episodes' trajectory kinds, taken in turn (data.KINDS)

    def world(self):
        """The data.py WorldSpec these fields describe."""
        return data.WorldSpec(size=self.size, canvas=self.canvas, speed=self.speed, chunk=self.chunk,
                              dynamics=self.dynamics)


PRESETS = {
    "tiny": {},  # 2-core CPU, 32x32, the demo
    "small": dict(size=64, canvas=512, speed=8, channels=48, mults=(1, 2, 2, 3), attn_levels=(2, 3),
                  temporal_attn_levels=(1, 2, 3), out="runs/small"),
    "gpu": dict(size=64, canvas=512, speed=8, channels=96, mults=(1, 2, 3, 4), attn_levels=(2, 3),
                temporal_attn_levels=(1, 2, 3), batch=64, max_steps=50_000, bf16=True, out="runs/gpu"),
    # the tiny world on 8x8x8 latents of a frame autoencoder, as the paper works on its VAE's latents (a CPU)
    "tiny-latent": dict(latent_channels=8, attn_levels=(0, 1, 2), temporal_attn_levels=(0, 1, 2), batch=16,
                        out="runs/tiny-latent"),
    # what a laptop trains in an hour (make train-cpu): the tiny world on 16x8x8 latents, and the carry-
    # forward output, so what was in view stays in view (docs/world-model.md)
    "laptop": dict(latent_channels=16, warp_output=True, attn_levels=(0, 1, 2),
                   temporal_attn_levels=(0, 1, 2), batch=16, out="runs/laptop"),
}


def preset(name, **overrides):
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {list(PRESETS)}")
    return Config(**{**PRESETS[name], "preset": name, **overrides})


# ============================================================================= frames <-> model tensors
def per_frame(f, x):
    """A 2D layer (or the autoencoder's encode / decode) on every frame: (B, N, C, H, W) -> (B, N, C', H', W')
    (einops folds the frames into the batch and back)."""
    return rearrange(f(rearrange(x, "b n c h w -> (b n) c h w")), "(b n) c h w -> b n c h w", b=x.shape[0])


def to_model(frames, device=None, autoencoder=None):
    """uint8 (B, N, H, W, 3) -> float (B, N, 3, H, W) in [-1, 1]: x = frames / 127.5 - 1.
    A latent model passes its frozen autoencoder: then the result is the latents (B, N, C, H/4, W/4) of x."""
    x = torch.as_tensor(np.ascontiguousarray(frames), device=device)
    x = rearrange(x, "b n h w c -> b n c h w").float() / 127.5 - 1.0
    if autoencoder is None:
        return x
    with torch.no_grad():
        return per_frame(autoencoder.encode, x)


def to_frames(x, autoencoder=None):
    """float (B, N, 3, H, W) in [-1, 1] -> uint8 (B, N, H, W, 3) numpy; latents (B, N, C, h, w) go through
    the autoencoder's decoder first."""
    if autoencoder is not None:
        with torch.no_grad():
            x = per_frame(autoencoder.decode, x.float())
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(x, "b n c h w -> b n h w c").cpu().numpy()


# ============================================================================= the frame autoencoder
class Residual(nn.Module):
    """x + conv(silu(conv(silu(x)))): two 3x3 convs with no normalisation (the frame autoencoder's block)."""

    def __init__(self, D):
        super().__init__()
        self.f = nn.Sequential(nn.SiLU(), nn.Conv2d(D, D, 3, padding=1),
                               nn.SiLU(), nn.Conv2d(D, D, 3, padding=1))

    def forward(self, x):
        return x + self.f(x)


class FrameAutoencoder(nn.Module):
    """A per-frame autoencoder, frames (M, 3, H, W) in [-1, 1] <-> latents (M, C, H/4, W/4). It stands in for
    the paper's frozen per-frame VAE (ModelScope's Stable Diffusion VAE): trained first (train.py --stage
    autoencoder, plain MSE: nothing samples from a prior, so no KL term; our choice), then frozen. A latent
    model (cfg.latent_channels = C > 0) learns, samples and fast-learns on its latents and decodes only to
    show frames.

    Encoder: a 4x4 conv of stride 4 ("patchify") and 1x1 convs, so each latent pixel encodes one 4x4 patch
    and a 4-px camera move (one frame at the tiny world's speed) is exactly a one-pixel shift of the latents:
    the UNet predicts motion as a shift (an encoder with 3x3 convs and GroupNorm reconstructs worse and is not
    shift-equivariant; measured, docs/latent.md). Decoder: residual 3x3 convs (no normalisation), a 1x1 conv
    to the 4 x 4 x 3 values of each patch, pixel shuffle, and a 3x3 refinement at full size. Latents are
    normalised per channel, z = (E(x) - mean) / std, with statistics of training frames (buffers)."""

    def __init__(self, C, D=64, blocks=2):
        super().__init__()
        # each latent pixel sees its own 4x4 patch only (1x1 convs after the patchify): a 4-px move of the
        # view shifts the latents by exactly one pixel, borders included (the view centre's marker aside)
        self.encoder = nn.Sequential(nn.Conv2d(3, D, 4, stride=4), nn.SiLU(), nn.Conv2d(D, D, 1), nn.SiLU(),
                                     nn.Conv2d(D, D, 1), nn.SiLU(), nn.Conv2d(D, C, 1))
        self.decoder = nn.Sequential(nn.Conv2d(C, D, 3, padding=1), *[Residual(D) for _ in range(blocks)],
                                     nn.SiLU(), nn.Conv2d(D, 3 * 4 * 4, 1), nn.PixelShuffle(4))
        self.refine = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 3, 3, padding=1))
        self.register_buffer("mean", torch.zeros(C))  # per-channel latent statistics (set_statistics)
        self.register_buffer("std", torch.ones(C))

    def encode(self, x):
        """(M, 3, H, W) in [-1, 1] -> normalised latents (M, C, H/4, W/4): z = (E(x) - mean) / std."""
        return (self.encoder(x) - self.mean[:, None, None]) / self.std[:, None, None]

    def decode(self, z):
        """(M, C, h, w) -> (M, 3, 4h, 4w), about [-1, 1]: x = D(z std + mean), a coarse image + refinement."""
        x = self.decoder(z * self.std[:, None, None] + self.mean[:, None, None])
        return x + self.refine(x)

    @torch.no_grad()
    def set_statistics(self, x):
        """mean and std per latent channel over frames x (M, 3, H, W): the UNet sees latents of unit scale."""
        z = self.encoder(x)
        self.mean.copy_(z.mean((0, 2, 3)))
        self.std.copy_(z.std((0, 2, 3)))


# ============================================================================= the video UNet
def sinusoidal(x, dim):
    """(N,) float -> (N, dim): [sin(x w_k), cos(x w_k)], w_k = 10000^(-k / (dim/2)), as in transformers."""
    w = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, device=x.device) / (dim // 2))
    a = x.float()[:, None] * w[None]
    return torch.cat([a.sin(), a.cos()], dim=-1)


class Attention(nn.Module):
    """Pre-norm multi-head attention with a residual: x + W_o softmax(q k^T / sqrt(d)) v.
    Self-attention when `context` is None, cross-attention (to the action text) otherwise."""

    def __init__(self, dim, heads, context_dim=None):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim or dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)  # the block starts as the identity
        nn.init.zeros_(self.to_out.bias)

    def forward(self, x, context=None, pos=None):
        # x: (N, S, D) tokens; context: (N, L, Dc) or None; pos: (S, D) added to queries and keys
        h = self.norm(x)
        c = h if context is None else context
        q, k = self.to_q(h if pos is None else h + pos), self.to_k(c if pos is None else c + pos)
        q, k, v = (rearrange(z, "n s (h d) -> n h s d", h=self.heads) for z in (q, k, self.to_v(c)))
        # softmax(q k^T / sqrt(d)) v; the fused CUDA kernels put the sequences on a grid axis that stops at
        # 65,535, and temporal attention has B H W of them (65,536 for the gpu preset): slices of at most 2^15
        n = 2 ** 15
        o = torch.cat([F.scaled_dot_product_attention(*z) for z in zip(q.split(n), k.split(n), v.split(n))])
        return x + self.to_out(rearrange(o, "n h s d -> n s (h d)"))


class ResBlock(nn.Module):
    """Spatial conv (frames folded into the batch), then a temporal conv over frames at each pixel.
    The per-frame embedding (noise level + frame offset) is added between the two spatial convs."""

    def __init__(self, c_in, c_out, emb_dim):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.temporal_norm = nn.GroupNorm(8, c_out)
        self.temporal_conv = nn.Conv1d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.temporal_conv.weight)  # starts as an image block; temporal mixing is learned
        nn.init.zeros_(self.temporal_conv.bias)

    def forward(self, x, emb):
        # x: (B, N, C, H, W); emb: (B, N, E)
        # BEGIN SOLUTION hw7 hint: spatial convs per frame, then a temporal conv per pixel (exercises/hw7.md)
        B, N = x.shape[:2]
        x = rearrange(x, "b n c h w -> (b n) c h w")
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + rearrange(self.emb(emb), "b n c -> (b n) c 1 1")
        h = self.skip(x) + self.conv2(F.silu(self.norm2(h)))
        H, W = h.shape[-2:]
        z = rearrange(self.temporal_norm(h), "(b n) c h w -> (b h w) c n", b=B)
        h = h + rearrange(self.temporal_conv(F.silu(z)), "(b h w) c n -> (b n) c h w", b=B, h=H, w=W)
        return rearrange(h, "(b n) c h w -> b n c h w", b=B)
        # END SOLUTION


class AttnBlock(nn.Module):
    """Spatial self-attention (optional), action-text cross-attention, temporal attention (optional)."""

    def __init__(self, dim, cfg, spatial, temporal):
        super().__init__()
        self.spatial = Attention(dim, cfg.heads) if spatial else None
        self.cross = Attention(dim, cfg.heads, context_dim=cfg.text_dim)
        self.temporal = Attention(dim, cfg.heads) if temporal else None
        if temporal:  # temporal attention's position: the frame offset -2K..+2K to the last context frame
            self.frame_pos = nn.Embedding(4 * cfg.chunk + 1, dim)

    def forward(self, x, text, pos_ids):
        # x: (B, N, C, H, W); text: (B, L, D); pos_ids: (N,) frame offset to the last context frame, >= 0
        # BEGIN SOLUTION hw7 hint: spatial, cross and temporal attention (exercises/hw7.md)
        B, N, C, H, W = x.shape
        s = rearrange(x, "b n c h w -> (b n) (h w) c")
        if self.spatial is not None:
            s = self.spatial(s)
        s = self.cross(s, context=repeat(text, "b l d -> (b n) l d", n=N))
        if self.temporal is None:
            return rearrange(s, "(b n) (h w) c -> b n c h w", b=B, h=H)
        z = rearrange(s, "(b n) (h w) c -> (b h w) n c", b=B, h=H)
        z = self.temporal(z, pos=self.frame_pos(pos_ids))
        return rearrange(z, "(b h w) n c -> b n c h w", b=B, h=H)
        # END SOLUTION


class TextEncoder(nn.Module):
    """Action word ids (B, L) -> (B, L, D). A small learned encoder stands in for the paper's frozen CLIP
    text encoder (our vocabulary has 8 words): word + position embeddings and one self-attention layer."""

    def __init__(self, dim, heads):
        super().__init__()
        self.word = nn.Embedding(len(data.VOCAB), dim)
        self.pos = nn.Parameter(torch.randn(data.MAX_WORDS, dim) * 0.02)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(),
                                 nn.Linear(2 * dim, dim))

    def forward(self, tokens):
        h = self.attn(self.word(tokens) + self.pos)
        return h + self.mlp(h)


class VideoUNet(nn.Module):
    """eps/v/x0 prediction for a clip of f_p clean context frames joined with f_g noisy target frames.

    forward(x, t, tokens, n_ctx): x (B, N, 3, H, W); t (B, N) long noise levels, 0 for clean context frames
    (our choice: the paper does not say how the network tells context from targets); tokens (B, L);
    n_ctx = f_p. Returns (B, N, 3, H, W). A latent model (cfg.latent_channels = C > 0) takes and returns
    latents (B, N, C, H/4, W/4) and holds its frozen FrameAutoencoder as `autoencoder` (None for pixels).
    """

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        ch = [cfg.channels * m for m in cfg.mults]
        E = 4 * cfg.channels
        self.time_mlp = nn.Sequential(nn.Linear(cfg.channels, E), nn.SiLU(), nn.Linear(E, E))
        self.offset_emb = nn.Embedding(4 * cfg.chunk + 1, E)  # offset -2K..+2K to the last context frame
        self.text = TextEncoder(cfg.text_dim, cfg.heads)
        C = cfg.latent_channels or 3  # what a frame is to the UNet: latent channels, or RGB
        self.inp = nn.Conv2d(2 * C if cfg.cond_last_frame else C, ch[0], 3, padding=1)
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        c_prev, skips = ch[0], []
        for lv, c in enumerate(ch):
            attn = AttnBlock(c, cfg, lv in cfg.attn_levels, lv in cfg.temporal_attn_levels)
            last = lv == len(ch) - 1
            down = nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1)
            self.down.append(nn.ModuleList([ResBlock(c_prev, c, E), attn, down]))
            skips.append(c)
            c_prev = c
        self.mid1 = ResBlock(c_prev, c_prev, E)  # the middle, built in this order (the seed's draws follow)
        self.mid_attn = AttnBlock(c_prev, cfg, True, True)
        self.mid2 = ResBlock(c_prev, c_prev, E)
        for lv, c in reversed(list(enumerate(ch))):
            attn = AttnBlock(c, cfg, lv in cfg.attn_levels, lv in cfg.temporal_attn_levels)
            up = nn.Identity() if lv == 0 else nn.Conv2d(c, ch[lv - 1], 3, padding=1)
            self.up.append(nn.ModuleList([ResBlock(c_prev + skips[lv], c, E), attn, up]))
            c_prev = c if lv == 0 else ch[lv - 1]
        # the output: C channels of prediction; with warp_output also a flow (2) and a gate (1) per pixel
        out = C + 3 * cfg.warp_output
        self.out = nn.Sequential(nn.GroupNorm(8, ch[0]), nn.SiLU(), nn.Conv2d(ch[0], out, 3, padding=1))
        self.autoencoder = None
        if cfg.latent_channels:  # frozen: trained first (train.py --stage autoencoder), stored with the UNet
            self.autoencoder = FrameAutoencoder(cfg.latent_channels, cfg.ae_width).requires_grad_(False)

    def frame_positions(self, N, n_ctx, device):
        """(N,) index of each frame's offset to the last context frame (0; targets 1..f_g; context <= 0),
        shifted to >= 0. Context frames 2K or more frames back all take index 0, "from memory" (ours)."""
        K = self.cfg.chunk
        return (torch.arange(N, device=device) - (n_ctx - 1)).clamp(min=-2 * K) + 2 * K

    def forward(self, x, t, tokens, n_ctx):
        B, N = x.shape[:2]
        K = self.cfg.chunk
        if N - n_ctx > 2 * K:  # the offset tables hold offsets -2K .. +2K: 4K + 1 entries
            raise ValueError(f"at most 2K = {2 * K} target frames per clip, got {N - n_ctx}")
        pos_ids = self.frame_positions(N, n_ctx, x.device)  # (N,)
        emb = self.time_mlp(sinusoidal(t.flatten() * (1000.0 / self.cfg.timesteps), self.cfg.channels))
        emb = rearrange(emb, "(b n) e -> b n e", b=B) + self.offset_emb(pos_ids)  # (B, N, E)
        text = self.text(tokens)  # (B, L, D)
        x_in = x
        if self.cfg.cond_last_frame:  # every frame also sees the last clean context frame (our choice)
            last = x[:, n_ctx - 1] if n_ctx > 0 else torch.zeros_like(x[:, 0])  # no context: zeros
            x = torch.cat([x, repeat(last, "b c h w -> b n c h w", n=N)], dim=2)
        h = per_frame(self.inp, x)
        hs = []
        for res, attn, down in self.down:
            h = attn(res(h, emb), text, pos_ids)
            hs.append(h)
            h = per_frame(down, h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb), text, pos_ids), emb)
        for res, attn, up in self.up:
            h = attn(res(torch.cat([h, hs.pop()], dim=2), emb), text, pos_ids)
            if not isinstance(up, nn.Identity):
                h = per_frame(lambda z: up(F.interpolate(z, scale_factor=2, mode="nearest")), h)
        out = per_frame(self.out, h)
        if not self.cfg.warp_output:
            return out
        pred, flow, gate = out[:, :, :-3], out[:, :, -3:-1], torch.sigmoid(out[:, :, -1:])
        return pred if n_ctx == 0 else gate * carry_forward(x_in[:, n_ctx - 1], flow) + (1 - gate) * pred


def carry_forward(last, flow):
    """The last context frame (B, C, H, W) moved by a flow (B, N, 2, H, W) to each frame of the clip:
    (B, N, C, H, W), frame[y, x] = last[y + f_y, x + f_x] (bilinear; exact at whole-pixel flows, edges held).
    The flow is predicted in units of a quarter view (our choice): a move of a few pixels is a small output.
    With warp_output the network's x0 is  g carry_forward(last, flow) + (1 - g) x0_pred:  what was in view is
    carried to where the camera move puts it, and the rest is predicted (ours: the paper's UNet mixes frames
    only at the same pixel, which keeps little of a view that moves)."""
    B, N, _, H, W = flow.shape
    ys, xs = torch.meshgrid(*(torch.arange(n, device=flow.device) for n in (H, W)), indexing="ij")
    fy, fx = flow[:, :, 0] * (H / 4), flow[:, :, 1] * (W / 4)  # (B, N, H, W) in pixels
    # where each pixel reads, in grid_sample's coordinates: -1 and 1 are the outer edges of the frame
    grid = torch.stack([(2 * (xs + fx) + 1) / W - 1, (2 * (ys + fy) + 1) / H - 1], dim=-1)
    src = repeat(last, "b c h w -> (b n) c h w", n=N)
    moved = F.grid_sample(src, rearrange(grid, "b n h w t -> (b n) h w t"), align_corners=False,
                          padding_mode="border")
    return rearrange(moved, "(b n) c h w -> b n c h w", b=B)


# ============================================================================= masked conditional diffusion
class Diffusion:
    """Gaussian diffusion over the target frames of a clip, conditioned on clean context frames.

    Cosine schedule (Nichol & Dhariwal 2021): abar_t = f(t) / f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2),
    s = 0.008, for t = 0..T; t = 0 means clean (that is how context frames are marked).
    """

    def __init__(self, cfg, device="cpu"):
        self.cfg, self.T = cfg, cfg.timesteps
        s = 0.008
        t = torch.arange(self.T + 1, dtype=torch.float64)
        f = torch.cos(((t / self.T + s) / (1 + s)) * math.pi / 2) ** 2
        # abar_T clamped at 1e-5 (our choice) so 1 / sqrt(abar) stays finite; (T + 1,), abar[0] = 1
        self.abar = (f / f[0]).clamp(min=1e-5).float().to(device)

    def _ab(self, t):
        """abar_t shaped to broadcast over (B, N, C, H, W) from t of shape (B,) or ()."""
        return self.abar[t].reshape(-1, 1, 1, 1, 1)

    def q_sample(self, x0, t, eps):
        """Forward process: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps."""
        # BEGIN SOLUTION hw1 hint: the forward process (exercises/hw1.md)
        ab = self._ab(t)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        # END SOLUTION

    def target(self, x0, t, eps):
        """What the network regresses: eps (the paper), v = sqrt(abar) eps - sqrt(1 - abar) x_0, or x_0."""
        # BEGIN SOLUTION hw1 hint: what cfg.prediction regresses (exercises/hw1.md)
        ab = self._ab(t)
        return {"eps": eps, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0, "x0": x0}[self.cfg.prediction]
        # END SOLUTION

    def x0_eps(self, x_t, t, pred):
        """The network output -> (x_0 estimate, eps estimate), inverting the forward process."""
        # BEGIN SOLUTION hw1 hint: undo the forward process for each prediction (exercises/hw1.md)
        ab = self._ab(t)
        if self.cfg.prediction == "eps":  # x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
            return (x_t - (1 - ab).sqrt() * pred) / ab.sqrt(), pred
        if self.cfg.prediction == "v":
            # x_0 = sqrt(abar) x_t - sqrt(1 - abar) v;  eps = sqrt(1 - abar) x_t + sqrt(abar) v
            return ab.sqrt() * x_t - (1 - ab).sqrt() * pred, (1 - ab).sqrt() * x_t + ab.sqrt() * pred
        # x0: eps = (x_t - sqrt(abar) x_0) / sqrt(1 - abar)
        return pred, (x_t - ab.sqrt() * pred) / (1 - ab).sqrt()
        # END SOLUTION

    def draw(self, x0, p_uncond=0.0, generator=None):
        """The loss's random draws for a batch of clean targets x0 (B, f_g, 3, H, W): one noise level t (B,)
        per clip, the noise eps like x0, and which clips drop their action (B,) bool (for classifier-free
        guidance)."""
        # BEGIN SOLUTION hw2 hint: the loss's random draws (exercises/hw2.md)
        B, dev = x0.shape[0], x0.device
        rdev = "cpu" if generator is not None else dev  # a seeded torch.Generator lives on the CPU
        t = torch.randint(1, self.T + 1, (B,), generator=generator, device=rdev).to(dev)
        eps = torch.randn(x0.shape, generator=generator, device=rdev).to(dev)
        drop = (torch.rand(B, generator=generator, device=rdev) < p_uncond).to(dev) if p_uncond > 0 else None
        return t, eps, drop
        # END SOLUTION

    def loss(self, model, ctx, x0, tokens, p_uncond=0.0, generator=None, draws=None):
        """The masked conditional loss (slow learning):
            L = E_{t, eps} || target - net([x_ctx ; x_t], t, a) ||^2   over the f_g target frames only.
        ctx: (B, f_p, 3, H, W) clean; x0: (B, f_g, 3, H, W) clean targets; tokens: (B, L).
        With f_p = 0 and the null action this is the fast loss of TEMP-LoRA (all frames noised, loss on all).
        draws: (t, eps, drop) from `draw`, when the caller fixes them (e.g. each process of a multi-process
        batch keeps its rows of the whole batch's draws); drawn here otherwise."""
        # BEGIN SOLUTION hw2 hint: the masked conditional loss (exercises/hw2.md)
        B, f_p = ctx.shape[:2]
        t, eps, drop = self.draw(x0, p_uncond, generator) if draws is None else draws
        x_t = self.q_sample(x0, t, eps)                                   # only the targets are noised
        if drop is not None:                                              # the null action (prob. p_uncond)
            tokens = torch.where(drop[:, None], null_tokens(B, x0.device), tokens)
        t_frames = torch.cat([torch.zeros(B, f_p, dtype=torch.long, device=x0.device),  # context: t = 0
                              t[:, None].expand(B, x0.shape[1])], 1)                      # targets: t
        pred = model(torch.cat([ctx, x_t], dim=1), t_frames, tokens, f_p)[:, f_p:]  # the mask: targets only
        return F.mse_loss(pred.float(), self.target(x0, t, eps))
        # END SOLUTION

    def guided(self, model, clip, t_frames, tokens, f_p, g):
        """Classifier-free guidance: pred = pred(null) + g (pred(a) - pred(null)), in one batched forward."""
        # BEGIN SOLUTION hw7 hint: classifier-free guidance (exercises/hw7.md)
        null = null_tokens(clip.shape[0], clip.device)
        both = model(torch.cat([clip, clip]), torch.cat([t_frames, t_frames]), torch.cat([tokens, null]), f_p)
        cond, uncond = both[:, f_p:].chunk(2)
        return uncond + g * (cond - uncond)
        # END SOLUTION

    @torch.no_grad()
    def sample(self, model, ctx, tokens, n_frames, generator=None, steps=None, guidance=None, eta=None):
        """DDIM (eta = 0) or DDPM-like ancestral (eta = 1) sampling of n_frames after the context.
        At every step the clean context frames are put back in front of the noisy frames and only
        the new frames are updated. ctx: (B, f_p, 3, H, W); returns (B, n_frames, 3, H, W)."""
        # BEGIN SOLUTION hw3 hint: DDIM / DDPM with the clean context at every step (exercises/hw3.md)
        steps = steps or self.cfg.sample_steps
        g = self.cfg.guidance if guidance is None else guidance
        eta = self.cfg.eta if eta is None else eta
        B, f_p, C, H, W = ctx.shape
        dev = ctx.device
        x = torch.randn((B, n_frames, C, H, W), generator=generator, device="cpu").to(dev)
        ts = torch.linspace(self.T, 0, steps + 1).round().long().tolist()  # T, ..., 0
        for t, s in zip(ts[:-1], ts[1:]):
            clip = torch.cat([ctx, x], dim=1)  # [x_ctx ; x_t]: context put back at every step
            tf = torch.tensor([0] * f_p + [t] * n_frames, device=dev).expand(B, -1)
            if g == 1.0:  # the plain conditional prediction
                pred = model(clip, tf, tokens, f_p)[:, f_p:]
            else:
                pred = self.guided(model, clip, tf, tokens, f_p, g)
            tt = torch.tensor(t, device=dev)
            x0, eps = self.x0_eps(x, tt, pred.float())
            if not self.cfg.latent_channels:  # pixels lie in [-1, 1]; normalised latents have no such bound
                x0 = x0.clamp(-1, 1)
            ab_t, ab_s = self.abar[t], self.abar[s]
            eps = (x - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()  # eps consistent with the clipped x_0
            # DDIM: x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s - sigma^2) eps + sigma z,
            #       sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)
            sigma = eta * ((1 - ab_s) / (1 - ab_t)).sqrt() * (1 - ab_t / ab_s).sqrt()
            noise = 0.0
            if eta > 0 and s > 0:
                noise = torch.randn(x.shape, generator=generator, device="cpu").to(dev)
            x = ab_s.sqrt() * x0 + (1 - ab_s - sigma ** 2).clamp(min=0).sqrt() * eps + sigma * noise
        return x
        # END SOLUTION


def null_tokens(B, device):
    """The null action (B, L): classifier-free guidance's unconditional branch and the fast loss use it."""
    return torch.tensor([data.tokenize(data.NULL_ACTION)] * B, device=device)


def action_tokens(actions, device):
    """Action texts -> (B, L) word ids."""
    return torch.tensor([data.tokenize(a) for a in actions], device=device)


# ============================================================================= LoRA (the fast weights)
class LoRA(nn.Module):
    """A low-rank adapter around a frozen linear or conv layer:  W' = W + (alpha / r) B A
    (the paper writes W' = W + A B^T; same thing, other names). A (r x in) starts random (Kaiming),
    B (out x r) starts at zero, so the adapted layer equals the base layer exactly at init.
    Merging is explicit: merge() folds (alpha / r) B A into W, unmerge() takes it out again."""

    def __init__(self, base, rank, alpha, generator=None):
        # BEGIN SOLUTION hw4 hint: the adapter's weights and their init (exercises/hw4.md)
        super().__init__()
        self.base, self.rank, self.scale, self.merged = base, rank, alpha / rank, False
        w = base.weight  # Linear: (out, in); Conv: (out, in, *kernel)
        # A ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), the init of nn.Linear (Kaiming uniform, a = sqrt(5)), drawn
        # on the CPU from `generator` so the draw is the same on every device and no global RNG is touched
        bound = 1 / math.sqrt(w[0].numel())  # fan_in = in * kernel size
        A = torch.empty(rank, *w.shape[1:]).uniform_(-bound, bound, generator=generator)
        self.lora_A = nn.Parameter(A.to(w.device))
        self.lora_B = nn.Parameter(torch.zeros(w.shape[0], rank, device=w.device))
        self.register_buffer("A_init", self.lora_A.detach().clone(), persistent=False)
        # END SOLUTION

    def delta_weight(self):
        """(alpha / r) B A, shaped like the base weight."""
        # BEGIN SOLUTION hw4 hint: the low-rank update, shaped like W (exercises/hw4.md)
        return self.scale * torch.einsum("or,r...->o...", self.lora_B, self.lora_A)
        # END SOLUTION

    def forward(self, x):
        # BEGIN SOLUTION hw4 hint: the adapted layer, without building W' (exercises/hw4.md)
        y = self.base(x)
        if self.merged:
            return y
        if isinstance(self.base, nn.Linear):  # y = W x + (alpha / r) B (A x)
            return y + self.scale * F.linear(F.linear(x, self.lora_A), self.lora_B)
        b = self.base  # conv: A is a rank-r conv with the base's kernel, B a 1x1 conv back to `out` channels
        conv = F.conv1d if isinstance(b, nn.Conv1d) else F.conv2d
        d = conv(x, self.lora_A, stride=b.stride, padding=b.padding, dilation=b.dilation)
        return y + self.scale * conv(d, self.lora_B.reshape(*self.lora_B.shape, *[1] * (x.dim() - 2)))
        # END SOLUTION

    @torch.no_grad()
    def merge(self):
        """W <- W + (alpha / r) B A. The slow W is kept aside so unmerge() restores it bit for bit
        (W + d - d is not W in floating point, and the slow weights must not drift chunk after chunk)."""
        # BEGIN SOLUTION hw4 hint: fold the update into W, so that unmerge can undo it (exercises/hw4.md)
        if not self.merged:
            self.W_slow = self.base.weight.detach().clone()
            self.base.weight += self.delta_weight()
            self.merged = True
        # END SOLUTION

    @torch.no_grad()
    def unmerge(self):
        # BEGIN SOLUTION hw4 hint: undo merge exactly (exercises/hw4.md)
        if self.merged:
            self.base.weight.copy_(self.W_slow)
            del self.W_slow
            self.merged = False
        # END SOLUTION

    @torch.no_grad()
    def reset(self):
        """Back to the fresh adapter (B = 0, A = its initial draw): the adapted model equals the base."""
        # BEGIN SOLUTION hw4 hint: back to the fresh adapter (exercises/hw4.md)
        self.unmerge()
        self.lora_A.copy_(self.A_init)
        self.lora_B.zero_()
        # END SOLUTION


def _lora_sites(model, targets):
    """(parent, attribute name) of every layer the target set names."""
    sites = []
    for name, mod in model.named_modules():
        if name.startswith(("text", "autoencoder")) or isinstance(mod, LoRA):
            continue  # the action-text encoder keeps its slow weights only; the autoencoder stays frozen
        if targets == "all":
            sites += [(mod, n) for n, c in mod.named_children()
                      if isinstance(c, (nn.Linear, nn.Conv1d, nn.Conv2d))]
        elif isinstance(mod, Attention) and (targets == "attn" or name.endswith(".temporal")):
            sites += [(mod, n) for n in ("to_q", "to_k", "to_v", "to_out")]
        elif isinstance(mod, ResBlock) and targets == "temporal":
            sites.append((mod, "temporal_conv"))
    return sites


LORA_TARGETS = ("temporal", "attn", "all")


def add_lora(model, targets="temporal", rank=8, alpha=8.0, seed=0):
    """Wraps the target layers in LoRA (temporal: temporal attention + temporal conv, the abstract's
    "temporal LoRA"; attn: every attention projection; all: every linear and conv). Returns the LoRAs."""
    if targets not in LORA_TARGETS:
        raise ValueError(f"unknown LoRA targets {targets!r}; use one of {list(LORA_TARGETS)}")
    g = torch.Generator().manual_seed(seed)  # A's random init is part of the method: fixed by `seed`
    for parent, attr in _lora_sites(model, targets):
        setattr(parent, attr, LoRA(getattr(parent, attr), rank, alpha, generator=g))
    return lora_modules(model)


def with_lora(model, cfg):
    """A copy of the slow model carrying a fresh TEMP-LoRA of cfg's targets, rank and alpha (the slow model is
    left as it is)."""
    m = copy.deepcopy(model)
    add_lora(m, cfg.lora_targets, cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed)
    return m


def lora_modules(model):
    return [m for m in model.modules() if isinstance(m, LoRA)]


def lora_parameters(model):
    """Theta: the fast weights (every LoRA's A and B)."""
    return [p for m in lora_modules(model) for p in (m.lora_A, m.lora_B)]


def slow_parameters(model):
    """Phi: the weights slow learning updates, in model order: all but Theta and a latent model's frozen
    autoencoder."""
    theta = set(map(id, lora_parameters(model)))
    return [p for n, p in model.named_parameters() if id(p) not in theta and not n.startswith("autoencoder.")]


def lora_state(model):
    """The fast weights Theta as a state dict (LoRA-sized: this is the episodic memory)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_" in k}


def load_lora_state(model, state):
    missing = set(lora_state(model)) ^ set(state)
    if missing:
        raise ValueError(f"LoRA state does not match the model's LoRA layers (differs in "
                         f"{sorted(missing)[:3]}...)")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # same layers, other rank
        why = str(e).splitlines()[1].strip()
        raise ValueError(f"LoRA state does not fit the model's LoRA layers ({why})") from None


def reset_lora(model):
    for m in lora_modules(model):
        m.reset()


def merge_lora(model):
    for m in lora_modules(model):
        m.merge()


def unmerge_lora(model):
    for m in lora_modules(model):
        m.unmerge()


def slow_state_dict(model):
    """The slow weights Phi with LoRA wrappers taken out (keys as in a model without LoRA)."""
    return {k.replace(".base.", "."): v for k, v in model.state_dict().items() if ".lora_" not in k}


def set_trainable(model, which):
    """which = 'slow': Phi trains, Theta frozen; 'fast': Theta trains, Phi frozen. A latent model's frame
    autoencoder is frozen in both."""
    model.requires_grad_(False)
    for p in lora_parameters(model) if which == "fast" else slow_parameters(model):
        p.requires_grad_(True)


# ============================================================================= fast learning (Algorithm 1a)
def local_window(history, tokens):
    """The paper's local rule: after chunk i the TEMP-LoRA learns the window z' = [X_{i-1} ; X_i], all of it
    a target, with no clean context (f_p = 0) and the null action. history: list of (1, N_i, 3, H, W) chunks,
    the start frame first; tokens: the newest chunk's action (unused by this rule).
    Returns (context (1, 0, 3, H, W), target (1, N, 3, H, W), tokens (1, L))."""
    # BEGIN SOLUTION hw5 hint: the local rule's window (exercises/hw5.md)
    window = torch.cat([history[-2], history[-1]], dim=1)  # z' = [X_{i-1} ; X_i]: (1, N, 3, H, W)
    # with no context, Diffusion.loss noises all frames with one t and scores them all:
    #   L_fast = E_{t, eps} || target - net_{Phi+Theta}(sqrt(abar_t) z' + sqrt(1 - abar_t) eps, t, null) ||^2
    #   (target: x0 here, eps in the paper)
    return window[:, :0], window, null_tokens(1, window.device)
    # END SOLUTION


def fast_update(model, diffusion, opt, ctx, x0, tokens, steps, generator=None, explode=100.0):
    """Theta <- Theta - lr * Adam(grad_Theta L_fast), Phi frozen, `steps` times; returns the last loss.
    A diverging update (a NaN / inf loss or weight, or a loss `explode` times the first) is rolled back:
    Theta and the optimizer return to where they were, and the returned loss is nan."""
    set_trainable(model, "fast")
    before, opt_before = lora_state(model), copy.deepcopy(opt.state_dict())
    first, last, diverged = None, 0.0, False
    for _ in range(steps):
        loss = diffusion.loss(model, ctx, x0, tokens, generator=generator)
        last = loss.item()
        first = last if first is None else first
        diverged = not math.isfinite(last) or last > explode * first
        if diverged:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if diverged or not all(torch.isfinite(p).all() for p in lora_parameters(model)):
        load_lora_state(model, before)
        opt.load_state_dict(opt_before)
        return float("nan")
    return last


def fast_learn_chunk(model, diffusion, opt, history, tokens, cfg, generator=None, window=local_window):
    """Algorithm 1a's update after a chunk: the window of the fast rule (the paper's `local_window`; the lab
    passes others) learned for cfg.fast_steps steps, each on cfg.fast_draws noise draws of it in one batch
    (our choice: the paper takes one). tokens (1, L): the newest chunk's action. Returns the last loss
    (nan: rolled back)."""
    ctx, x0, tokens = window(history, tokens)
    if cfg.fast_draws > 1:  # the same window n times: each copy gets its own noise level t and noise eps
        ctx, x0, tokens = (z.repeat(cfg.fast_draws, *[1] * (z.dim() - 1)) for z in (ctx, x0, tokens))
    return fast_update(model, diffusion, opt, ctx, x0, tokens, cfg.fast_steps, generator)


def fast_generator(seed):
    """The generator of fast learning's noise draws in an episode sampled with `seed` (ours: its own)."""
    return torch.Generator().manual_seed(seed + 1)


@dataclass
class Memory:
    """What a long video continues from: Algorithm 1a's state between two chunks. A value: generate_long
    copies it on the way in and out, so one Memory continued twice gives the same video twice.

    history: the last chunks as model tensors, [(1, n, C, H, W)], the newest last (the next chunk's context)
    chunk: chunks generated so far;  actions: their action texts
    gen, fast_gen: the states of the sampler's and fast learning's noise generators
    lora: Theta, the fast weights (lora_state; {} without fast learning);  opt: their Adam state ({} without)
    world_seed: the built-in world the video is in, or None (your own frames)"""
    history: list
    chunk: int = 0
    actions: list = field(default_factory=list)
    gen: torch.Tensor = None
    fast_gen: torch.Tensor = None
    lora: dict = field(default_factory=dict)
    opt: dict = field(default_factory=dict)
    world_seed: int = None

    @classmethod
    def start(cls, first_frame, seed=0, device="cpu", autoencoder=None, lora=None, world_seed=None):
        """A video not yet begun: the start frame X_0 (H, W, 3) uint8 as its history, the generators as a
        call with `seed` starts them, and the fast weights `lora` (None: a fresh LoRA)."""
        x = to_model(first_frame[None, None], device, autoencoder).cpu()  # (1, 1, C, H, W)
        return cls(history=[x], gen=torch.Generator().manual_seed(seed).get_state(),
                   fast_gen=fast_generator(seed).get_state(), lora=dict(lora or {}), world_seed=world_seed)

    def copy(self):
        return copy.deepcopy(self)

    def to_dict(self):
        """Plain types only, for torch.save / torch.load(weights_only=True)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d, where="memory"):
        """A Memory from a stored dict (files of earlier versions, without world_seed, load too); anything
        else is refused with one line that says what is wrong."""
        names = [f.name for f in fields(cls)]
        if isinstance(d, dict) and "config" in d and ("model" in d or "ema" in d):
            raise ValueError(f"{where}: a model checkpoint, not a memory (see generate.py --memory-out)")
        if not isinstance(d, dict) or any(n not in d for n in names if n != "world_seed"):
            raise ValueError(f"{where}: not an sfvgen memory (expected a dict with {', '.join(names)})")
        checks = [
            (isinstance(d["history"], list) and d["history"] and all(torch.is_tensor(h) and h.dim() == 5
                                                                     for h in d["history"]),
             "'history' must be a list of (1, n, C, H, W) tensors"),
            (isinstance(d["actions"], list) and d["chunk"] == len(d["actions"]) and
             all(a in data.ACTIONS for a in d["actions"]),
             f"'actions' must be 'chunk' actions from {list(data.ACTIONS)}"),
            (isinstance(d["lora"], dict) and isinstance(d["opt"], dict),
             "'lora' and 'opt' must be state dicts"),
            (all(torch.is_tensor(d[g]) and d[g].dtype == torch.uint8 for g in ("gen", "fast_gen")),
             "'gen' and 'fast_gen' must be generator states (uint8 tensors)"),
            (d.get("world_seed") is None or type(d["world_seed"]) is int and d["world_seed"] >= 0,
             "'world_seed' must be a world seed (an integer >= 0) or None")]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{where}: {message}")
        return cls(**{n: copy.deepcopy(d.get(n)) for n in names})

    def save(self, path):
        save_checkpoint(path, self.to_dict())

    @classmethod
    def load(cls, path):
        """torch.load(weights_only=True): a file cannot run code; errors are one line that names the file."""
        return cls.from_dict(load_checkpoint(path, require=()), path)


def generate_long(model, diffusion, cfg, first_frame, actions, fast_learning=None, seed=0, memory=None,
                  progress=None, window=local_window):
    """Algorithm 1a: long video generation, chunk by chunk, with TEMP-LoRA fast learning after every chunk.

        Theta <- a fresh LoRA                                 (or the one a `memory` holds)
        for i = 1 .. I:                                       (one action a_i per chunk)
            X_i ~ p(X_i | X_{i-1}, a_i; Phi + Theta)          sample K frames, the previous chunk as context
            Theta <- Theta - lr grad L_fast([X_{i-1} ; X_i])  fast learning, Phi frozen (if fast_learning)

    first_frame: (H, W, 3) uint8, X_0; actions: one text per chunk. fast_learning: default cfg.fast_learning.
    The sampler and fast learning take their settings from cfg (sample_steps, guidance, eta; fast_steps,
    fast_lr). memory: a Memory (a previous call's result["memory"], or Memory.start) to continue that video
    exactly; first_frame is then ignored. Without fast learning Theta stays as it starts.
    Returns dict(frames=(1 + I K, H, W, 3) uint8, the start frame first unless continuing, fast_losses,
    memory=the Memory after the last chunk)."""
    # BEGIN SOLUTION hw5 hint: Algorithm 1a (exercises/hw5.md)
    fast_learning = cfg.fast_learning if fast_learning is None else fast_learning
    dev = next(model.parameters()).device
    if fast_learning and not lora_modules(model):
        raise ValueError("fast learning needs LoRA layers: call add_lora(model, ...) or with_lora(...)")
    model.eval()
    # Phi is frozen while a video is generated (only Theta learns). Set here, not left to the caller: PyTorch
    # may pick another matmul kernel for a weight that requires grad, even under no_grad (last bits change)
    set_trainable(model, "fast")
    first = memory is None
    memory = Memory.start(first_frame, seed, dev, model.autoencoder) if first else memory.copy()  # ours now
    history = [h.to(dev) for h in memory.history]                         # [.., X_{i-1}]: (1, n, C, H, W)
    reset_lora(model)  # Theta fresh for every episode (no LoRA layers: nothing to do) ...
    if memory.lora:
        load_lora_state(model, memory.lora)                               # ... or the one the memory holds
    opt = torch.optim.Adam(lora_parameters(model), lr=cfg.fast_lr) if fast_learning else None  # one a video
    if fast_learning and memory.opt:
        opt.load_state_dict(memory.opt)  # the memory's own copy: Adam's moments would otherwise be shared
    # the sampler's noise; fast learning draws its t and eps from its own generator (our choice), so a video
    # with fast learning is sampled from the same noise as one without: rows with and without memory pair up
    gen, fast_gen = torch.Generator(), torch.Generator()
    gen.set_state(memory.gen)
    fast_gen.set_state(memory.fast_gen)
    out, losses = [history[0]] if first else [], []
    for a in (progress or (lambda x: x))(actions):
        tokens = action_tokens([a], dev)                                  # a_i: (1, L)
        merge_lora(model)  # sample with W + (alpha / r) B A folded in: no LoRA cost per denoising step
        try:
            X_i = diffusion.sample(model, history[-1], tokens, cfg.chunk, generator=gen,  # (1, K, C, H, W)
                                   steps=cfg.sample_steps, guidance=cfg.guidance, eta=cfg.eta)
        finally:
            unmerge_lora(model)  # exact: the slow W comes back bit for bit
        history.append(X_i)
        out.append(X_i)
        if fast_learning:  # store this chunk in the fast weights before generating the next one
            losses.append(fast_learn_chunk(model, diffusion, opt, history, tokens, cfg, fast_gen, window))
            if not math.isfinite(losses[-1]):
                print(f"warning: fast-learning update after chunk {memory.chunk + len(losses) - 1} diverged "
                      f"and was rolled back")
    after = Memory(history=[h.cpu() for h in history[-2:]], chunk=memory.chunk + len(actions),
                   actions=memory.actions + list(actions), gen=gen.get_state(), fast_gen=fast_gen.get_state(),
                   lora=lora_state(model) if fast_learning else memory.lora,
                   opt=copy.deepcopy(opt.state_dict()) if fast_learning else {}, world_seed=memory.world_seed)
    frames = to_frames(torch.cat(out, dim=1), model.autoencoder)[0]
    return dict(frames=frames, fast_losses=losses, memory=after)
    # END SOLUTION


# ============================================================================= the slow-fast loop (Algo. 1b)
def slow_fast_iteration(model, diffusion, cfg, episodes, generator=None, window=local_window):
    """One outer iteration of Algorithm 1b. model carries LoRA layers (Theta) over its slow weights (Phi).
    Leaves the gradient of the slow loss in Phi's .grad (train.main clips it and steps the slow optimizer).
    Returns (the slow loss L, Ds: the stored triples with their LoRA snapshots).

        Ds = []
        for each episode (X_0 .. X_I, a_1 .. a_I):                       inner loop: fast learning, Phi frozen
            Theta <- a fresh LoRA
            for i = 0 .. I-1:
                Ds.append((X_i, X_{i+1}, a_{i+1}, Theta_i))               Theta_i: memory of X_0 .. X_i only
                Theta <- Theta - lr grad L_fast([X_i ; X_{i+1}])
        L = mean over Ds of L_slow(X_{i+1} | X_i, a_{i+1}; Phi + Theta_i) outer step: slow learning,
                                                                          Theta frozen
        Phi <- Phi - lr grad_Phi L                                        (train.main)
    """
    # BEGIN SOLUTION hw6 hint: Algorithm 1b, one outer iteration (exercises/hw6.md)
    dev = next(model.parameters()).device
    Ds = []
    for frames, actions in episodes:                                   # inner loop over episodes
        x = to_model(frames[None], dev, model.autoencoder)             # (1, 1 + I K, 3, H, W), or latents
        X = [x[:, :1]] + list(x[:, 1:].split(cfg.chunk, dim=1))        # X_0 = the start frame, X_1 .. X_I
        reset_lora(model)                                              # Theta fresh for every episode
        fast_opt = torch.optim.Adam(lora_parameters(model), lr=cfg.fast_lr)  # one optimizer per episode
        model.train()
        for i in range(len(X) - 1):                                    # ... and over the episode's chunks
            Ds.append((X[i], X[i + 1], action_tokens([actions[i]], dev), lora_state(model)))
            # the fast loss on [X_i ; X_{i+1}] (the paper's local rule); ground-truth chunks here (our
            # reading: the paper leaves open whether they are generated)
            fast_learn_chunk(model, diffusion, fast_opt, X[:i + 2], None, cfg, generator, window)
    # the outer step. Our choice: one optimizer step per outer iteration on the mean over the triples (the
    # paper's pseudocode steps after every triple), so steps, the lr schedule and --resume count iterations
    set_trainable(model, "slow")                                       # Phi trains, Theta frozen
    model.zero_grad(set_to_none=True)                                  # not the fast updates' gradients
    total = 0.0
    for x_i, x_next, a_i, theta_i in Ds:
        load_lora_state(model, theta_i)                                # the episode's memory at chunk i
        loss = diffusion.loss(model, x_i, x_next, a_i, p_uncond=cfg.p_uncond, generator=generator) / len(Ds)
        loss.backward()                                                # gradients reach Phi only
        total += loss.item()
    reset_lora(model)
    return total, Ds
    # END SOLUTION


# ============================================================================= checkpoints
def save_checkpoint(path, state):
    """torch.save, all or nothing (video.atomic_write: a temp file, then a rename over the old one)."""
    with video.atomic_write(path) as tmp:
        torch.save(state, tmp)


RENAMED_FIELDS = {"fast": "fast_learning"}                 # older checkpoints' names of today's fields
RETIRED_FIELDS = ("fast_rule", "fast_reverse", "memory_mix")  # fields of older checkpoints that are gone


def upgrade_config(config):
    """A stored config dict in today's field names (older checkpoints load unchanged)."""
    config = {RENAMED_FIELDS.get(k, k): v for k, v in config.items()}
    return {k: v for k, v in config.items() if k not in RETIRED_FIELDS}


def load_checkpoint(path, require=("config", "model")):
    """torch.load(weights_only=True): a file crafted to run code is refused. Errors are one line in plain
    words that names the file."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        raise ValueError(f"{path}: not a file torch.save wrote (checkpoints and memories are such .pt files)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only met something that is not a tensor or plain data
        raise ValueError(f"{path}: holds more than tensors and plain data (a pickle that asks to run code, "
                         f"for one); nothing in it was run, and it is refused") from None
    except Exception:  # a cut-short or damaged archive
        raise ValueError(f"{path}: damaged or cut short (its archive does not read to the end)") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in require):
        raise ValueError(f"{path}: not an sfvgen checkpoint (expected a dict with keys {list(require)})")
    if "config" in ckpt:
        ckpt["config"] = upgrade_config(ckpt["config"])
        unknown = set(ckpt["config"]) - {f.name for f in fields(Config)}
        if unknown:
            raise ValueError(f"{path}: checkpoint from an incompatible config (unknown fields "
                             f"{sorted(unknown)})")
    return ckpt


def load_model(path, device="cpu", weights="ema"):
    """Rebuilds the UNet from a checkpoint's own config. Returns (model, cfg, ckpt)."""
    ckpt = load_checkpoint(path)
    cfg = Config(**ckpt["config"])
    model = VideoUNet(cfg)
    # older versions kept a frame-position table at levels without temporal attention (never trained): dropped
    have = model.state_dict()
    state = {k: v for k, v in (ckpt.get(weights) or ckpt["model"]).items()
             if k in have or not k.endswith(".frame_pos.weight")}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        why = str(e).splitlines()[0]
        raise ValueError(f"{path}: weights do not fit the config stored with them ({why})") from None
    return model.to(device).eval(), cfg, ckpt
