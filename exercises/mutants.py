"""The mutation test of the classroom: plausible wrong implementations (mutants) of every assignment, each a patch of
the reference's solution region, that the grading checks (visible + hidden) must fail.

    python -m exercises.mutants                 # every assignment: the table (assignment, mutants, caught)
    python -m exercises.mutants --hw 5 6 -v     # some assignments, one line per mutant (which check caught it)
    make mutants                                # the same as the first line, as CI runs it

A mutant is (name, the mistake in words, [(old text, new text), ...]); each old text must occur exactly once in
sfvgen.py and lie inside a solution region of its assignment, so a change of the reference that moves the text
breaks this file loudly instead of testing nothing. The runner writes each mutant's sfvgen.py into a scratch copy of
the project's code and runs the assignment's checks on it, stopping at the first failure (one is enough: the mutant
is caught); `--all-checks` runs them all. Exit code 0 only when every mutant is caught.

Not listed, because no test can tell them from the reference (equivalent mutants): sampling with Theta unmerged (the
same numbers, only slower); storing the optimizer state in the returned memory without a copy *while* copying the
memory on the way in (nothing runs the optimizer after the return, so the alias is never written; the listed mutant
without the copy on the way in is the harmful half, and is caught); set_trainable(model, "fast") left out of
generate_long (fast_update sets it itself).
"""
import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

