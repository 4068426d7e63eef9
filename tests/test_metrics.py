"""Tests for metrics.py: each checks a property that a wrong formula would break."""

import numpy as np

import data
import metrics


def smooth_texture(height, width, seed, cell=8):
    """Low-frequency RGB image: a random grid upsampled bilinearly, uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    grid = rng.uniform(40, 215, size=(height // cell + 1, width // cell + 1, 3))

    def interp_matrix(n_out, n_in):
        # row r holds the linear-interpolation weights of output pixel r
        pos = np.arange(n_out) * (n_in - 1) / (n_out - 1)
        lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
        frac = pos - lo
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo] = 1 - frac
        m[np.arange(n_out), lo + 1] = frac
        return m

    rows, cols = interp_matrix(height, grid.shape[0]), interp_matrix(width, grid.shape[1])
    image = np.einsum("hi,ijc,wj->hwc", rows, grid, cols)
    return np.round(image).astype(np.uint8)


def pan(image, n_frames, size=32):
    """Video of a size x size window sliding 1 px per frame to the right: (N, size, size, 3)."""
    return np.stack([image[:size, t:t + size] for t in range(n_frames)])


def add_noise(frames, sigma, seed=0):
    rng = np.random.default_rng(seed)
    noisy = frames.astype(np.float64) + rng.normal(0, sigma, frames.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- psnr


def test_psnr_identical_is_cap():
    a = smooth_texture(32, 32, seed=0)
    assert metrics.psnr(a, a) == metrics.PSNR_CAP
    assert np.all(metrics.psnr_per_frame(a[None], a[None]) == metrics.PSNR_CAP)


def test_psnr_uniform_error():
    a = np.full((2, 16, 16, 3), 100, dtype=np.uint8)
    b = a + 10  # no clipping, so mse = 100 exactly
    assert abs(metrics.psnr(a, b) - 10 * np.log10(255.0**2 / 100.0)) < 1e-6


def test_psnr_gaussian_noise():
    grey = np.full((4, 64, 64, 3), 128, dtype=np.uint8)  # mid-grey so 4 sigma never clips
    for sigma in (5.0, 10.0):
        value = metrics.psnr(grey, add_noise(grey, sigma))
        assert abs(value - 20 * np.log10(255.0 / sigma)) < 0.3
    per_frame = metrics.psnr_per_frame(grey, add_noise(grey, 5.0))
    assert per_frame.shape == (4,)


# ---------------------------------------------------------------- ssim


def test_ssim_identical_is_one():
    a = smooth_texture(32, 32, seed=1)
    assert abs(metrics.ssim(a, a) - 1.0) < 1e-12
    small = a[:8, :8]  # smaller than the 11 px window: falls back to a smaller one
    assert abs(metrics.ssim(small, small) - 1.0) < 1e-12


def test_ssim_decreases_with_noise():
    a = pan(smooth_texture(32, 64, seed=2), 3)
    scores = [metrics.ssim(a, add_noise(a, s)) for s in (5.0, 15.0, 30.0)]
    assert 1.0 > scores[0] > scores[1] > scores[2]
    assert metrics.ssim_per_frame(a, add_noise(a, 5.0)).shape == (3,)


def test_ssim_symmetric():
    a = smooth_texture(32, 32, seed=3)
    b = add_noise(a, 20.0)
    assert abs(metrics.ssim(a, b) - metrics.ssim(b, a)) < 1e-12


def test_ssim_brightness_shift_beats_noise_of_same_mse():
    a = smooth_texture(32, 32, seed=4)  # values in [40, 215], so +10 does not clip
    shifted = a + 10  # mse 100, structure intact
    noisy = add_noise(a, 10.0)  # mse about 100, structure damaged
    s_shift, s_noise = metrics.ssim(a, shifted), metrics.ssim(a, noisy)
    assert s_shift < 1.0
    assert s_shift > s_noise


# ---------------------------------------------------------------- scene cuts


def still(image, n_frames):
    """A camera that does not move: the same (H, W, 3) image n_frames times."""
    return np.repeat(image[None], n_frames, axis=0)


def test_hsv_is_opencv_uint8():
    # OpenCV's 8-bit HSV: hue in half-degrees (0-179), S and V in 0-255, fixed-point rounding
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 0, 128], [77, 77, 77], [0, 1, 58]], np.uint8)
    expected = [[0, 255, 255],  # red: hue 0
                [60, 255, 255],  # green: 120 degrees -> 60
                [120, 255, 255],  # blue: 240 degrees -> 120
                [165, 255, 255],  # 30 * (0 - 128) / 255 = -15.06 -> -15, wraps to 165
                [0, 0, 77],  # grey: no hue, no saturation
                [120, 255, 58]]  # 30 * (0 - 1 + 4 * 58) / 58 = 119.48, but OpenCV's reciprocal table gives 120
    assert metrics.rgb_to_hsv(rgb).tolist() == expected


def test_hue_only_change_is_scored_on_the_0_179_scale():
    red, blue = np.full((32, 32, 3), (200, 40, 40), np.uint8), np.full((32, 32, 3), (40, 40, 200), np.uint8)
    video = np.concatenate([still(red, 15), still(blue, 15)])
    scores = metrics.content_scores(video)
    # same S (204) and V (200); H goes 0 -> 120, so c = (120 + 0 + 0) / 3 = 40 (on a 0-255 hue scale: 56.7)
    assert scores[15] == 40.0
    assert np.all(np.delete(scores, 15) == 0.0)
    assert metrics.scene_cuts(video) == [15]


def test_smooth_pan_has_no_cuts():
    video = pan(smooth_texture(32, 96, seed=5), 30)
    assert metrics.scene_cuts(video) == []
    assert metrics.count_scene_cuts(video) == 0


def test_world_pan_has_no_cuts():
    frames, _ = data.render_episode(200001, ["go right"] * 4 + ["go down"] * 4)  # 4 px per frame, 33 frames
    assert metrics.count_scene_cuts(frames) == 0


def test_jump_to_new_texture_is_one_cut():
    first = pan(smooth_texture(32, 96, seed=6), 30)
    second = pan(smooth_texture(32, 96, seed=7), 30)
    video = np.concatenate([first, second])
    assert metrics.scene_cuts(video) == [30]


def test_cut_frames_follow_the_window_and_min_scene_len():
    a, b, c = (smooth_texture(32, 32, seed=s) for s in (12, 13, 14))  # any two differ by c > 40
    # frame i is judged with frames i-2 .. i+2 (window_width 2): frame 2 is the first, frame 1 never
    assert metrics.scene_cuts(np.concatenate([still(a, 2), still(b, 10)]), min_scene_len=0) == [2]
    assert metrics.scene_cuts(np.concatenate([still(a, 1), still(b, 10)]), min_scene_len=0) == []
    # min_scene_len 15 counts from frame 0 and from the frame read, 2 past the judged one: i + 2 - last >= 15
    assert metrics.scene_cuts(np.concatenate([still(a, 12), still(b, 20)])) == []
    assert metrics.scene_cuts(np.concatenate([still(a, 13), still(b, 20)])) == [13]
    assert metrics.scene_cuts(np.concatenate([still(a, 13), still(b, 13), still(c, 20)])) == [13, 26]
    assert metrics.scene_cuts(np.concatenate([still(a, 13), still(b, 12), still(c, 20)])) == [13]


# ---------------------------------------------------------------- scene revisit consistency


def test_revisit_pairs_out_and_back():
    positions = np.array([(0, 0), (0, 4), (0, 8), (0, 4), (0, 0)])
    assert metrics.revisit_pairs(positions, min_gap=1) == [(1, 3), (0, 4)]
    assert metrics.revisit_pairs(positions, min_gap=10) == []


def test_src_identical_generation_hits_cap():
    video = pan(smooth_texture(32, 64, seed=8), 5)
    positions = np.array([(0, 0), (0, 4), (0, 8), (0, 4), (0, 0)])
    result = metrics.src_metrics(video, video, positions, min_gap=1)
    assert result["n_pairs"] == 2
    assert result["revisit_psnr"] == metrics.PSNR_CAP
    assert abs(result["revisit_ssim"] - 1.0) < 1e-12


def test_src_compares_with_first_visit():
    a = smooth_texture(32, 32, seed=9)
    b = smooth_texture(32, 32, seed=10)
    # frames 0, 2, 4 share a position; frame 4 copies the first visit (0), not the
    # second (2), so only comparing against the first visit gives the cap
    video = np.stack([a, b, b, a, a])
    positions = np.array([(0, 0), (1, 0), (0, 0), (2, 0), (0, 0)])
    result = metrics.src_metrics(video, video, positions, min_gap=3)
    assert result["n_pairs"] == 1
    assert result["src_psnr"] == metrics.PSNR_CAP


def test_src_no_pairs_is_nan():
    video = pan(smooth_texture(32, 64, seed=11), 3)
    result = metrics.src_metrics(video, video, np.array([(0, 0), (0, 1), (0, 2)]), min_gap=1)
    assert result["n_pairs"] == 0
    assert np.isnan(result["src_psnr"]) and np.isnan(result["revisit_ssim"])


# ---------------------------------------------------------------- frechet distance


def test_frechet_self_is_zero():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))  # correlated features
    scale = np.trace(np.cov(feats, rowvar=False))
    assert abs(metrics.frechet_distance(feats, feats)) < 1e-6 * scale


def test_frechet_from_stats_exact():
    # 1D: (0, 1) vs (3, 4) gives 9 + 1 + 4 - 2 * sqrt(1 * 4) = 10
    assert abs(metrics.frechet_from_stats(np.zeros(1), np.eye(1), np.full(1, 3.0), 4 * np.eye(1)) - 10.0) < 1e-12
    # diagonal covariances commute: sum((sqrt(a) - sqrt(b))^2) + ||d||^2
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    d = np.array([1.0, -2.0, 0.5])
    expected = np.sum(d**2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = metrics.frechet_from_stats(np.zeros(3), np.diag(var_a), d, np.diag(var_b))
    assert abs(got - expected) < 1e-9


def test_frechet_samples_approach_mean_shift():
    rng = np.random.default_rng(1)
    d = np.array([1.0, 2.0, 0.0, -1.0])  # ||d||^2 = 6
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4)) + d
    assert abs(metrics.frechet_distance(a, b) - 6.0) < 0.1


# ---------------------------------------------------------------- bootstrap
