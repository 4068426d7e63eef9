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


def psnr_masked(a, b, mask, max_val=255.0):
    """PSNR over the pixels where mask (..., H, W) is True (every channel of them): a, b (..., H, W, C)."""
    mask = np.broadcast_to(np.asarray(mask, bool)[..., None], np.shape(a))
    return psnr(np.asarray(a)[mask], np.asarray(b)[mask], max_val)


def chunk_scores(generated, items):
    """Single-chunk prediction scored per item, then averaged over items (data.chunk_items gives `items`):
    generated (n, K, H, W, 3) uint8, the frames sampled after each item's context.

      known_psnr        PSNR on the known region only: the part of each frame that was in view in the
                        last context frame (the marker left out), where a model that keeps what it has
                        seen is exact
      psnr              PSNR of whole frames
      repeat_last_psnr  the last context frame repeated K times (a model that never moves the view)
      flat_psnr         a flat frame of the last context frame's mean colour (knows colours, keeps nothing)
      oracle_psnr       the shift oracle: the known region exact, the incoming strip flat (keeps all, guesses
                        nothing)
      gain              psnr - repeat_last_psnr (the headline of earlier versions)"""
    ctx, tgt = items["context"], items["target"]
    last = np.repeat(ctx[:, -1:], tgt.shape[1], axis=1)  # (n, K, H, W, 3)
    flat = np.broadcast_to(ctx[:, -1:].mean(axis=(2, 3), keepdims=True).round().astype(np.uint8), tgt.shape)
    mean = lambda f: float(np.mean([f(i) for i in range(len(tgt))]))  # noqa: E731
    out = dict(known_psnr=mean(lambda i: psnr_masked(generated[i], tgt[i], items["known"][i])),
               psnr=mean(lambda i: psnr(generated[i], tgt[i])),
               repeat_last_psnr=mean(lambda i: psnr(last[i], tgt[i])),
               flat_psnr=mean(lambda i: psnr(flat[i], tgt[i])),
               oracle_psnr=mean(lambda i: psnr(items["oracle"][i], tgt[i])))
    out["gain"] = out["psnr"] - out["repeat_last_psnr"]
    return out


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
    """RGB uint8 (..., 3) -> HSV uint8 (..., 3), exactly as OpenCV's cvtColor(bgr, COLOR_BGR2HSV).

    For 8-bit images OpenCV keeps hue in half-degrees, H in 0-179, and S, V in 0-255:
      V = max(R, G, B),  d = V - min(R, G, B)
      S = 255 d / V                      (0 when V = 0)
      H = 30 (G - B) / d                 when V = R (R wins ties, then G); +180 when negative
      H = 30 (B - R) / d + 60            when V = G
      H = 30 (R - G) / d + 120           when V = B; H = 0 when d = 0 (grey)
    OpenCV divides by 12-bit fixed-point reciprocals and rounds; we use the same tables, which
    gives its output for all 2^24 colours (plain float rounding is off by one for about 2% of them).
    """
    x = np.asarray(frames).astype(np.int64)  # (..., 3) R, G, B
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)  # V = max(R, G, B)
    d = v - x.min(axis=-1)  # d = V - min(R, G, B)
    n = np.arange(1, 256, dtype=np.float64)
    # round(2^12 * 255 / V), 0 for V = 0
    s_recip = np.concatenate([[0], np.round(255 * 4096 / n)]).astype(np.int64)
    # round(2^12 * 30 / d), 0 for d = 0
    h_recip = np.concatenate([[0], np.round(180 * 4096 / (6 * n))]).astype(np.int64)
    s = (d * s_recip[v] + 2048) >> 12  # S = round(255 d / V)
    # the 60-degree sector, times d
    sector = np.where(v == r, g - b, np.where(v == g, b - r + 2 * d, r - g + 4 * d))
    h = (sector * h_recip[d] + 2048) >> 12  # H = round(30 sector / d), in half-degrees
    h = np.where(h < 0, h + 180, h)  # red wraps around: -30..-1 -> 150..179
    return np.stack([h, s, v], axis=-1).astype(np.uint8)


def content_scores(frames, luma_only=False):
    """PySceneDetect's content_val of every frame: (N, H, W, 3) uint8 RGB -> (N,) float64.

      dH_i = mean over pixels |H_i - H_{i-1}|, and dS_i, dV_i alike (hue is not treated as circular)
      c_i  = (w_H dH_i + w_S dS_i + w_V dV_i) / (w_H + w_S + w_V), weights 1, 1, 1 (0, 0, 1 with luma_only)
      c_0  = 0: the first frame has no predecessor, and this 0 still enters the first windows
    PySceneDetect's fourth term, dilated Canny edges, has weight 0 by default and is left out.
    """
    hsv = rgb_to_hsv(frames).astype(np.int32)  # (N, H, W, 3)
    n_pixels = hsv.shape[1] * hsv.shape[2]
    deltas = np.abs(hsv[1:] - hsv[:-1]).sum(axis=(1, 2)) / n_pixels  # (N-1, 3) mean |dH|, |dS|, |dV|
    w_h, w_s, w_v = (0.0, 0.0, 1.0) if luma_only else (1.0, 1.0, 1.0)
    score = (w_h * deltas[:, 0] + w_s * deltas[:, 1] + w_v * deltas[:, 2]) / (w_h + w_s + w_v)  # c_i
    return np.concatenate([[0.0], score])  # c_0 = 0


