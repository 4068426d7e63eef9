"""HyperZ·Z·W companion (companion/hyperzzw.py): kernels, the FFT long convolution, local branches, the slow loss,
standardization, the spike task and determinism. Every test runs on a CPU in well under a second or two."""
import pytest
import torch
import torch.nn.functional as F

from companion import hyperzzw as hz


def tiny_cfg(**overrides):
    base = dict(channels=4, length=32, min_gap=8, slow_hidden=8, batch=8, steps=5, test_size=64)
    return hz.Config(**{**base, **overrides})


def test_hyper_kernel_and_branch_shapes():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    block = hz.Block(cfg)
    for L in (32, 37):  # the slow network draws a kernel for any grid size: no fixed L in its weights
        assert block.glob.kernel(L).shape == (cfg.channels, L)
        z = torch.randn(3, cfg.channels, L)
        assert block.glob(z).shape == (3, cfg.channels, L)
        assert block(z).shape == (3, cfg.channels, L)
        for branch, k in zip(block.locals, cfg.local_sizes):
            assert branch.kernel().shape == (cfg.channels, k)
            assert branch(z).shape == (3, cfg.channels, L)
    assert hz.Terminator(cfg)(torch.randn(5, cfg.length)).shape == (5, 2)


def test_global_hyper_kernel_does_not_depend_on_the_input_but_the_fast_weight_does():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = hz.Terminator(cfg)
    seen = []
    model.blocks[0].glob.slow.register_forward_hook(lambda mod, inp, out: seen.append(out.detach().clone()))
    x1, x2 = torch.randn(2, cfg.length), 3 * torch.randn(2, cfg.length)
    z1, z2 = model.stem(x1[:, None]), model.stem(x2[:, None])
    model(x1)
    model(x2)
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])                  # K_g: the slow network's output only
    assert not torch.allclose(seen[0] * z1, seen[1] * z2)                   # W_hat = K_g ⊙ Z changes with the input


@pytest.mark.parametrize("circular", [True, False])
@pytest.mark.parametrize("L", [16, 37])
def test_fft_long_conv_equals_the_naive_loop(circular, L):
    g = torch.Generator().manual_seed(0)
    w, z = torch.randn(2, 3, L, generator=g, dtype=torch.float64), torch.randn(2, 3, L, generator=g, dtype=torch.float64)
    fast, naive = hz.long_conv(w, z, circular), hz.long_conv_naive(w, z, circular)
    assert torch.allclose(fast, naive, atol=1e-10)
    # written out for one lag: y[t] = sum_s w[s] z[s + t] (wrapping or zero beyond L)
    t = 5
    idx = torch.arange(L) + t
    zt = z[..., idx % L] if circular else torch.where(idx < L, z[..., idx.clamp(max=L - 1)], torch.zeros(()))
    assert torch.allclose(fast[..., t], (w * zt).sum(-1), atol=1e-10)


def test_global_pooled_local_branch_equals_conv1d_with_groups_equal_to_channels():
    cfg = tiny_cfg(local_pool="global")
    torch.manual_seed(0)
    branch = hz.LocalBranch(cfg, k=7)
    z = torch.randn(3, cfg.channels, cfg.length)
    k_l = branch.kernel()
    for b in range(3):  # instance b: a depth-wise conv whose kernel is K_l scaled by that instance's pooled Z
        w_hat = k_l * z[b].mean(-1, keepdim=True)                                        # (C, k)
        ref = F.conv1d(z[b:b + 1], w_hat[:, None], padding=3, groups=cfg.channels)
        assert torch.allclose(branch(z)[b:b + 1], ref, atol=1e-5)


def test_window_pooled_local_branch_equals_conv1d_with_groups_equal_to_channels_times_the_window_mean():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    branch = hz.LocalBranch(cfg, k=3)
    z = torch.randn(2, cfg.channels, cfg.length)
    conv = F.conv1d(z, branch.kernel()[:, None], padding=1, groups=cfg.channels)
    pool = torch.stack([z[..., max(t - 1, 0):t + 2].mean(-1) for t in range(cfg.length)], dim=-1)  # window mean
    assert torch.allclose(branch(z), pool * conv, atol=1e-5)


@pytest.mark.parametrize("kind,local", [("window", True), ("global", False)])
def test_a_window_pooled_local_branch_sees_only_its_window(kind, local):
    """The locality the benchmark relies on: with pooling over the window, a change at position p moves only
    positions p - k//2 .. p + k//2 of the branch; pooled over all of L, it moves every position."""
    cfg = tiny_cfg(local_pool=kind)
    torch.manual_seed(0)
    branch = hz.LocalBranch(cfg, k=7)
    z = torch.randn(1, cfg.channels, cfg.length)
    z2 = z.clone()
    z2[..., 10] += 1.0
    changed = (branch(z2) - branch(z)).abs().amax(1)[0] > 1e-6                  # (L,)
    far = torch.ones(cfg.length, dtype=torch.bool)
    far[10 - 3:10 + 4] = False
    assert changed[10]
    assert (not changed[far].any()) if local else changed[far].all()


