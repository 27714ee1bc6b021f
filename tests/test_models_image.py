"""Image EBT, DiT, Gaussian diffusion / DDIM, PSNR and image data: exact contracts on CPU in seconds."""
import gzip
import math

import numpy as np
import pytest
import torch

from ebtkit.data.images import (DataError, ImageDataConfig, get_image_batch, load_image_data, read_idx,
                                to_float, to_uint8_range)
from ebtkit.tasks.denoise import PRESETS, preset
from ebtkit.eval.denoise import pixel_mse, psnr
from ebtkit.core.models.diffusion import GaussianDiffusion
from ebtkit.core.models.image import DiT, ImageEBT, ImageModelConfig, build_image_model, count_params
from ebtkit.core.nn.adaln import AdaLNBlock, AdaLNStack, FinalLayer, patchify, sincos_2d, unpatchify
from ebtkit.core.thinking import think
from tests.helpers import tol


def small(model="ebt", **kw):
    base = dict(model=model, d_model=32, n_layers=2, n_heads=2, patch_size=7, mlp_ratio=2.0)
    base.update(kw)
    torch.manual_seed(0)
    return build_image_model(ImageModelConfig(**base))


# ------------------------------------------------------------------------------------------ layers
def test_patchify_roundtrip_and_layout():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    p = patchify(x, 4)
    assert p.shape == (2, 4, 4 * 4 * 3)
    assert torch.equal(unpatchify(p, 4, 3, 8, 8), x)
    # patch 1 is the top-right 4×4 block; its first value is pixel (0, 4) of channel 0
    assert p[0, 1, 0] == x[0, 0, 0, 4]
    with pytest.raises(ValueError):
        patchify(x, 3)


def test_sincos_positions_are_fixed_distinct_and_bounded():
    pos = sincos_2d(32, 4, 4)
    assert pos.shape == (16, 32)
    assert pos.abs().max() <= 1.0
    assert torch.cdist(pos, pos).add(torch.eye(16)).min() > 0          # every patch has its own position
    assert not small().embed.pos.requires_grad


def test_adaln_zero_blocks_are_identity_at_init():
    torch.manual_seed(0)
    stack = AdaLNStack(32, 3, 4)
    from ebtkit.core.nn.adaln import init_adaln_zero
    init_adaln_zero(stack)
    x, c = torch.randn(2, 5, 32), torch.randn(2, 32)
    assert torch.equal(stack(x, c), x)
    block = AdaLNBlock(32, 4)
    init_adaln_zero(block)
    assert torch.equal(block(x, c), x)
    final = FinalLayer(32, 7)
    init_adaln_zero(final)
    assert torch.equal(final(x, c), torch.zeros(2, 5, 7))


# ------------------------------------------------------------------------------------------ models
def test_shape_contracts():
    ebt, dit = small("ebt"), small("dit")
    y = torch.randn(3, 1, 28, 28)
    assert ebt(y).shape == (3,)
    assert dit(y, torch.tensor([0, 5, 99])).shape == (3, 1, 28, 28)
    with pytest.raises(ValueError):
        ebt(torch.randn(3, 1, 32, 32))
    with pytest.raises(ValueError):
        ebt(y, landscape=1)
    with pytest.raises(ValueError, match="choose from ebt, dit"):
        ImageModelConfig(model="unet")
    rgb = small("ebt", channels=3, image_size=16, patch_size=4)
    assert rgb(torch.randn(2, 3, 16, 16)).shape == (2,)


def test_energy_is_constant_at_init_so_the_first_step_is_the_identity():
    ebt = small("ebt")
    y = torch.randn(4, 1, 28, 28)
    assert torch.equal(ebt(y), torch.zeros(4))
    assert torch.equal(ebt(torch.randn(4, 1, 28, 28)), torch.zeros(4))
    tr = think(ebt.energy_fn(), y, steps=1, alpha=ebt.step_size(), create_graph=True)
    assert torch.equal(tr.final, y)
    # ...yet training can start: the loss reaches the zero-initialised head through the second-order term
    loss = (tr.final - torch.zeros_like(y)).pow(2).mean()
    (g,) = torch.autograd.grad(loss, ebt.head.linear.weight)
    assert g.abs().sum() > 0