def scene_cuts(frames, adaptive_threshold=3.0, min_content_val=15.0, window_width=2, min_scene_len=15,
               luma_only=False):
    """Frame indices where a new scene starts, as PySceneDetect's AdaptiveDetector reports them.

    frames: (N, H, W, 3) uint8 RGB. With c_i from content_scores and w = window_width:
      scored    i = w .. N-1-w: frame i is judged once frames i-w .. i+w exist (frame 0 is in the first
                window)
      average   a_i = (c_{i-w} + .. + c_{i-1} + c_{i+1} + .. + c_{i+w}) / 2w
      ratio     r_i = min(c_i / a_i, 255); when |a_i| < 1e-5, r_i = 255 if c_i >= min_content_val, else 0
      cut at i  when r_i >= adaptive_threshold and c_i >= min_content_val and (i + w) - last >= min_scene_len,
                where last is the previous cut, or frame 0 before the first one
    The defaults are PySceneDetect's (3.0, 15.0, 2, 15 frames), which the paper's SCuts uses. With them no
    cut is found in frames 1-12, and a second cut needs 13 frames after the first.
    Where this differs from PySceneDetect:
    - the gap test: i + w is the frame just read when i is judged; releases 0.6.3 to 0.7.1 (March 2024 to
      July 2026, the paper's time among them) measure the gap from it, as here, while 0.7.2 measures it
      from i (i - last >= min_scene_len) and so drops a cut 13 or 14 frames after the previous one that we
      keep. Passing min_scene_len + window_width (17) counts as 0.7.2 does.
    - PySceneDetect reads an encoded file; a lossy codec changes H and S a little. We score the frames.
    - its SceneManager first shrinks frames 256 px wide or more by width // 256; ours are smaller.
    """
    content = content_scores(frames, luma_only)  # (N,) c_i
    cuts = []
    last = 0  # the first frame stands for the previous cut
    for i in range(window_width, len(content) - window_width):
        neighbours = [content[j] for j in range(i - window_width, i + window_width + 1) if j != i]
        average = sum(neighbours) / (2.0 * window_width)  # a_i
        if abs(average) >= 1e-5:
            ratio = min(content[i] / average, 255.0)  # r_i = min(c_i / a_i, 255)
        else:
            ratio = 255.0 if content[i] >= min_content_val else 0.0  # a flat window: any big change is a cut
        threshold_met = ratio >= adaptive_threshold and content[i] >= min_content_val
        if threshold_met and (i + window_width) - last >= min_scene_len:
            cuts.append(i)
            last = i
    return cuts


def count_scene_cuts(frames, **kwargs):
    """Number of scene cuts in a (N, H, W, 3) video (SCuts averages it over videos); lower is better."""
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


def revisit_mask(positions, min_gap, n=None):
    """(N,) bool: the frames j of revisit_pairs, the revisits SRC scores (the GIF's yellow marks, the play
    page)."""
    mask = np.zeros(len(positions) if n is None else n, bool)
    mask[[j for _, j in revisit_pairs(positions, min_gap)]] = True
    return mask


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


# ---------------------------------------------------------------- a long video against its ground truth


def score(generated, truth, positions, chunk, n_return):
    """The paper's Table 1 metrics of one long video against the truth (both (N, H, W, 3) uint8, the start
    frame first; positions (N, 2) the camera poses): PSNR and SSIM over the generated frames, the outward
    and return legs (the return: the last n_return chunks of K = chunk frames), SRC with revisits more than
    a context window (2K frames) after their first visit, scene cuts, and PSNR / SSIM per chunk."""
    K, N = chunk, len(generated)
    ret, out = slice(N - n_return * K, N), slice(1, N - n_return * K)
    src = src_metrics(generated, truth, positions, min_gap=2 * K)
    chunks = [slice(1 + i * K, 1 + (i + 1) * K) for i in range((N - 1) // K)]  # after the start frame
    return dict(psnr=psnr(generated[1:], truth[1:]), ssim=ssim(generated[1:], truth[1:]),
                outward_psnr=psnr(generated[out], truth[out]),
                return_psnr=psnr(generated[ret], truth[ret]) if n_return else float("nan"),
                src_psnr=src["src_psnr"], src_ssim=src["src_ssim"], scene_cuts=count_scene_cuts(generated),
                chunk_psnr=[psnr(generated[c], truth[c]) for c in chunks],
                chunk_ssim=[ssim(generated[c], truth[c]) for c in chunks])


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