def test_after_the_slow_loss_backward_only_slow_network_parameters_have_gradients():
    cfg = tiny_cfg(blocks=3)
    torch.manual_seed(0)
    model = hz.Terminator(cfg)
    loss = hz.slow_loss(model, cfg.length)
    assert loss.item() > 0  # different blocks start with different hyper-kernels
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    slow = {id(p) for p in model.slow_parameters()}
    assert with_grad and all(id(p) in slow for n, p in model.named_parameters() if n in with_grad)
    assert any(".glob.slow." in n for n in with_grad)                       # the global slow networks do learn from it
    assert not hz.slow_loss(hz.Terminator(tiny_cfg(use_global=False)), cfg.length).requires_grad


@pytest.mark.parametrize("norm", ["local", "length", "instance"])
def test_standardized_features_have_zero_mean_per_instance(norm):
    torch.manual_seed(0)
    std = hz.Standardize(4, norm, window=5)
    u = 5 * torch.randn(6, 4, 32) + 10 * torch.randn(6, 4, 1)  # a different level for every instance and channel
    for training in (True, False):
        std.train(training)
        out = std(u)
        assert out.mean(-1).abs().max() < 1e-4
        assert out.std() > 0.5                                  # not collapsed to zero
    if norm == "instance":
        assert torch.allclose(out.pow(2).mean(-1), torch.ones(6, 4), atol=1e-3)
    else:                                                       # evaluation divides by the running batch estimate
        assert not torch.allclose(std.running_var, torch.ones(4))


@pytest.mark.parametrize("use_global,norm,sees_far", [(False, "local", False), (False, "length", True), (True, "local", True)])
def test_only_the_global_branch_lets_a_position_see_the_far_end(use_global, norm, sees_far):
    """The property the spike benchmark rests on: in the local-only model with local standardization a change at
    position p moves the last features only within p +- blocks (k_max // 2 + norm_window // 2); the global branch,
    or a mean over L in the standardization, carries it everywhere."""
    cfg = tiny_cfg(use_global=use_global, norm=norm, norm_window=5, length=64)
    torch.manual_seed(0)
    model = hz.Terminator(cfg).double()
    for block in model.blocks:  # calibrate the batch scale on one batch, then evaluate with it as a fixed divisor
        block.standardize.momentum = 1.0
    with torch.no_grad():
        model(torch.randn(16, cfg.length, dtype=torch.float64))
    model.eval()

    def features(x):
        z = model.stem(x[:, None])
        for block in model.blocks:
            z = block(z)
        return z[0]                                                             # (C, L)

    x = torch.randn(1, cfg.length, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 30] += 1.0
    with torch.no_grad():
        changed = (features(x2) - features(x)).abs().amax(0) > 1e-12           # (L,)
    reach = cfg.blocks * (max(cfg.local_sizes) // 2 + cfg.norm_window // 2)
    far = (torch.arange(cfg.length) - 30).abs() > reach
    assert changed[30]
    assert changed[far].any() == sees_far


def test_spike_task_has_two_far_apart_spikes_and_labels_their_sign_product():
    cfg = tiny_cfg(noise=0.0)
    x, y = hz.spikes(500, cfg, torch.Generator().manual_seed(0))
    assert x.shape == (500, cfg.length) and y.shape == (500,)
    nz = x.nonzero()
    assert len(nz) == 1000 and set(x[x != 0].tolist()) == {-1.0, 1.0}
    pos = nz[:, 1].view(500, 2)
    gap = (pos[:, 1] - pos[:, 0]).abs()
    assert (torch.minimum(gap, cfg.length - gap) >= cfg.min_gap).all()
    assert torch.equal(y, (x.gather(1, pos).prod(1) > 0).long())
    assert 0.4 < y.float().mean() < 0.6


def test_training_is_deterministic_on_cpu():
    cfg = tiny_cfg(steps=4)
    m1, acc1 = hz.train(cfg, quiet=True)
    m2, acc2 = hz.train(cfg, quiet=True)
    assert acc1 == acc2
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_flags_come_from_the_config_and_bad_values_fail():
    cfg, only = hz.parse_args(["--channels", "8", "--circular", "off", "--local-sizes", "3,5,9", "--only", "local", "--quick"])
    assert cfg.channels == 8 and cfg.circular is False and cfg.local_sizes == (3, 5, 9) and cfg.steps == 30
    assert only == "local" and hz.parse_args([]) == (hz.Config(), "both")
    for bad in (["--norm", "layer"], ["--circular", "maybe"], ["--use-global", "off"], ["--no-such-flag", "1"]):
        with pytest.raises(SystemExit):
            hz.parse_args(bad)


@pytest.mark.heavy
def test_on_a_short_spike_task_the_full_model_learns_the_product_and_the_local_only_model_does_not():
    """The benchmark in small (L = 64, spikes >= 24 apart, beyond the local model's reach of 2 * (3 + 7))."""
    cfg = hz.Config(length=64, min_gap=24, channels=8, slow_hidden=16, steps=150, test_size=512)
    acc = hz.main(cfg, quiet=True)
    assert acc["full"] > 0.95 and acc["local"] < 0.65