def test_energy_is_the_mean_over_patches_and_thinking_lowers_it():
    ebt = small("ebt")
    torch.manual_seed(1)
    for p in ebt.parameters():                      # leave the zero init so the energy depends on the image
        p.data.add_(0.05 * torch.randn_like(p))
    y = torch.randn(2, 1, 28, 28)
    x = ebt.blocks(ebt.embed(y), ebt.cond.weight[0].expand(2, -1))
    per_patch = ebt.head(x, ebt.cond.weight[0].expand(2, -1)).squeeze(-1)          # B,T
    assert per_patch.shape == (2, 16)
    torch.testing.assert_close(ebt(y), per_patch.mean(1))
    tr = think(ebt.energy_fn(), y, steps=3, alpha=1e-3, final_energy=True)
    assert (tr.energies[-1] < tr.energies[0]).all()


def test_ebt_and_dit_match_in_size():
    for name in PRESETS:
        cfg = preset(name)
        ebt = build_image_model(cfg.model)
        dit = build_image_model(cfg.replace(**{"model.model": "dit"}).model)
        assert ebt.trunk_params() == dit.trunk_params(), name        # the shared block stack is identical
        if name != "tiny":                                            # the documented comparison: within 5 %
            assert abs(count_params(ebt) - count_params(dit)) / count_params(dit) < 0.05, name
    assert isinstance(ebt, ImageEBT) and isinstance(dit, DiT)


# ------------------------------------------------------------------------------------------ diffusion
def test_schedule_and_noise_levels():
    d = GaussianDiffusion()
    assert d.t_for_sigma(0.1) == 99 and d.t_for_sigma(0.2) == 199
    betas = np.linspace(1e-4, 2e-2, 1000)
    assert math.isclose(float(d.alpha_bar(99)), float(np.prod(1 - betas[:100])), rel_tol=1e-12)
    assert math.isclose(d.noise_std(99), 0.3205, abs_tol=1e-3)     # ≈0.32 on [-1, 1] images (paper notes)
    assert float(d.alpha_bar(-1)) == 1.0
    with pytest.raises(ValueError):
        d.t_for_sigma(0.0)
    x0, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    xt = d.q_sample(x0, torch.tensor([0, 999]), eps)
    a = d.alphas_cumprod[[0, 999]].float().view(2, 1, 1, 1)
    torch.testing.assert_close(xt, a.sqrt() * x0 + (1 - a).sqrt() * eps)


def test_ddim_timesteps():
    assert GaussianDiffusion.ddim_timesteps(99, 100) == list(range(99, -2, -1))
    assert GaussianDiffusion.ddim_timesteps(99, 1) == [99, -1]
    ts = GaussianDiffusion.ddim_timesteps(199, 3)
    assert ts[0] == 199 and ts[-1] == -1 and len(set(ts)) == 4
    with pytest.raises(ValueError):
        GaussianDiffusion.ddim_timesteps(9, 11)


@pytest.mark.parametrize("t_start,n", [(99, 1), (99, 3), (99, 100), (199, 7), (999, 50)])
def test_ddim_with_exact_noise_returns_the_clean_image(t_start, n):
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = d.q_sample(x0, t_start, eps)

    def oracle(x, t):                 # the exact ε that maps x back to x0 at timestep t
        a, s = d.alpha_bar(t).view(-1, 1, 1, 1).sqrt(), (1 - d.alpha_bar(t)).view(-1, 1, 1, 1).sqrt()
        return (x - a * x0) / s

    # each step's x̂_0 = (x − √(1−ᾱ)·ε)/√ᾱ cancels terms of size |x|/√ᾱ, largest at t_start (smallest ᾱ): four
    # elementwise roundings (the oracle's two, x̂_0's two) against that magnitude (tests.helpers.tol; measured ≤ 1.5 u)
    scale = float(x_t.abs().max() / d.alpha_bar(torch.tensor([t_start])).sqrt())
    for clip in (True, False):
        torch.testing.assert_close(d.ddim_sample(oracle, x_t, t_start, n, clip=clip), x0,
                                   **tol(torch.float64, 1, depth=4, scale=scale))