MUTANTS = {
    1: [
        ("q_sample without square roots", "x_t = abar x_0 + (1 - abar) eps",
         [("return ab.sqrt() * x0 + (1 - ab).sqrt() * eps", "return ab * x0 + (1 - ab) * eps")]),
        ("q_sample with the weights swapped", "x_t = sqrt(1 - abar) x_0 + sqrt(abar) eps",
         [("return ab.sqrt() * x0 + (1 - ab).sqrt() * eps", "return (1 - ab).sqrt() * x0 + ab.sqrt() * eps")]),
        ("q_sample with the first clip's t for all", "one noise level for the batch",
         [("        ab = self._ab(t)\n        return ab.sqrt() * x0",
           "        ab = self._ab(t.reshape(-1)[:1])\n        return ab.sqrt() * x0")]),
        ("v with the sign flipped", "v = sqrt(abar) x_0 - sqrt(1 - abar) eps",
         [('"v": ab.sqrt() * eps - (1 - ab).sqrt() * x0', '"v": ab.sqrt() * x0 - (1 - ab).sqrt() * eps')]),
        ("target ignores cfg.prediction", "always regress eps",
         [('"x0": x0}[self.cfg.prediction]', '"x0": x0}["eps"]')]),
        ("x0_eps (eps) without the square root", "x_0 = (x_t - (1 - abar) eps) / sqrt(abar)",
         [("return (x_t - (1 - ab).sqrt() * pred) / ab.sqrt(), pred", "return (x_t - (1 - ab) * pred) / ab.sqrt(), pred")]),
        ("x0_eps (x0) forgets sqrt(abar)", "eps = (x_t - x_0) / sqrt(1 - abar)",
         [("return pred, (x_t - ab.sqrt() * pred) / (1 - ab).sqrt()", "return pred, (x_t - pred) / (1 - ab).sqrt()")]),
        ("x0_eps (v) with eps's sign flipped", "eps = sqrt(1 - abar) x_t - sqrt(abar) v",
         [("(1 - ab).sqrt() * x_t + ab.sqrt() * pred", "(1 - ab).sqrt() * x_t - ab.sqrt() * pred")]),
    ],
    2: [
        ("t drawn from 0..T-1", "a clean frame counted as a target",
         [("t = torch.randint(1, self.T + 1, (B,)", "t = torch.randint(0, self.T, (B,)")]),
        ("one t for the whole batch", "all clips at one noise level",
         [("t = torch.randint(1, self.T + 1, (B,), generator=generator, device=rdev).to(dev)",
           "t = torch.randint(1, self.T + 1, (1,), generator=generator, device=rdev).expand(B).to(dev)")]),
        ("drop inverted", "the action dropped with probability 1 - p_uncond",
         [("< p_uncond).to(dev)", "> p_uncond).to(dev)")]),
        ("eps from the global RNG", "the generator ignored for eps",
         [("eps = torch.randn(x0.shape, generator=generator, device=rdev)", "eps = torch.randn(x0.shape, device=rdev)")]),
        ("context frames at noise level t", "the network told the context is noisy",
         [("t_frames = torch.cat([torch.zeros(B, f_p, dtype=torch.long, device=x0.device),",
           "t_frames = torch.cat([t[:, None].expand(B, f_p),")]),
        ("noise on the context frames", "the context noised with the targets",
         [("pred = model(torch.cat([ctx, x_t], dim=1)", "pred = model(torch.cat([self.q_sample(ctx, t, torch.randn_like(ctx)), x_t], dim=1)")]),
        ("loss over all frames", "the context frames scored too",
         [("t_frames, tokens, f_p)[:, f_p:]  # the mask", "t_frames, tokens, f_p)  # the mask"),
          ("return F.mse_loss(pred.float(), self.target(x0, t, eps))",
           "return F.mse_loss(pred.float(), torch.cat([ctx, self.target(x0, t, eps)], 1))")]),
        ("p_uncond ignored", "the action never dropped",
         [("tokens = torch.where(drop[:, None], null_tokens(B, x0.device), tokens)", "tokens = tokens")]),
        ("the given draws ignored", "draws always made anew",
         [("t, eps, drop = self.draw(x0, p_uncond, generator) if draws is None else draws",
           "t, eps, drop = self.draw(x0, p_uncond, generator)")]),
        ("summed squared error", "the loss summed instead of averaged",
         [("return F.mse_loss(pred.float(), self.target(x0, t, eps))",
           "return F.mse_loss(pred.float(), self.target(x0, t, eps), reduction=\"sum\")")]),
    ],
    3: [
        ("context noised along", "the context not put back clean",
         [("clip = torch.cat([ctx, x], dim=1)  # [x_ctx ; x_t]",
           "clip = torch.cat([self.q_sample(ctx, torch.tensor(t), torch.randn_like(ctx)), x], dim=1)  # [x_ctx ; x_t]")]),
        ("context at noise level t", "the network told the context is noisy",
         [("tf = torch.tensor([0] * f_p + [t] * n_frames", "tf = torch.tensor([t] * f_p + [t] * n_frames")]),
        ("no clamp", "x_0^ of a pixel model not clamped",
         [("                x0 = x0.clamp(-1, 1)\n", "                x0 = x0\n")]),
        ("latents clamped too", "x_0^ clamped for a latent model",
         [("if not self.cfg.latent_channels:  # pixels lie", "if True:  # pixels lie")]),
        ("eps not recomputed", "eps^ from the network, not from the clamped x_0^",
         [("            eps = (x - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()  # eps consistent with the clipped x_0\n", "")]),
        ("grid off by one", "noise levels T-1 .. 0",
         [("ts = torch.linspace(self.T, 0, steps + 1)", "ts = torch.linspace(self.T - 1, 0, steps + 1)")]),
        ("x_T from the global RNG", "the generator ignored for x_T",
         [("x = torch.randn((B, n_frames, C, H, W), generator=generator, device=\"cpu\")",
           "x = torch.randn((B, n_frames, C, H, W), device=\"cpu\")")]),
        ("z from the global RNG", "the generator ignored for the ancestral noise",
         [("noise = torch.randn(x.shape, generator=generator, device=\"cpu\")", "noise = torch.randn(x.shape, device=\"cpu\")")]),
        ("sigma not taken from the deterministic part", "x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) eps + sigma z",
         [("(1 - ab_s - sigma ** 2).clamp(min=0).sqrt() * eps", "(1 - ab_s).sqrt() * eps")]),
        ("guidance ignored", "always the plain conditional prediction",
         [("if g == 1.0:  # the plain", "if True:  # the plain")]),
    ],
    4: [
        ("A zero, B random", "the init swapped: nothing can learn, or the base is not kept",
         [("self.lora_A = nn.Parameter(A.to(w.device))", "self.lora_A = nn.Parameter(torch.zeros_like(A).to(w.device))"),
          ("self.lora_B = nn.Parameter(torch.zeros(w.shape[0], rank, device=w.device))",
           "self.lora_B = nn.Parameter(torch.randn(w.shape[0], rank, device=w.device) * 0.1)")]),
        ("scale alpha", "the update not divided by the rank",
         [("self.scale, self.merged = base, rank, alpha / rank, False", "self.scale, self.merged = base, rank, alpha, False")]),
        ("A from the global RNG", "the generator ignored",
         [("A = torch.empty(rank, *w.shape[1:]).uniform_(-bound, bound, generator=generator)",
           "A = torch.empty(rank, *w.shape[1:]).uniform_(-bound, bound)")]),
        ("A_init shares A's storage", "the initial draw not copied",
         [('self.register_buffer("A_init", self.lora_A.detach().clone(), persistent=False)',
           'self.register_buffer("A_init", self.lora_A.detach(), persistent=False)')]),
        ("delta without the scale", "(alpha / r) forgotten in delta_weight",
         [('return self.scale * torch.einsum("or,r...->o...", self.lora_B, self.lora_A)',
           'return torch.einsum("or,r...->o...", self.lora_B, self.lora_A)')]),
        ("conv without the base's stride", "the rank-r conv not shaped like the base conv",
         [("d = conv(x, self.lora_A, stride=b.stride, padding=b.padding, dilation=b.dilation)",
           "d = conv(x, self.lora_A, padding=b.padding, dilation=b.dilation)")]),
        ("merged layer adds the update again", "forward ignores the merged flag",
         [("        if self.merged:\n            return y\n", "")]),
        ("merge twice adds twice", "merge not idempotent",
         [("        if not self.merged:\n            self.W_slow", "        if True:\n            self.W_slow")]),
        ("unmerge subtracts", "W + d - d is not W in floating point",
         [("self.base.weight.copy_(self.W_slow)", "self.base.weight -= self.delta_weight()")]),
        ("reset leaves W merged", "reset does not unmerge",
         [("        self.unmerge()\n        self.lora_A.copy_(self.A_init)", "        self.lora_A.copy_(self.A_init)")]),
    ],
    5: [
        ("local window with the action", "the fast loss conditioned on the action",
         [("return window[:, :0], window, null_tokens(1, window.device)", "return window[:, :0], window, tokens")]),
        ("local window with a clean context", "X_(i-1) as clean context (the original Temp-LoRA rule)",
         [("return window[:, :0], window, null_tokens(1, window.device)",
           "return history[-2], history[-1], null_tokens(1, window.device)")]),
        ("wrong context", "each chunk sampled after the start frame",
         [("X_i = diffusion.sample(model, history[-1], tokens", "X_i = diffusion.sample(model, history[0], tokens")]),
        ("sampler settings ignored", "the sampler's defaults instead of cfg's",
         [("steps=cfg.sample_steps, guidance=cfg.guidance, eta=cfg.eta)", "steps=None)")]),
        ("Theta not reset", "the last video's memory leaks into the next",
         [("    reset_lora(model)  # Theta fresh for every episode", "    pass  # Theta fresh for every episode")]),
        ("fast learning on the sampler's generator", "no own generator for fast learning",
         [("losses.append(fast_learn_chunk(model, diffusion, opt, history, tokens, cfg, fast_gen, window))",
           "losses.append(fast_learn_chunk(model, diffusion, opt, history, tokens, cfg, gen, window))")]),
        ("a new Adam per chunk", "Adam's moments forgotten after every chunk",
         [("        if fast_learning:  # store this chunk in the fast weights before generating the next one\n",
           "        if fast_learning:  # store this chunk in the fast weights before generating the next one\n"
           "            opt = torch.optim.Adam(lora_parameters(model), lr=cfg.fast_lr)\n")]),
        ("window ignored", "the local rule hard-wired",
         [("opt, history, tokens, cfg, fast_gen, window))", "opt, history, tokens, cfg, fast_gen))")]),
        ("memory not copied on the way in", "the memory's Adam moments and Theta shared with the running video",
         [("if first else memory.copy()  # ours now", "if first else memory  # ours now")]),
        ("optimizer state neither copied out nor in", "the issue's bug: memory.opt holds Adam's live moments",
         [("if first else memory.copy()  # ours now", "if first else memory  # ours now"),
          ("opt=copy.deepcopy(opt.state_dict()) if fast_learning else {}", "opt=opt.state_dict() if fast_learning else {}")]),
        ("generators not restored", "a continuation restarts the sampler's noise",
         [("    gen.set_state(memory.gen)\n", "    gen.manual_seed(seed)\n")]),
        ("latent start frame not encoded", "the start frame passed to a latent model as pixels",
         [("Memory.start(first_frame, seed, dev, model.autoencoder) if first", "Memory.start(first_frame, seed, dev) if first")]),
        ("latent frames not decoded", "latents returned as frames",
         [("frames = to_frames(torch.cat(out, dim=1), model.autoencoder)[0]", "frames = to_frames(torch.cat(out, dim=1))[0]")]),
    ],
    6: [
        ("one Adam for all episodes", "momentum carries one world into the next",
         [("fast_opt = torch.optim.Adam(lora_parameters(model), lr=cfg.fast_lr)  # one optimizer per episode",
           "fast_opt = fast_opt if Ds else torch.optim.Adam(lora_parameters(model), lr=cfg.fast_lr)")]),
        ("sum over Ds", "the slow loss summed, not averaged",
         [("p_uncond=cfg.p_uncond, generator=generator) / len(Ds)", "p_uncond=cfg.p_uncond, generator=generator)")]),
        ("p_uncond dropped", "the slow loss never drops the action",
         [("loss = diffusion.loss(model, x_i, x_next, a_i, p_uncond=cfg.p_uncond, generator=generator)",
           "loss = diffusion.loss(model, x_i, x_next, a_i, generator=generator)")]),
        ("no generator for the slow loss", "the slow loss draws from the global RNG",
         [("p_uncond=cfg.p_uncond, generator=generator) / len(Ds)", "p_uncond=cfg.p_uncond) / len(Ds)")]),
        ("snapshot after the update", "Theta_i already holds X_(i+1)",
         [("            Ds.append((X[i], X[i + 1], action_tokens([actions[i]], dev), lora_state(model)))\n", ""),
          ("            fast_learn_chunk(model, diffusion, fast_opt, X[:i + 2], None, cfg, generator, window)\n",
           "            fast_learn_chunk(model, diffusion, fast_opt, X[:i + 2], None, cfg, generator, window)\n"
           "            Ds.append((X[i], X[i + 1], action_tokens([actions[i]], dev), lora_state(model)))\n")]),
        ("Theta not reset per episode", "episode 2 starts from episode 1's memory",
         [("        reset_lora(model)                                              # Theta fresh for every episode\n", "")]),
        ("Theta not reset afterwards", "the last episode's LoRA left in the model",
         [("        total += loss.item()\n    reset_lora(model)\n", "        total += loss.item()\n")]),
        ("snapshot not loaded", "every slow loss with the last Theta",
         [("        load_lora_state(model, theta_i)", "        pass")]),
        ("stale gradients kept", "no zero_grad before the slow losses",
         [("    model.zero_grad(set_to_none=True)                                  # not the fast", "    pass  # not the fast")]),
        ("window ignored", "the local rule hard-wired",
         [("X[:i + 2], None, cfg, generator, window)", "X[:i + 2], None, cfg, generator)")]),
        ("fast learning sees the future", "the inner loop learns the episode's last window",
         [("fast_opt, X[:i + 2], None, cfg", "fast_opt, X, None, cfg")]),
        ("latent episode not encoded", "frames passed to a latent model as pixels",
         [("x = to_model(frames[None], dev, model.autoencoder)", "x = to_model(frames[None], dev)")]),
    ],
    7: [
        ("temporal conv over width", "the temporal conv mixes pixels of one frame",
         [('z = rearrange(self.temporal_norm(h), "(b n) c h w -> (b h w) c n", b=B)',
           'z = rearrange(self.temporal_norm(h), "(b n) c h w -> (b n h) c w", b=B)'),
          ('rearrange(self.temporal_conv(F.silu(z)), "(b h w) c n -> (b n) c h w", b=B, h=H, w=W)',
           'rearrange(self.temporal_conv(F.silu(z)), "(b n h) c w -> (b n) c h w", b=B, h=H, w=W)')]),
        ("frames and clips swapped", "(n b) where (b n) is folded",
         [('z = rearrange(self.temporal_norm(h), "(b n) c h w -> (b h w) c n", b=B)',
           'z = rearrange(self.temporal_norm(h), "(n b) c h w -> (b h w) c n", b=B)'),
          ('rearrange(self.temporal_conv(F.silu(z)), "(b h w) c n -> (b n) c h w", b=B, h=H, w=W)',
           'rearrange(self.temporal_conv(F.silu(z)), "(b h w) c n -> (n b) c h w", b=B, h=H, w=W)')]),
        ("no temporal residual", "the temporal conv replaces the image block",
         [("h = h + rearrange(self.temporal_conv(F.silu(z))", "h = rearrange(self.temporal_conv(F.silu(z))")]),
        ("no skip", "the spatial block without its skip path",
         [("h = self.skip(x) + self.conv2(F.silu(self.norm2(h)))", "h = self.conv2(F.silu(self.norm2(h)))")]),
        ("one embedding for all frames", "frame 0's noise level given to every frame",
         [('h = h + rearrange(self.emb(emb), "b n c -> (b n) c 1 1")',
           'h = h + repeat(self.emb(emb)[:, 0], "b c -> (b n) c 1 1", n=N)')]),
        ("temporal conv without its norm", "no pre-activation norm before the temporal conv",
         [('z = rearrange(self.temporal_norm(h), "(b n) c h w', 'z = rearrange(h, "(b n) c h w')]),
        ("cross-attention ignores the text", "self-attention where cross-attention should read the action",
         [('s = self.cross(s, context=repeat(text, "b l d -> (b n) l d", n=N))', "s = self.cross(s)")]),
        ("spatial attention across frames", "one attention over all pixels of all frames",
         [("            s = self.spatial(s)\n",
           '            s = rearrange(self.spatial(rearrange(s, "(b n) s c -> b (n s) c", b=B)), "b (n s) c -> (b n) s c", n=N)\n')]),
        ("temporal attention without positions", "frame order invisible",
         [("z = self.temporal(z, pos=self.frame_pos(pos_ids))", "z = self.temporal(z)")]),
        ("cross before spatial", "the block's order: the action read before the frame is",
         [("            s = self.spatial(s)\n        s = self.cross(s, context=repeat(text, \"b l d -> (b n) l d\", n=N))\n",
           "            s = self.spatial(self.cross(s, context=repeat(text, \"b l d -> (b n) l d\", n=N)))\n"
           "        else:\n            s = self.cross(s, context=repeat(text, \"b l d -> (b n) l d\", n=N))\n")]),
        ("guidance with the wrong sign", "pred(a) + g (pred(null) - pred(a))",
         [("return uncond + g * (cond - uncond)", "return cond + g * (uncond - cond)")]),
        ("unconditional branch with the action", "both branches conditioned",
         [("torch.cat([tokens, null]), f_p)", "torch.cat([tokens, tokens]), f_p)")]),
        ("guidance on every frame", "the context frames returned too",
         [("cond, uncond = both[:, f_p:].chunk(2)", "cond, uncond = both.chunk(2)")]),
    ],
}


