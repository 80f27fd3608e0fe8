"""Noise schedules and DDPM/DDIM steps against their closed forms."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from polx_ddpm_transformer.schedule import (
    MAX_BETA,
    NoiseSchedule,
    ddim_timesteps,
    make_betas,
    sample_ddim,
    sample_ddpm,
)

N = 100


def cosine_alpha_bar(s: float) -> float:
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


@pytest.mark.parametrize("kind", ["squaredcos_cap_v2", "linear"])
@pytest.mark.parametrize("n", [10, 100, 1000])
def test_betas_in_unit_interval_and_alphas_cumprod_strictly_decreasing(kind, n):
    schedule = NoiseSchedule(make_betas(kind, n))
    assert schedule.betas.shape == (n,)
    assert bool(((schedule.betas > 0) & (schedule.betas < 1)).all())
    ac = schedule.alphas_cumprod
    assert bool((ac[1:] < ac[:-1]).all()) and 0 < float(ac[-1]) < float(ac[0]) < 1


def test_squaredcos_cap_v2_matches_its_closed_form():
    betas = make_betas("squaredcos_cap_v2", N)
    expected = [min(1 - cosine_alpha_bar((i + 1) / N) / cosine_alpha_bar(i / N), MAX_BETA) for i in range(N)]
    torch.testing.assert_close(betas, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert float(betas[-1]) == MAX_BETA  # alpha_bar(1) = 0: the cap is what keeps the last step finite
    assert bool((betas[:-1] < MAX_BETA).all())
    # unclipped, the product telescopes: alphas_cumprod[i] = alpha_bar((i + 1) / N) / alpha_bar(0)
    ac = NoiseSchedule(betas).alphas_cumprod
    closed = torch.tensor([cosine_alpha_bar((i + 1) / N) / cosine_alpha_bar(0) for i in range(N - 1)], dtype=torch.float64)
    torch.testing.assert_close(ac[:-1], closed, rtol=1e-10, atol=1e-14)


def test_linear_betas_run_from_start_to_end():
    betas = make_betas("linear", N, beta_start=1e-4, beta_end=0.02)
    assert float(betas[0]) == pytest.approx(1e-4) and float(betas[-1]) == pytest.approx(0.02)
    torch.testing.assert_close(betas.diff(), torch.full((N - 1,), (0.02 - 1e-4) / (N - 1), dtype=torch.float64))


def test_unknown_schedule_is_rejected_by_name():
    with pytest.raises(ValueError, match="beta_schedule"):
        make_betas("cosine", N)


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["squaredcos_cap_v2", "linear"]), t=st.integers(0, N - 1), seed=st.integers(0, 2**31 - 1))
def test_add_noise_then_predicting_x0_with_the_true_noise_inverts(kind, t, seed):
    schedule = NoiseSchedule(make_betas(kind, N))
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(3, 8, 2, generator=gen, dtype=torch.float64)
    noise = torch.randn(3, 8, 2, generator=gen, dtype=torch.float64)
    x_t = schedule.add_noise(x0, noise, torch.full((3,), t))
    x0_hat, eps = schedule.split(x_t, noise, t, "epsilon")
    torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-9)
    assert eps is noise
    # the sample parameterisation recovers the noise from the true x0 the same way
    _, eps_hat = schedule.split(x_t, x0, t, "sample")
    torch.testing.assert_close(eps_hat, noise, rtol=0, atol=1e-9)


def test_add_noise_uses_each_rows_own_step():
    schedule = NoiseSchedule(make_betas("squaredcos_cap_v2", N))
    x0, noise = torch.ones(2, 4, 1), torch.zeros(2, 4, 1)
    out = schedule.add_noise(x0, noise, torch.tensor([0, 99]))
    assert out[0, 0, 0] == pytest.approx(math.sqrt(schedule.alpha_bar(0)), rel=1e-6)
    assert out[1, 0, 0] == pytest.approx(math.sqrt(schedule.alpha_bar(99)), rel=1e-5)


def test_ddim_timesteps_use_leading_spacing():
    assert ddim_timesteps(100, 10) == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert ddim_timesteps(100, 3) == [66, 33, 0]
    assert ddim_timesteps(100, 100) == list(range(99, -1, -1))
    assert ddim_timesteps(100, 1) == [0]


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_one_ddim_step_from_pure_noise_with_an_oracle_returns_x0(prediction_type):
    schedule = NoiseSchedule(make_betas("squaredcos_cap_v2", N))
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 16, 2, generator=gen), torch.randn(4, 16, 2, generator=gen)
    x_T = schedule.add_noise(x0, noise, torch.full((4,), N - 1))
    oracle = noise if prediction_type == "epsilon" else x0
    x0_hat, eps_hat = schedule.split(x_T, oracle, N - 1, prediction_type)
    out = schedule.ddim_step(x0_hat, eps_hat, t_prev=-1)
    # epsilon: x0 = (x_T - sqrt(1 - a) eps) / sqrt(a) with a ~ 2e-7 magnifies float32 rounding
    atol = 1e-6 if prediction_type == "sample" else 1e-2
    torch.testing.assert_close(out, x0, rtol=0, atol=atol)


def oracle_denoiser(schedule, x0):
    """(x_t, t) -> the exact (x0, eps) for a chain that starts at x0."""

    def denoise(x, t):
        a = schedule.alpha_bar(t)
        return x0, (x - math.sqrt(a) * x0) / math.sqrt(1 - a)

    return denoise


@pytest.mark.parametrize("num_steps", [1, 3, 10, 100])
def test_ddim_with_an_oracle_lands_on_x0(num_steps):
    schedule = NoiseSchedule(make_betas("squaredcos_cap_v2", N))
    x0 = torch.rand(2, 8, 2, dtype=torch.float64) * 2 - 1
    out = sample_ddim(schedule, oracle_denoiser(schedule, x0), torch.randn(2, 8, 2, dtype=torch.float64), num_steps)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)


def test_ddpm_with_an_oracle_lands_on_x0_whatever_the_noise():
    schedule = NoiseSchedule(make_betas("squaredcos_cap_v2", N))
    x0 = torch.rand(2, 8, 2, dtype=torch.float64) * 2 - 1
    out = sample_ddpm(
        schedule, oracle_denoiser(schedule, x0), torch.randn(2, 8, 2, dtype=torch.float64),
        lambda: torch.randn(2, 8, 2, dtype=torch.float64),
    )
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)  # the t=0 step puts all weight on x0, no noise


def test_ddpm_step_adds_the_fixed_small_variance():
    schedule = NoiseSchedule(make_betas("squaredcos_cap_v2", N))
    x_t, x0, t = torch.zeros(1), torch.zeros(1), 50
    noise = torch.ones(1)
    a_t, a_prev = schedule.alpha_bar(t), schedule.alpha_bar(t - 1)
    posterior_std = math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    assert float(schedule.ddpm_step(x_t, x0, t, noise)) == pytest.approx(posterior_std, rel=1e-6)


def test_ddim_eta0_is_deterministic_given_the_initial_noise():
    schedule = NoiseSchedule(make_betas("squaredcos_cap_v2", N))
    weight = torch.randn(2, 2, generator=torch.Generator().manual_seed(1))

    def denoise(x, t):  # an arbitrary fixed nonlinear model
        return schedule.split(x, torch.tanh(x @ weight) * (1 + t / N), t, "epsilon")

    start = torch.randn(3, 8, 2, generator=torch.Generator().manual_seed(2))
    first = sample_ddim(schedule, denoise, start.clone(), 10)
    assert torch.equal(first, sample_ddim(schedule, denoise, start.clone(), 10))
    assert not torch.allclose(first, sample_ddim(schedule, denoise, start + 0.1, 10))
