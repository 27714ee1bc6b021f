"""Sequence (next-vector / next-frame) metrics and pictures: hand-computed values, skimage agreement, files."""
import numpy as np
import pytest
import torch
from PIL import Image

from ebtkit.eval import sequence_metrics as sm
from tests.helpers import tol

skimage_metrics = pytest.importorskip("skimage.metrics")

H, W = 12, 10
FS = (H, W)


def blob_frames(K: int, seed: int = 0) -> torch.Tensor:
    """K frames (K, H·W) in [0, 1]: a bright square moving right on a faint noise background."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(K, H, W, generator=g, dtype=torch.float64) * 0.1
    for k in range(K):
        x[k, 3:8, k:k + 4] = 0.9
    return x.reshape(K, H * W)


# ------------------------------------------------------------------------------------------ metrics
def test_frame_mse_is_a_sum_over_pixels():
    t = torch.zeros(2, 3, H * W)
    p = t.clone()
    p[0, 1, 5] = 0.5                                   # one pixel off by 0.5 → 0.25
    p[1, 2, :] = 0.1                                   # every pixel off by 0.1 → H·W·0.01 (a sum, not a mean)
    m = sm.frame_mse(p, t)
    assert m.shape == (2, 3)
    expect = torch.zeros(2, 3, dtype=torch.float64)
    expect[0, 1] = 0.25
    expect[1, 2] = H * W * 0.01
    # float32 frames, float64 sums over the H·W pixels: the float32 rounding of 0.1 (tests.helpers.tol) dominates
    torch.testing.assert_close(m, expect, **tol(torch.float32, H * W, scale=float(expect.max())))
    with pytest.raises(ValueError):
        sm.frame_mse(p, t[:1])


def test_ssim_identical_inverse_and_matches_skimage():
    x = blob_frames(4)
    s = sm.ssim_frames(x, x, FS)
    assert s.shape == (4,)
    torch.testing.assert_close(s, torch.ones(4, dtype=torch.float64))
    assert (sm.ssim_frames(x, 1 - x, FS) < 0.5).all()
    y = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).clamp(0, 1)
    ours = sm.ssim_frames(y, x, FS)
    direct = skimage_metrics.structural_similarity(y[2].reshape(H, W).numpy(), x[2].reshape(H, W).numpy(),
                                                   data_range=1.0)
    # the same float64 SSIM in another order: the mean over H·W pixels of 7 × 7-window statistics (tests.helpers.tol)
    ssim_tol = tol(torch.float64, H * W * 7 * 7, depth=3)["atol"]
    assert ours[2].item() == pytest.approx(direct, abs=ssim_tol)
    # leading dims are kept, and overshooting predictions are clipped to [0, 1] before SSIM
    assert sm.ssim_frames(y.reshape(2, 2, -1), x.reshape(2, 2, -1), FS).shape == (2, 2)
    over = x * 1.6 - 0.3
    clipped = skimage_metrics.structural_similarity(over[1].clamp(0, 1).reshape(H, W).numpy(),
                                                    x[1].reshape(H, W).numpy(), data_range=1.0)
    raw = skimage_metrics.structural_similarity(over[1].reshape(H, W).numpy(), x[1].reshape(H, W).numpy(),
                                                data_range=1.0)
    assert abs(clipped - raw) > 1e-3
    assert sm.ssim_frames(over, x, FS)[1].item() == pytest.approx(clipped, abs=ssim_tol)
    with pytest.raises(ValueError):
        sm.ssim_frames(x, x, (H, W + 1))


def test_ssim_without_skimage_says_how_to_install(monkeypatch):
    import builtins
    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("skimage"):
            raise ImportError("no skimage")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(ImportError, match=r"pip install 'ebtkit\[video\]'"):
        sm.ssim_frames(torch.zeros(1, H * W), torch.zeros(1, H * W), FS)


def test_horizon_errors_time_series_per_step_and_feature():
    N, K, F = 3, 4, 2
    t = torch.randn(N, K, F, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = t.clone()
    for k in range(K):                                 # error grows with the step: feature 0 off by k+1, feature 1 by −2(k+1)
        p[:, k, 0] += k + 1
        p[:, k, 1] -= 2 * (k + 1)
    r = sm.horizon_errors(p, t, units=["°C", "hPa"])
    mse = [((k + 1) ** 2 + (2 * (k + 1)) ** 2) / 2 for k in range(K)]
    mae = [((k + 1) + 2 * (k + 1)) / 2 for k in range(K)]
    assert r["mse"]["per_step"] == pytest.approx(mse)
    assert r["mae"]["per_step"] == pytest.approx(mae)
    assert r["mse"]["mean"] == pytest.approx(sum(mse) / K)
    assert r["mae"]["mean"] == pytest.approx(sum(mae) / K)
    assert r["mse"]["per_step"] == sorted(r["mse"]["per_step"])
    pf = r["per_feature"]
    assert pf["mae"] == pytest.approx([2.5, 5.0])                       # mean of 1..4, of 2..8
    assert pf["mse"] == pytest.approx([7.5, 30.0])                      # mean of k², of 4k²
    assert pf["units"] == ["°C", "hPa"]
    assert "frame_mse" not in r and "ssim" not in r
    with pytest.raises(ValueError):
        sm.horizon_errors(p, t, units=["°C"])
    assert "per_feature" not in sm.horizon_errors(torch.zeros(1, 2, 40), torch.zeros(1, 2, 40))


def test_horizon_errors_video_adds_frame_mse_and_ssim():
    N, K = 2, 3
    t = torch.stack([blob_frames(K, seed=s) for s in range(N)])        # (N, K, F)
    p = t.clone()
    for k in range(K):                                 # k+1 pixels off by 0.5 at step k
        p[:, k, : k + 1] += 0.5
    r = sm.horizon_errors(p, t, frame_shape=FS)
    assert r["frame_mse"]["per_step"] == pytest.approx([0.25 * (k + 1) for k in range(K)])
    assert r["mse"]["per_step"] == pytest.approx([0.25 * (k + 1) / (H * W) for k in range(K)])
    assert r["mae"]["per_step"] == pytest.approx([0.5 * (k + 1) / (H * W) for k in range(K)])
    ssim = sm.ssim_frames(p, t, FS)
    assert r["ssim"]["per_step"] == pytest.approx(ssim.mean(0).tolist())
    assert r["ssim"]["mean"] == pytest.approx(ssim.mean().item())
    assert r["ssim"]["per_step"][0] > r["ssim"]["per_step"][-1]
    assert "per_feature" not in r


def test_energy_error_spearman():
    e = torch.tensor([[0.1, 0.5], [0.9, 2.0]])
    assert sm.energy_error_spearman(e, e * 10 + 3) == pytest.approx(1.0)
    assert sm.energy_error_spearman(e, -e) == pytest.approx(-1.0)
    assert sm.energy_error_spearman(e, e.exp()) == pytest.approx(1.0)          # ranks only
    assert sm.energy_error_spearman(torch.tensor([1.0, 2.0, float("nan"), 3.0]),
                                    torch.tensor([3.0, 2.0, 0.0, 1.0])) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        sm.energy_error_spearman(e, e.reshape(-1))


# ------------------------------------------------------------------------------------------ files
def _png(path) -> np.ndarray:
    assert path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("L"), dtype=np.float64)


def test_plot_strip(tmp_path):
    K = 5
    t = blob_frames(K)
    preds = {"EBT": (t + 0.05).clamp(0, 1), "Transformer++": t.roll(1, 0)}
    path = tmp_path / "strip.png"
    sm.plot_strip(t, preds, FS, path, observed=blob_frames(6, seed=3))
    assert _png(path).var() > 0
    sm.plot_strip(blob_frames(14), {"EBT": blob_frames(14)}, FS, tmp_path / "long.png", max_frames=4)
    assert _png(tmp_path / "long.png").var() > 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []          # no temp files left
    with pytest.raises(ValueError):
        sm.plot_strip(t, {"EBT": t[:2]}, FS, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_write_gif_frames_and_size(tmp_path):
    K, T0, scale = 4, 3, 3
    t = blob_frames(K)
    obs = torch.zeros(T0, H * W)                       # constant context: frames must still not be merged
    preds = {"EBT": t, "Transformer++": t * 0.5}
    path = tmp_path / "roll.gif"
    sm.write_gif(t, preds, FS, path, observed=obs, fps=5, scale=scale)
    assert path.stat().st_size > 0
    P = 1 + len(preds)
    with Image.open(path) as im:
        assert im.format == "GIF"
        assert im.n_frames == T0 + K
        assert im.size == (P * W * scale + 2 * (P - 1), sm.GIF_BAR + sm.GIF_LABEL + H * scale)
        assert im.info.get("loop") == 0
        im.seek(T0 + K - 1)
        last = np.asarray(im.convert("L"))
    # last frame, ground-truth panel: the upscaled last target frame (nearest neighbour)
    top = sm.GIF_BAR + sm.GIF_LABEL
    gt = last[top:, : W * scale]
    expect = np.kron((t[-1].reshape(H, W).numpy() * 255).round(), np.ones((scale, scale)))
    assert np.abs(gt.astype(float) - expect).max() <= 2
    sm.write_gif(t, {"EBT": t}, FS, tmp_path / "noobs.gif")
    with Image.open(tmp_path / "noobs.gif") as im:
        assert im.n_frames == K and im.size == (2 * W * 4 + 2, sm.GIF_BAR + sm.GIF_LABEL + H * 4)


def test_error_plots(tmp_path):
    sm.plot_error_vs_horizon({"EBT": [1.0, 2.0, 3.5], "Transformer++": [1.2, 2.4, 3.0]}, tmp_path / "h.png",
                             ylabel="MSE per frame", title="Moving MNIST",
                             bands={"EBT": ([0.9, 1.8, 3.1], [1.1, 2.3, 3.9])})
    assert _png(tmp_path / "h.png").var() > 0
    sm.plot_error_vs_nfe({"EBT think longer": [(1, 3.0), (2, 2.5), (4, 2.2)], "Transformer++": [(1, 2.6)]},
                         tmp_path / "n.png", ylabel="MSE")
    assert _png(tmp_path / "n.png").var() > 0
    with pytest.raises(ValueError):
        sm.plot_error_vs_horizon({"EBT": [1.0, 2.0]}, tmp_path / "x.png", ylabel="MSE", bands={"EBT": ([1], [2])})


def test_plot_series(tmp_path):
    T0, K, F = 12, 6, 3
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(T0, F, generator=g).cumsum(0)
    tgt = obs[-1] + torch.randn(K, F, generator=g).cumsum(0)
    sm.plot_series(obs, tgt, {"EBT": tgt + 0.1, "Transformer++": tgt - 0.2}, ["temp", "pressure", "wind"],
                   ["°C", "hPa", "m/s"], tmp_path / "s.png")
    assert _png(tmp_path / "s.png").var() > 0
    with pytest.raises(ValueError):
        sm.plot_series(obs, tgt, {}, ["a"], ["b"], tmp_path / "bad.png")
