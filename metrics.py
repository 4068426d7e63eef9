"""Evaluation metrics for the SlowFast-VGen reference implementation.

The paper reports frame quality (PSNR, SSIM), a Frechet distance between
feature distributions (FVD-style), the number of scene cuts in a generated
video, and Scene Revisit Consistency (SRC): when the camera comes back to a
place it has seen before, the generated frame should look like the first visit.

Everything here works on numpy uint8 frames, (N, H, W, 3) or (H, W, 3), the
project's convention for frames outside the model. Frames are small (32x32 or
64x64), so plain vectorised numpy is fast enough. Typical use:

    import metrics
    metrics.psnr(generated, ground_truth)
    metrics.ssim_per_frame(generated, ground_truth)        # (N,)
    metrics.count_scene_cuts(generated)
    metrics.src_metrics(generated, ground_truth, positions, min_gap=8)
    metrics.frechet_distance(feats_real, feats_fake)       # any feature extractor
    metrics.bootstrap_ci(per_video_scores)                 # (mean, low, high)
"""

import numpy as np

PSNR_CAP = 100.0  # identical inputs have infinite psnr; we report this cap instead


# ---------------------------------------------------------------- psnr


def psnr(a, b, max_val=255.0):
    """PSNR = 10 log10(MAX^2 / MSE) over all elements; capped at PSNR_CAP dB."""
    a = np.asarray(a, dtype=np.float64)  # any shape, same as b
    b = np.asarray(b, dtype=np.float64)
    mse = np.mean((a - b) ** 2)  # MSE = mean((a - b)^2)
    if mse == 0:
        return PSNR_CAP  # a cap keeps means over frames finite
    return float(min(PSNR_CAP, 10.0 * np.log10(max_val**2 / mse)))  # 10 log10(MAX^2 / MSE)


def psnr_per_frame(a, b, max_val=255.0):
    """PSNR of each frame: (N, H, W, C) x2 -> (N,)."""
    return np.array([psnr(fa, fb, max_val) for fa, fb in zip(a, b)])


# ---------------------------------------------------------------- ssim


def gaussian_window(size, sigma):
    """Normalised 1D Gaussian: g(x) = exp(-x^2 / (2 sigma^2)) / sum."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))  # g(x) = exp(-x^2 / 2 sigma^2)
    return g / g.sum()


def filter_valid(x, kernel):
    """Separable 'valid' correlation with kernel k: (..., H, W) -> (..., H-k+1, W-k+1)."""
    k = len(kernel)
    rows = np.lib.stride_tricks.sliding_window_view(x, k, axis=-2)  # (..., H-k+1, W, k)
    x = rows @ kernel  # y[r] = sum_t k[t] x[r + t] down the columns
    cols = np.lib.stride_tricks.sliding_window_view(x, k, axis=-1)  # (..., H-k+1, W-k+1, k)
    return cols @ kernel  # same along the rows


def ssim_per_frame(a, b, max_val=255.0):
    """SSIM of Wang et al. 2004 per frame: (N, H, W, C) or (H, W, C) -> (N,).

    SSIM = (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))
    with an 11x11 Gaussian window (sigma 1.5), C1 = (0.01 L)^2, C2 = (0.03 L)^2,
    computed per channel on float64 and averaged over channels and the valid
    region (no padding). Frames smaller than 11 px use the largest odd window
    that fits, with sigma scaled by the same factor (size / 11).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim == 3:
        a, b = a[None], b[None]  # (H, W, C) -> (1, H, W, C)
    a = a.transpose(0, 3, 1, 2)  # (N, C, H, W) so the filter runs on the last two axes
    b = b.transpose(0, 3, 1, 2)
    height, width = a.shape[-2:]
    size = min(11, height, width)
    if size % 2 == 0:
        size -= 1  # keep the window centred on a pixel
    kernel = gaussian_window(size, 1.5 * size / 11.0)
    c1 = (0.01 * max_val) ** 2  # C1 = (K1 L)^2
    c2 = (0.03 * max_val) ** 2  # C2 = (K2 L)^2
    mu_a = filter_valid(a, kernel)
    mu_b = filter_valid(b, kernel)
    var_a = filter_valid(a * a, kernel) - mu_a**2  # s_a^2 = E[a^2] - mu_a^2
    var_b = filter_valid(b * b, kernel) - mu_b**2
    cov = filter_valid(a * b, kernel) - mu_a * mu_b  # s_ab = E[ab] - mu_a mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    ssim_map = num / den  # (N, C, H', W')
    return ssim_map.mean(axis=(1, 2, 3))  # (N,)


