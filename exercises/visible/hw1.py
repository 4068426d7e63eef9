"""hw1 (visible): the forward process and the prediction targets keep their shapes, t = 0 is a clean frame, and the
paper's eps prediction can be undone."""
import torch

from .common import close, micro_cfg


def setup(sf, prediction="eps"):
    cfg = micro_cfg(sf, prediction=prediction)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand((3, 2, 3, 8, 8), generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    return cfg, sf.Diffusion(cfg), x0, eps, torch.tensor([1, 50, 90])


def check_every_function_keeps_the_clip_shape(sf):
    """q_sample, target and both halves of x0_eps return float tensors shaped like x_0, for every prediction."""
    for pred in ("eps", "v", "x0"):
        cfg, d, x0, eps, t = setup(sf, pred)
        out = [("q_sample", d.q_sample(x0, t, eps)), ("target", d.target(x0, t, eps))]
        out += list(zip(("x0_eps[0]", "x0_eps[1]"), d.x0_eps(x0, t, eps)))
        for name, y in out:
            assert torch.is_tensor(y) and y.shape == x0.shape and y.is_floating_point(), \
                f"{name} with prediction={pred}: expected a float tensor of shape {tuple(x0.shape)}"


def check_t_0_is_a_clean_frame(sf):
    """At noise level 0 (how context frames are marked) the forward process leaves x_0 as it is."""
    cfg, d, x0, eps, t = setup(sf)
    close(d.q_sample(x0, torch.zeros(3, dtype=torch.long), eps), x0, 1e-6, "q_sample at t = 0")


def check_the_paper_prediction_can_be_undone(sf):
    """With eps prediction: x0_eps(q_sample(x_0, t, eps), t, target(x_0, t, eps)) gives (x_0, eps) back."""
    cfg, d, x0, eps, t = setup(sf, "eps")
    x0_hat, eps_hat = d.x0_eps(d.q_sample(x0, t, eps), t, d.target(x0, t, eps))
    close(x0_hat, x0, 1e-3, "the x_0 estimate")
    close(eps_hat, eps, 1e-3, "the eps estimate")


CHECKS = [check_every_function_keeps_the_clip_shape, check_t_0_is_a_clean_frame, check_the_paper_prediction_can_be_undone]
