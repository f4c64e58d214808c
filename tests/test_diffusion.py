"""Schedule, samplers (against closed forms and diffusers), Min-SNR weights, scheduled sampling."""
import numpy as np
import pytest
import torch

from nerv_rt.diffusion import (
    alphas_cumprod,
    linear_betas,
    make_sampler,
    min_snr_weights,
    q_sample,
    sampler_step,
)
from nerv_rt.diffusion.samplers import spaced_timesteps
from nerv_rt.diffusion.training import (
    scheduled_sampling_inputs,
    scheduled_sampling_prob,
)

ABAR = alphas_cumprod(linear_betas())


def test_linear_schedule_endpoints():
    b = linear_betas()
    assert b.shape == (1000,) and b[0] == pytest.approx(1e-4) and b[-1] == pytest.approx(0.02)
    assert np.all(np.diff(ABAR) < 0)


@pytest.mark.parametrize("steps", [1, 10, 50, 250])
def test_ddim_eta0_with_oracle_eps_recovers_x0(steps):
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((2, 32, 16)).astype(np.float64)
    noise = rng.standard_normal(x0.shape)
    table = make_sampler("ddim", steps, eta=0.0)
    a_T = ABAR[table.timesteps[0]]
    x = np.sqrt(a_T) * x0 + np.sqrt(1 - a_T) * noise
    for i, t in enumerate(table.timesteps):
        oracle = (x - np.sqrt(ABAR[t]) * x0) / np.sqrt(1 - ABAR[t])
        x = sampler_step(x, oracle, 0.0, table.c_x[i].astype(np.float64), table.c_eps[i].astype(np.float64), 0.0)
    np.testing.assert_allclose(x, x0, atol=1e-4)


def test_ddpm_equals_ddim_with_eta_one():
    ddpm, ddim = make_sampler("ddpm", 250), make_sampler("ddim", 250, eta=1.0)
    for a, b in ((ddpm.c_x, ddim.c_x), (ddpm.c_eps, ddim.c_eps), (ddpm.c_noise, ddim.c_noise)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ddim_matches_diffusers_scheduler():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                                    clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading")
    sched.set_timesteps(10)  # leading spacing: 900, 800, ..., 0, each step to the next one visited
    ours = make_sampler("ddim", 10, timesteps=sched.timesteps.numpy())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 8)).astype(np.float32)
    for i, t in enumerate(ours.timesteps):
        eps = rng.standard_normal(x.shape).astype(np.float32)
        want = sched.step(torch.from_numpy(eps), int(t), torch.from_numpy(x)).prev_sample.numpy()
        x = sampler_step(x, eps, 0.0, ours.c_x[i], ours.c_eps[i], 0.0)
        np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-5)


def test_sampler_step_is_backend_agnostic():
    table = make_sampler("ddpm", 20)
    rng = np.random.default_rng(2)
    x, eps, z = (rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3))
    ref = sampler_step(x, eps, z, table.c_x[5], table.c_eps[5], table.c_noise[5])
    got = sampler_step(*(torch.from_numpy(a) for a in (x, eps, z)), *(torch.from_numpy(c)[5] for c in (table.c_x, table.c_eps, table.c_noise)))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6)


def test_spaced_timesteps_and_bad_steps():
    np.testing.assert_array_equal(spaced_timesteps(4), [999, 666, 333, 0])
    with pytest.raises(ValueError):
        spaced_timesteps(0)
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("euler", 10)


def test_min_snr_weights_match_formula():
    w = min_snr_weights(ABAR, gamma=5.0)
    snr = ABAR / (1 - ABAR)
    expected = np.where(snr > 5.0, 5.0 / snr, 1.0)
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    assert w[0] < 1e-2 and w[-1] == 1.0


def test_v_weights_are_the_v_loss_on_the_eps_loss():
    """eps_hat - eps = sqrt(abar) (v_hat - v) at fixed x_t, so w_v * eps-MSE = min(SNR+1, 5)/(SNR+1) * v-MSE."""
    rng = np.random.default_rng(0)
    t = np.array([0, 100, 500, 999])
    a = ABAR[t][:, None]
    x0, noise, v_hat = (rng.standard_normal((4, 8)) for _ in range(3))
    x_t = np.sqrt(a) * x0 + np.sqrt(1 - a) * noise
    v = np.sqrt(a) * noise - np.sqrt(1 - a) * x0
    eps_hat = np.sqrt(1 - a) * x_t + np.sqrt(a) * v_hat
    snr = ABAR[t] / (1 - ABAR[t])
    w_v = min_snr_weights(ABAR, gamma=5.0, prediction="v")[t]
    np.testing.assert_allclose(w_v * ((eps_hat - noise) ** 2).mean(1),
                               np.minimum(snr + 1, 5.0) / (snr + 1) * ((v_hat - v) ** 2).mean(1), rtol=1e-9)
    with pytest.raises(ValueError, match="prediction"):
        min_snr_weights(ABAR, prediction="x0")


def test_q_sample_numpy_and_torch_agree():
    rng = np.random.default_rng(3)
    x0, noise = rng.standard_normal((4, 5)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)
    t = np.array([0, 10, 500, 999])
    a = q_sample(x0, t, noise, ABAR.astype(np.float32))
    b = q_sample(torch.from_numpy(x0), torch.from_numpy(t), torch.from_numpy(noise), torch.from_numpy(ABAR).float())
    np.testing.assert_allclose(a, b.numpy(), rtol=1e-6)


def test_scheduled_sampling_ramp_and_inputs():
    assert scheduled_sampling_prob(0, 1000) == 0.0
    assert scheduled_sampling_prob(150, 1000) == pytest.approx(0.25)
    assert scheduled_sampling_prob(900, 1000) == pytest.approx(0.5)
    abar = torch.from_numpy(ABAR).float()
    x0, noise = torch.randn(4, 6, 3), torch.randn(4, 6, 3)
    t = torch.tensor([5, 100, 500, 998])
    y = torch.zeros(4, dtype=torch.long)
    model = lambda x, tt, yy: torch.zeros_like(x)  # noqa: E731 - eps' = 0: estimate differs from forward noising
    own = torch.tensor([True, False, True, False])
    x_t, target = scheduled_sampling_inputs(model, x0, t, noise, y, abar, own)
    plain = q_sample(x0, t, noise, abar)
    torch.testing.assert_close(x_t[~own], plain[~own])
    torch.testing.assert_close(target[~own], noise[~own])
    assert not torch.allclose(x_t[own], plain[own])
    # the target is the eps that maps x0 to the substituted input
    a = abar[t].view(-1, 1, 1)
    torch.testing.assert_close(a.sqrt() * x0 + (1 - a).sqrt() * target, x_t, atol=1e-5, rtol=1e-5)