def reference_text(root=ROOT):
    with open(os.path.join(root, "sfvgen.py")) as f:
        return f.read()


def apply(text, hw, patches):
    """text with the patches applied; each old text must occur once, inside a solution region of assignment hw."""
    sys.path.insert(0, HERE)
    import make_handout
    lines = text.split("\n")
    spans = []
    for first, last, n, _, _ in make_handout.regions(text):
        if n == hw:
            spans.append((len("\n".join(lines[:first])), len("\n".join(lines[:last + 1]))))
    for old, new in patches:
        if text.count(old) != 1:
            raise ValueError(f"hw{hw}: the mutant's text occurs {text.count(old)} times in sfvgen.py: {old[:70]!r}")
        at = text.index(old)
        if not any(a <= at and at + len(old) <= b for a, b in spans):
            raise ValueError(f"hw{hw}: the mutant's text is not inside an hw{hw} solution region: {old[:70]!r}")
        text = text.replace(old, new)
        lines = text.split("\n")
        spans = [(len("\n".join(lines[:f])), len("\n".join(lines[:la + 1])))
                 for f, la, n, _, _ in make_handout.regions(text) if n == hw]
    return text


def project_copy(dest, root=ROOT):
    """The project's code files (what the handout carries) in dest."""
    sys.path.insert(0, HERE)
    import make_handout
    for rel in make_handout.CODE:
        shutil.copy(os.path.join(root, rel), os.path.join(dest, rel))