def test_dit_loss_is_the_simple_epsilon_mse():
    d = GaussianDiffusion()
    dit = small("dit")
    x0, eps, t = torch.randn(2, 1, 28, 28), torch.randn(2, 1, 28, 28), torch.tensor([3, 50])
    assert torch.equal(dit(d.q_sample(x0, t, eps), t), torch.zeros_like(x0))   # zero-initialised output
    torch.testing.assert_close(d.training_loss(dit, x0, t, eps), eps.pow(2).mean())


# ------------------------------------------------------------------------------------------ metrics
def test_psnr_on_known_values():
    # the paper's Table 4 (MSE, PSNR) pairs on 0–255 pixels
    for mse, db in ((142.98, 26.58), (122.55, 27.25), (718.7, 19.56), (305.2, 23.29)):
        assert abs(psnr(mse) - db) < 0.01
    assert psnr(255.0 ** 2) == 0.0 and psnr(0.0) == math.inf
    black, white = -torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    assert pixel_mse(black, white).tolist() == [255.0 ** 2] * 2
    assert pixel_mse(white * 3, white).tolist() == [0.0, 0.0]         # clamped to the pixel range first
    half, black = torch.zeros(1, 1, 2, 2), -torch.ones(1, 1, 2, 2)
    assert math.isclose(float(pixel_mse(half, black)), 127.5 ** 2)


# ------------------------------------------------------------------------------------------ data
def _write_idx(path, arr, gz=False):
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    data = head + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_idx_files_folders_and_errors(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (20, 28, 28)).astype(np.uint8)
    _write_idx(tmp_path / "imgs-idx3-ubyte.gz", arr, gz=True)
    assert np.array_equal(read_idx(tmp_path / "imgs-idx3-ubyte.gz"), arr)
    d = load_image_data(ImageDataConfig(path=str(tmp_path / "imgs-idx3-ubyte.gz")))
    assert d.train.shape == (18, 1, 28, 28) and d.test.shape == (2, 1, 28, 28) and d.train.dtype == torch.uint8
    assert torch.equal(d.test[:, 0], torch.from_numpy(arr[-2:]))
    folder = tmp_path / "fm"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte", arr)
    _write_idx(folder / "t10k-images-idx3-ubyte", arr[:5])
    d = load_image_data(ImageDataConfig(path=str(folder)))
    assert len(d.train) == 20 and len(d.test) == 5
    _write_idx(tmp_path / "labels-idx1-ubyte", np.arange(10))
    with pytest.raises(DataError, match="not images"):
        read_idx(tmp_path / "labels-idx1-ubyte")
    with pytest.raises(DataError, match="expects"):
        load_image_data(ImageDataConfig(path=str(folder)), image_size=32)
    with pytest.raises(DataError, match="no such"):
        load_image_data(ImageDataConfig(path=str(tmp_path / "missing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no IDX files and no images"):
        load_image_data(ImageDataConfig(path=str(tmp_path / "empty")))


def test_folder_of_images_is_cropped_resized_and_split(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)).save(tmp_path / f"{i:02d}.png")
    d = load_image_data(ImageDataConfig(path=str(tmp_path)), image_size=28, channels=1)
    assert d.train.shape == (9, 1, 28, 28) and d.test.shape == (1, 1, 28, 28)


def test_bundled_mini_set_and_batches():
    d = load_image_data(ImageDataConfig(dataset="mini"))
    assert d.train.shape == (512, 1, 28, 28) and d.test.shape == (128, 1, 28, 28) and d.source == "mini"
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    b = get_image_batch(d.train, 8, g1)
    assert b.shape == (8, 1, 28, 28) and b.min() >= -1 and b.max() <= 1
    assert torch.equal(b, get_image_batch(d.train, 8, g2))
    u = torch.tensor([0, 128, 255], dtype=torch.uint8)
    torch.testing.assert_close(to_uint8_range(to_float(u)), u.float())
