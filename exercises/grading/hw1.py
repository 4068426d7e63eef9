"""hw1 (hidden): the forward process and the three prediction targets (Diffusion.q_sample, target, x0_eps)."""
from dataclasses import replace

import torch

from ..visible.common import close, micro_cfg


def setup(sf, prediction="x0", B=3):
    cfg = micro_cfg(sf, prediction=prediction)
    d = sf.Diffusion(cfg)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand((B, 2, 3, 8, 8), generator=g) * 2 - 1
    eps = torch.randn((B, 2, 3, 8, 8), generator=g)
    t = torch.tensor([1, cfg.timesteps // 2, cfg.timesteps - 10])[:B]
    return cfg, d, x0, eps, t


def check_q_sample_is_the_closed_form(sf):
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, each clip at its own t (a (B,) t), or all at one (a scalar t)."""
    cfg, d, x0, eps, t = setup(sf)
    ab = d.abar[t].reshape(-1, 1, 1, 1, 1)
    close(d.q_sample(x0, t, eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps, 1e-6,
          "q_sample(x0, t, eps) against the forward process, each clip at its own noise level")
    ab = d.abar[40]
    close(d.q_sample(x0, torch.tensor(40), eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps, 1e-6,
          "q_sample with a scalar t (every clip at t = 40)")


def check_q_sample_has_the_right_mean_and_variance(sf):
    """For a fixed x_0 and eps ~ N(0, I): E[x_t] = sqrt(abar_t) x_0 and Var[x_t] = 1 - abar_t."""
    cfg = micro_cfg(sf)
    d = sf.Diffusion(cfg)
    g = torch.Generator().manual_seed(2)
    for t in (10, 50, 90):
        x0 = torch.full((4000, 1, 3, 4, 4), 0.6)
        tt = torch.full((4000,), t)
        xt = d.q_sample(x0, tt, torch.randn(x0.shape, generator=g))
        ab = d.abar[t].item()
        close(xt.mean(), 0.6 * ab ** 0.5, 0.01, f"mean of x_t at t = {t}")
        close(xt.var(), 1 - ab, 0.01, f"variance of x_t at t = {t}")


def check_target_is_what_each_prediction_regresses(sf):
    """eps -> eps; x0 -> x_0; v -> sqrt(abar_t) eps - sqrt(1 - abar_t) x_0."""
    for pred in ("eps", "x0", "v"):
        cfg, d, x0, eps, t = setup(sf, pred)
        ab = d.abar[t].reshape(-1, 1, 1, 1, 1)
        want = {"eps": eps, "x0": x0, "v": ab.sqrt() * eps - (1 - ab).sqrt() * x0}[pred]
        close(d.target(x0, t, eps), want, 1e-6, f"target with prediction={pred}: the quantity that prediction regresses")


def check_x0_eps_inverts_the_forward_process(sf):
    """For every prediction: x0_eps(x_t, t, target(x_0, t, eps)) = (x_0, eps)."""
    for pred in ("eps", "x0", "v"):
        cfg, d, x0, eps, t = setup(sf, pred)
        xt = d.q_sample(x0, t, eps)
        x0_hat, eps_hat = d.x0_eps(xt, t, d.target(x0, t, eps))
        close(x0_hat, x0, 1e-3, f"prediction={pred}: x0_eps must invert the forward process; the x_0 estimate")
        close(eps_hat, eps, 1e-3, f"prediction={pred}: x0_eps must invert the forward process; the eps estimate")


def check_an_eps_error_at_the_first_step_is_amplified_by_one_over_sqrt_abar(sf):
    """The question of hw1, measured: at t = T an error delta in the network's eps moves the x_0 estimate by
    delta sqrt(1 - abar_T) / sqrt(abar_T) (about 316 with abar_T clamped at 1e-5); an x_0 prediction's error
    passes through unchanged."""
    cfg = micro_cfg(sf)
    T = cfg.timesteps
    g = torch.Generator().manual_seed(3)
    xt = torch.randn((1, 2, 3, 4, 4), generator=g)
    pred = torch.randn(xt.shape, generator=g)
    delta = 1e-3
    t = torch.tensor(T)
    d_eps = sf.Diffusion(replace(cfg, prediction="eps"))
    ab = d_eps.abar[T].item()
    moved = (d_eps.x0_eps(xt, t, pred + delta)[0] - d_eps.x0_eps(xt, t, pred)[0]).abs().mean().item() / delta
    want = ((1 - ab) / ab) ** 0.5
    assert abs(moved - want) < 0.01 * want, f"eps prediction: x_0 moved {moved:.1f} x the error, expected {want:.1f}"
    assert want > 300, f"abar_T = {ab:g}: expected the 1e-5 clamp"
    d_x0 = sf.Diffusion(replace(cfg, prediction="x0"))
    moved = (d_x0.x0_eps(xt, t, pred + delta)[0] - d_x0.x0_eps(xt, t, pred)[0]).abs().mean().item() / delta
    assert abs(moved - 1) < 1e-2, f"x0 prediction: x_0 moved {moved:.2f} x the error, expected 1"


CHECKS = [check_q_sample_is_the_closed_form, check_q_sample_has_the_right_mean_and_variance,
          check_target_is_what_each_prediction_regresses, check_x0_eps_inverts_the_forward_process,
          check_an_eps_error_at_the_first_step_is_amplified_by_one_over_sqrt_abar]