def ssim(a, b, max_val=255.0):
    """Mean SSIM over frames (see ssim_per_frame for the formula)."""
    return float(np.mean(ssim_per_frame(a, b, max_val)))


# ---------------------------------------------------------------- scene cuts


def rgb_to_hsv(frames):
    """RGB uint8 (..., 3) -> HSV float64 (..., 3), every channel scaled to 0-255.

    V = max, S = (max - min) / max, H = 60 * sector offset from the max channel.
    """
    rgb = np.asarray(frames, dtype=np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = rgb.max(axis=-1)
    minc = rgb.min(axis=-1)
    delta = maxc - minc
    safe_delta = np.where(delta > 0, delta, 1.0)  # grey pixels have hue 0, avoid 0/0
    safe_max = np.where(maxc > 0, maxc, 1.0)
    hue = np.where(maxc == r, ((g - b) / safe_delta) % 6.0,  # H = 60 ((G - B) / d mod 6)
                   np.where(maxc == g, (b - r) / safe_delta + 2.0,  # H = 60 ((B - R) / d + 2)
                            (r - g) / safe_delta + 4.0))  # H = 60 ((R - G) / d + 4)
    hue = np.where(delta > 0, hue * 60.0, 0.0)  # degrees in [0, 360)
    sat = np.where(maxc > 0, delta / safe_max, 0.0)  # S = d / V
    return np.stack([hue * 255.0 / 360.0, sat * 255.0, maxc * 255.0], axis=-1)


def scene_cuts(frames, threshold=3.0, min_content=15.0, window=2, min_gap=2):
    """Frame indices where a new scene starts, after PySceneDetect's AdaptiveDetector.

    frames: (N, H, W, 3) uint8. With HSV scaled to 0-255:
      content   c_i = (mean|dH| + mean|dS| + mean|dV|) / 3 between frames i-1 and i
      ratio     r_i = c_i / mean(c_{i-w..i-1}, c_{i+1..i+w})
      cut at i  when r_i >= threshold and c_i >= min_content and i - last_cut >= min_gap
    (frame 0 counts as the first cut for min_gap). Only frames with a full window
    on both sides are tested, as in PySceneDetect; a zero window mean gives r = 255.
    PySceneDetect's defaults are adaptive_threshold=3.0, min_content_val=15.0,
    window_width=2 and min_scene_len=15; we keep the first three but use a min gap
    of 2 because our videos are only tens of frames long. Hue is not treated as
    circular, again as in PySceneDetect.
    """
    hsv = rgb_to_hsv(frames)  # (N, H, W, 3)
    diffs = np.abs(hsv[1:] - hsv[:-1]).mean(axis=(1, 2))  # (N-1, 3) mean |d| per channel
    content = np.concatenate([[0.0], diffs.mean(axis=1)])  # (N,) c_0 = 0, no predecessor
    cuts = []
    last_cut = 0
    for i in range(1 + window, len(content) - window):
        neighbours = np.concatenate([content[i - window:i], content[i + 1:i + 1 + window]])
        average = neighbours.mean()
        ratio = min(content[i] / average, 255.0) if average > 1e-5 else 255.0  # r_i
        if ratio >= threshold and content[i] >= min_content and i - last_cut >= min_gap:
            cuts.append(i)
            last_cut = i
    return cuts


def count_scene_cuts(frames, **kwargs):
    """Number of scene cuts in a (N, H, W, 3) video; lower is better for long videos."""
    return len(scene_cuts(frames, **kwargs))


# ---------------------------------------------------------------- scene revisit consistency


def revisit_pairs(positions, min_gap):
    """Pairs (i, j), ordered by j, where frame j returns to the first visit i of a position.

    positions: (N, 2) integers, already wrapped modulo the canvas by the caller,
    so exact equality means the same place. A pair is kept when j - i > min_gap,
    which skips frames that merely stood still.
    """
    first_visit = {}
    pairs = []
    for j, pos in enumerate(np.asarray(positions)):
        key = tuple(int(p) for p in pos)
        i = first_visit.setdefault(key, j)  # the first frame seen at this position
        if j - i > min_gap:
            pairs.append((i, j))
    return pairs


def src_metrics(generated, ground_truth, positions, min_gap):
    """Scene Revisit Consistency over all revisit pairs (i, j).

    src_psnr / src_ssim:         mean psnr / ssim of generated[j] vs generated[i]
    revisit_psnr / revisit_ssim: mean psnr / ssim of generated[j] vs ground_truth[j]
    generated, ground_truth: (N, H, W, 3) uint8; positions: (N, 2) ints.
    With no pairs every value is nan and n_pairs is 0.
    """
    pairs = revisit_pairs(positions, min_gap)
    if not pairs:
        nan = float("nan")
        return {"src_psnr": nan, "src_ssim": nan, "revisit_psnr": nan, "revisit_ssim": nan, "n_pairs": 0}
    first = np.array([i for i, _ in pairs])
    later = np.array([j for _, j in pairs])
    return {
        "src_psnr": float(np.mean(psnr_per_frame(generated[later], generated[first]))),
        "src_ssim": float(np.mean(ssim_per_frame(generated[later], generated[first]))),
        "revisit_psnr": float(np.mean(psnr_per_frame(generated[later], ground_truth[later]))),
        "revisit_ssim": float(np.mean(ssim_per_frame(generated[later], ground_truth[later]))),
        "n_pairs": len(pairs),
    }


# ---------------------------------------------------------------- frechet distance


def sqrt_psd(matrix):
    """Square root of a symmetric PSD matrix: V diag(sqrt(max(w, 0))) V^T."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2.0)  # symmetrise against round-off
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # negative eigenvalues are round-off


def frechet_from_stats(mu_a, cov_a, mu_b, cov_b):
    """d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}).

    Tr((S_a S_b)^{1/2}) = Tr((sqrt(S_a) S_b sqrt(S_a))^{1/2}), and the inner matrix
    is symmetric PSD, so numpy's eigh is enough (no scipy.linalg.sqrtm).
    """
    mu_a, mu_b = np.atleast_1d(mu_a).astype(np.float64), np.atleast_1d(mu_b).astype(np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    root_a = sqrt_psd(cov_a)
    inner = root_a @ cov_b @ root_a  # sqrt(S_a) S_b sqrt(S_a)
    w = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    trace_sqrt = np.sum(np.sqrt(np.clip(w, 0.0, None)))  # Tr((S_a S_b)^{1/2})
    mean_term = np.sum((mu_a - mu_b) ** 2)  # ||mu_a - mu_b||^2
    return float(mean_term + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def frechet_distance(feats_a, feats_b):
    """Frechet distance between Gaussians fitted to (N, D) and (M, D) features.

    Works with any feature extractor (I3D for FVD, Inception for FID, or a small
    local network); only the mean and covariance of the features are used.
    """
    feats_a = np.asarray(feats_a, dtype=np.float64).reshape(len(feats_a), -1)  # (N, D)
    feats_b = np.asarray(feats_b, dtype=np.float64).reshape(len(feats_b), -1)  # (M, D)
    cov_a = np.cov(feats_a, rowvar=False)  # unbiased, (D, D)
    cov_b = np.cov(feats_b, rowvar=False)
    return frechet_from_stats(feats_a.mean(axis=0), cov_a, feats_b.mean(axis=0), cov_b)


# ---------------------------------------------------------------- confidence intervals


def bootstrap_ci(values, n_boot=1000, alpha=0.05, seed=0):
    """Percentile bootstrap of the mean: (mean, q_{alpha/2}, q_{1-alpha/2}) of resampled means."""
    values = np.asarray(values, dtype=np.float64).ravel()  # (n,)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))  # resample with replacement
    means = values[idx].mean(axis=1)  # (n_boot,)
    low, high = np.percentile(means, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(values.mean()), float(low), float(high)