def run_one(job):
    """Worker: (hw, index, all_checks) -> (hw, name, caught, check name, visibility, reason, seconds)."""
    hw, i, all_checks = job
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, HERE)
    import runner
    name, _, patches = MUTANTS[hw][i]
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=f"mutant-hw{hw}-") as tmp:
        project_copy(tmp)
        with open(os.path.join(tmp, "sfvgen.py"), "w") as f:
            f.write(apply(reference_text(), hw, patches))
        _, _, rows = runner.run(hw, tmp, hidden=True, out=lambda *a: None, first_failure=not all_checks)
    failed = [r for r in rows if not r[2]]
    first = failed[0] if failed else ("", "", True, 0.0, "")
    return hw, name, bool(failed), first[0], first[1], first[4], time.time() - t0, len(failed)


def run(hws=None, jobs=2, all_checks=False, out=print, verbose=False):
    """Every listed mutant of the assignments `hws` against the grading checks. Returns {hw: [(name, caught,
    check, visibility, reason, seconds, failed)]}."""
    hws = sorted(MUTANTS) if hws is None else hws
    text = reference_text()
    for hw in hws:  # every patch applies, before any work
        for name, _, patches in MUTANTS[hw]:
            apply(text, hw, patches)
    work = [(hw, i, all_checks) for hw in hws for i in range(len(MUTANTS[hw]))]
    if jobs > 1:
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            results = pool.map(run_one, work, chunksize=1)
    else:
        results = [run_one(w) for w in work]
    table = {hw: [] for hw in hws}
    for hw, name, caught, check, vis, why, secs, n_failed in results:
        table[hw].append((name, caught, check, vis, why, secs, n_failed))
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description="The mutation test: every listed wrong implementation must fail the grading checks.")
    p.add_argument("--hw", type=int, nargs="+", choices=sorted(MUTANTS), default=None, help="assignments (default: all)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--all-checks", action="store_true", help="run every check on each mutant, not only up to the first failure")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per mutant: the check that caught it and its message")
    args = p.parse_args(argv)
    t0 = time.time()
    table = run(args.hw, args.jobs, args.all_checks)
    total = caught = 0
    print("| assignment | mutants | caught |\n|---|---|---|")
    for hw, rows in table.items():
        n, c = len(rows), sum(r[1] for r in rows)
        total, caught = total + n, caught + c
        print(f"| hw{hw} | {n} | {c} |")
    print(f"| all | {total} | {caught} ({100 * caught / max(total, 1):.0f}%) |")
    if args.verbose or caught < total:
        for hw, rows in table.items():
            for name, ok, check, vis, why, secs, n_failed in rows:
                extra = f" ({n_failed} checks failed)" if args.all_checks else ""
                print(f"hw{hw}  {'caught' if ok else 'MISSED'}  {name}  [{secs:.1f} s]"
                      + (f"\n      by {check} [{vis}]{extra}: {why}" if ok else ""))
    print(f"{caught}/{total} mutants caught in {time.time() - t0:.0f} s ({args.jobs} worker processes, one thread each)")
    return 0 if caught == total else 1


if __name__ == "__main__":
    sys.exit(main())
