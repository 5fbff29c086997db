"""Flow matching: loss conversions and samplers against closed-form answers."""

import pytest
import torch

from happyhorse.diffusion import (
    add_noise,
    flow_loss,
    get_schedule,
    restart_schedule,
    sample,
    shift_sigma,
    velocity_from_x0,
)


def test_perfect_prediction_has_zero_loss():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 7, 5, generator=g), torch.randn(3, 7, 5, generator=g)
    sigma = torch.tensor([0.1, 0.5, 0.9])[:, None, None]
    x_t = add_noise(x0, noise, sigma)
    assert flow_loss(x0, x0, noise, x_t, sigma).abs().max() < 1e-10
    torch.testing.assert_close(velocity_from_x0(x0, x_t, sigma), noise - x0, atol=1e-5, rtol=1e-5)
    assert flow_loss(x0 + 0.1, x0, noise, x_t, sigma).min() > 0


def test_loss_mask_excludes_clean_tokens():
    x0, noise = torch.zeros(1, 4, 2), torch.ones(1, 4, 2)
    sigma = torch.full((1, 1, 1), 0.5)
    x_t = add_noise(x0, noise, sigma)
    output = torch.zeros(1, 4, 2)
    output[0, :2] = 5.0  # wrong, but on tokens the mask excludes
    mask = torch.tensor([[False, False, True, True]])
    assert flow_loss(output, x0, noise, x_t, sigma, mask).item() == 0


def test_schedule_and_shift():
    s = get_schedule(4, 1.0)
    assert s == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    shifted = get_schedule(4, 3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0 and all(a > b for a, b in zip(shifted[1:-1], s[1:-1], strict=True))
    assert shift_sigma(torch.tensor(0.5), 3.0).item() == pytest.approx(0.75)


@pytest.mark.parametrize("method", ["euler", "dpmpp_2m", "renoise"])
def test_samplers_land_on_a_single_data_point(method):
    target = torch.randn(3, 5)
    out = sample(
        lambda xs, s: [target],
        [torch.randn(3, 5)],
        get_schedule(6, 3.0),
        method,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(out[0], target)


def test_second_order_sampler_beats_euler_on_gaussian_data():
    c = 0.5  # data ~ N(0, c^2): the exact x0 predictor is linear in x

    def denoise(xs, s):
        return [(1 - s) * c * c / ((1 - s) ** 2 * c * c + s * s) * xs[0]]

    def final_std(method, steps):
        noise = torch.randn(50_000, 2, generator=torch.Generator().manual_seed(0))
        return sample(denoise, [noise], get_schedule(steps), method)[0].std().item()

    assert abs(final_std("dpmpp_2m", 8) - c) < 0.5 * abs(final_std("euler", 8) - c)
    assert abs(final_std("euler", 64) - c) < 0.02  # Euler converges, at first order


def test_a_restart_walks_the_band_again_and_renoises_to_the_level_it_climbs_to():
    sigmas = get_schedule(8, 2.0)  # 1, .933, .857, .769, .667, .545, .4, .222, 0
    once = restart_schedule(sigmas, 0.5, 0.8)
    assert once == sigmas[:7] + sigmas[3:7] + sigmas[7:]  # down to .4, back up to .769, down again
    assert restart_schedule(sigmas, 0.5, 0.8, times=2) == sigmas[:7] + sigmas[3:7] * 2 + sigmas[7:]
    assert restart_schedule(sigmas, 0.5, 0.8, times=0) == sigmas
    for low, high in ((0.8, 0.5), (0.0, 0.5), (0.5, 1.0), (0.41, 0.44)):
        with pytest.raises(ValueError, match="restart"):
            restart_schedule(sigmas, low, high)

    c = 0.5  # data ~ N(0, c^2); the exact x0 predictor, recording the state's spread at each call
    seen = []

    def denoise(xs, s):
        seen.append((s, xs[0].std().item()))
        return [(1 - s) * c * c / ((1 - s) ** 2 * c * c + s * s) * xs[0]]

    noise = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    out = sample(denoise, [noise], once, "dpmpp_2m", generator=torch.Generator().manual_seed(1))[0]
    assert len(seen) == 11  # 8 steps and 3 more for the band; the climb itself calls no model
    # after the climb the state has the spread of x_s' = (1 - s') x0 + s' z: the right noise level
    s_up, spread = seen[6]
    assert s_up == pytest.approx(sigmas[3]) and spread == pytest.approx(
        ((1 - s_up) ** 2 * c * c + s_up**2) ** 0.5, rel=0.02
    )
    # the exact model's draw keeps the spread the plain schedule ends at (set there by the last coarse steps)
    assert abs(out.std().item() - sample(denoise, [noise], sigmas, "dpmpp_2m")[0].std().item()) < 0.005
    # with no fresh noise the climb only rescales: the state is pulled toward x0 and spreads less
    seen.clear()
    sample(denoise, [noise], once, "dpmpp_2m", fresh_noise=lambda xs: [torch.zeros_like(x) for x in xs])
    assert seen[6][1] < spread - 0.05
    # a restart is the plain sampler to `low`, the climb, then a new sampler from `high`: the solver keeps no
    # history across the climb, given tokens are re-imposed after it, and the climb counts as a step
    x, z = torch.randn(2, 2000, 8, generator=torch.Generator().manual_seed(2))
    given = (torch.arange(2000) % 7 == 0, torch.full((2000, 8), 0.3))
    steps_seen = []
    inputs = []

    def watched(xs, s):
        inputs.append(xs[0][given[0]])
        return denoise(xs, s)

    whole = sample(
        watched,
        [x],
        once,
        "dpmpp_2m",
        [given],
        fresh_noise=lambda xs: [z],
        callback=lambda i, n: steps_seen.append((i, n)),
    )[0]
    down = sample(denoise, [x], sigmas[:7], "dpmpp_2m", [given])[0]
    a = (1 - sigmas[3]) / (1 - sigmas[6])
    climbed = torch.where(given[0][:, None], given[1], a * down + (sigmas[3] ** 2 - (a * sigmas[6]) ** 2) ** 0.5 * z)
    torch.testing.assert_close(whole, sample(denoise, [climbed], sigmas[3:], "dpmpp_2m", [given])[0])
    assert steps_seen == [(i, len(once) - 1) for i in range(1, len(once))]
    assert len(inputs) == 11 and all(torch.equal(v, torch.full_like(v, 0.3)) for v in inputs)
    with pytest.raises(ValueError, match="restart: no schedule levels between 0.1 and 0.3 above 0"):
        restart_schedule(get_schedule(2, 3.0), 0.1, 0.3)  # [1, .75, 0]: nothing left to restart but the end


def test_clean_tokens_are_kept_through_sampling():
    given = torch.full((1, 4, 3), 0.7)
    mask = torch.tensor([[True, False, False, True]])
    out = sample(
        lambda xs, s: [torch.zeros_like(xs[0])], [torch.randn(1, 4, 3)], get_schedule(5), "dpmpp_2m", [(mask, given)]
    )
    assert torch.equal(out[0][0, 0], given[0, 0]) and torch.equal(out[0][0, 3], given[0, 3])
    assert torch.equal(out[0][0, 1], torch.zeros(3))


def test_bad_sampler_and_steps_are_refused():
    with pytest.raises(ValueError, match="sampler"):
        sample(lambda xs, s: xs, [torch.zeros(1)], [1.0, 0.0], "heun")
    with pytest.raises(ValueError, match="steps"):
        get_schedule(0)
