"""The SePPO objective against computations written out independently here."""

from __future__ import annotations

import math

import pytest
import torch

from seppo_video.seppo.loss import per_sample_error, preference_loss, sft_loss

BETA, T = 2.5, 1000


def _log_sigmoid(x: float) -> float:
    # Stable by hand: log sigmoid(x) = -log(1 + exp(-x)).
    return -math.log1p(math.exp(-x)) if x > -30 else x - math.log1p(math.exp(x))


def _expected(pw, pr, rw, rr, aaf):
    """Per-pair loss values from the formula in ALGORITHM.md, in plain Python floats."""
    values = []
    for e_tw, e_tr, e_rw, e_rr in zip(pw, pr, rw, rr):
        anchor = e_rw - e_tw
        if aaf == "sign":
            s = 1.0 if anchor > 0 else (-1.0 if anchor < 0 else 0.0)
        elif aaf == "indicator":
            s = 1.0 if anchor > 0 else 0.0
        else:
            s = 1.0
        d_w, d_ref = e_tw - e_rw, e_tr - e_rr
        values.append(-_log_sigmoid(-BETA * T * (d_w - s * d_ref)))
    return values


# pair 0: policy better on the winner (a > 0); pair 1: reference better (a < 0); pair 2: a tie.
POLICY_W = [0.100, 0.2010, 0.300]
POLICY_REF = [0.1503, 0.2499, 0.3102]
REF_W = [0.1004, 0.2000, 0.300]
REF_REF = [0.1500, 0.2501, 0.3100]


@pytest.mark.parametrize("aaf", ["sign", "indicator", "none"])
def test_matches_formula_per_case(aaf):
    for i in range(3):
        args = [torch.tensor([v[i]], dtype=torch.float64) for v in (POLICY_W, POLICY_REF, REF_W, REF_REF)]
        loss, _ = preference_loss(*args, beta=BETA, num_train_timesteps=T, aaf=aaf)
        expected = _expected([POLICY_W[i]], [POLICY_REF[i]], [REF_W[i]], [REF_REF[i]], aaf)[0]
        assert loss.item() == pytest.approx(expected, rel=1e-9), (aaf, i)


@pytest.mark.parametrize("aaf", ["sign", "indicator", "none"])
def test_batch_loss_is_mean_of_per_pair_losses(aaf):
    args = [torch.tensor(v, dtype=torch.float64) for v in (POLICY_W, POLICY_REF, REF_W, REF_REF)]
    loss, stats = preference_loss(*args, beta=BETA, num_train_timesteps=T, aaf=aaf)
    per_pair = _expected(POLICY_W, POLICY_REF, REF_W, REF_REF, aaf)
    assert loss.item() == pytest.approx(sum(per_pair) / 3, rel=1e-9)
    # Averaging inside the log-sigmoid (a known porting bug) gives a different value here.
    assert abs(loss.item() - _wrong_mean_inside(aaf)) > 1e-3
    flips = {"sign": 2 / 3, "indicator": 2 / 3, "none": 0.0}[aaf]  # pairs 1 and 2 have s <= 0
    assert stats.flip_rate == pytest.approx(flips)


def _wrong_mean_inside(aaf):
    signs = {"sign": [1, -1, 0], "indicator": [1, 0, 0], "none": [1, 1, 1]}[aaf]
    inside = [
        -BETA * T * ((pw - rw) - s * (pr - rr))
        for pw, pr, rw, rr, s in zip(POLICY_W, POLICY_REF, REF_W, REF_REF, signs)
    ]
    return -_log_sigmoid(sum(inside) / 3)


def test_stats_are_batch_means():
    args = [torch.tensor(v, dtype=torch.float64) for v in (POLICY_W, POLICY_REF, REF_W, REF_REF)]
    _, stats = preference_loss(*args, beta=BETA, num_train_timesteps=T, aaf="none")
    d_w = [a - b for a, b in zip(POLICY_W, REF_W)]
    d_ref = [a - b for a, b in zip(POLICY_REF, REF_REF)]
    assert stats.d_w == pytest.approx(sum(d_w) / 3)
    assert stats.d_ref == pytest.approx(sum(d_ref) / 3)
    wins = sum(-(dw - dr) > 0 for dw, dr in zip(d_w, d_ref))
    assert stats.implicit_acc == pytest.approx(wins / 3)


def test_no_gradient_through_reference_errors_or_sign():
    policy_w = torch.tensor(POLICY_W, dtype=torch.float64, requires_grad=True)
    policy_ref = torch.tensor(POLICY_REF, dtype=torch.float64, requires_grad=True)
    ref_w = torch.tensor(REF_W, dtype=torch.float64, requires_grad=True)
    ref_ref = torch.tensor(REF_REF, dtype=torch.float64, requires_grad=True)
    loss, _ = preference_loss(policy_w, policy_ref, ref_w, ref_ref, beta=BETA, num_train_timesteps=T, aaf="sign")
    loss.backward()
    assert ref_w.grad is None and ref_ref.grad is None
    # With s held constant: dL_i/de_tw = sigmoid(-z_i) * beta*T / B with z_i the inside term,
    # and dL_i/de_tr = -s_i * sigmoid(-z_i) * beta*T / B. A gradient through sign() would be 0
    # almost everywhere anyway, so we also check the values, which depend on s.
    signs = [1.0, -1.0, 0.0]
    for i, s in enumerate(signs):
        z = -BETA * T * ((POLICY_W[i] - REF_W[i]) - s * (POLICY_REF[i] - REF_REF[i]))
        sig = 1 / (1 + math.exp(z))  # sigmoid(-z)
        assert policy_w.grad[i].item() == pytest.approx(sig * BETA * T / 3, rel=1e-9)
        assert policy_ref.grad[i].item() == pytest.approx(-s * sig * BETA * T / 3, rel=1e-9, abs=1e-12)


def test_tie_with_indicator_and_sign_drops_reference_term():
    # a == 0 exactly: s = 0 for both flippers, so the loss ignores the reference sample.
    base = [torch.tensor([0.3], dtype=torch.float64)] * 3
    for aaf in ("sign", "indicator"):
        low, _ = preference_loss(base[0], torch.tensor([0.0], dtype=torch.float64), base[1], base[2],
                                 beta=BETA, num_train_timesteps=T, aaf=aaf)
        high, _ = preference_loss(base[0], torch.tensor([9.0], dtype=torch.float64), base[1], base[2],
                                  beta=BETA, num_train_timesteps=T, aaf=aaf)
        assert low.item() == pytest.approx(math.log(2)) and high.item() == pytest.approx(math.log(2))


def test_rejects_non_1d_errors():
    with pytest.raises(ValueError, match="1-D"):
        preference_loss(torch.zeros(2, 1), torch.zeros(2), torch.zeros(2), torch.zeros(2),
                        beta=BETA, num_train_timesteps=T, aaf="sign")
    with pytest.raises(ValueError, match="aaf"):
        preference_loss(*[torch.zeros(2)] * 4, beta=BETA, num_train_timesteps=T, aaf="flip")


def test_per_sample_error_reduces_over_every_axis():
    torch.manual_seed(0)
    prediction = torch.randn(3, 4, 5, 6, 7)
    target = torch.randn(3, 4, 5, 6, 7)
    errors = per_sample_error(prediction, target)
    assert errors.shape == (3,)
    for b in range(3):
        manual = sum(
            (prediction[b, c, f, h, w].item() - target[b, c, f, h, w].item()) ** 2
            for c in range(4) for f in range(5) for h in range(6) for w in range(7)
        ) / (4 * 5 * 6 * 7)
        assert errors[b].item() == pytest.approx(manual, rel=1e-5)


def test_per_sample_error_sees_an_error_in_the_last_width_column_only():
    target = torch.zeros(2, 4, 3, 5, 6)
    prediction = target.clone()
    prediction[1, :, :, :, -1] = 2.0  # only the last column of width differs
    errors = per_sample_error(prediction, target)
    assert errors[0].item() == 0.0
    assert errors[1].item() == pytest.approx(4.0 * (4 * 3 * 5) / (4 * 3 * 5 * 6))


def test_sft_loss_is_mean_error():
    assert sft_loss(torch.tensor([1.0, 2.0, 6.0])).item() == pytest.approx(3.0)


# ------------------------------------------------------------------ training-health statistics and the SFT term


def test_health_statistics_match_a_hand_computation():
    args = [torch.tensor(v, dtype=torch.float64) for v in (POLICY_W, POLICY_REF, REF_W, REF_REF)]
    _, stats = preference_loss(*args, beta=BETA, num_train_timesteps=T, aaf="sign")
    signs = [1.0, -1.0, 0.0]  # pair 0: a > 0, pair 1: a < 0, pair 2: a tie
    inside = [-BETA * T * ((pw - rw) - s * (pr - rr))
              for pw, pr, rw, rr, s in zip(POLICY_W, POLICY_REF, REF_W, REF_REF, signs)]
    mean = sum(inside) / 3
    assert stats.d_w_rel == pytest.approx(sum((pw - rw) / rw for pw, rw in zip(POLICY_W, REF_W)) / 3, rel=1e-9)
    assert stats.d_ref_rel == pytest.approx(sum((pr - rr) / rr for pr, rr in zip(POLICY_REF, REF_REF)) / 3, rel=1e-9)
    assert stats.inside_abs == pytest.approx(sum(abs(x) for x in inside) / 3, rel=1e-9)
    assert stats.inside_std == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in inside) / 3), rel=1e-9)
    assert stats.err_w == pytest.approx(sum(POLICY_W) / 3, rel=1e-9)


@pytest.mark.parametrize("inside", [-40.0, 0.0, 5.0, 6.8, 7.0, 12.0])
def test_a_pair_is_saturated_exactly_when_its_gradient_is_below_one_thousandth(inside):
    """Saturated means the per-pair gradient of the loss w.r.t. its inside term, sigmoid(-inside), is below 1e-3."""
    ref_w, ref_ref = 0.5, 0.5
    policy_w = torch.tensor([ref_w - inside / (BETA * T)], dtype=torch.float64, requires_grad=True)
    loss, stats = preference_loss(policy_w, torch.tensor([ref_ref], dtype=torch.float64),
                                  torch.tensor([ref_w], dtype=torch.float64), torch.tensor([ref_ref], dtype=torch.float64),
                                  beta=BETA, num_train_timesteps=T, aaf="none")
    loss.backward()
    gradient_wrt_inside = policy_w.grad.item() / (BETA * T)  # d inside / d e_theta(x_w) = -beta*T, dL/d inside < 0
    assert gradient_wrt_inside == pytest.approx(1 / (1 + math.exp(inside)), rel=1e-6)
    assert stats.saturated == (1.0 if 1 / (1 + math.exp(inside)) < 1e-3 else 0.0)


@pytest.mark.parametrize("aaf", ["sign", "indicator", "none"])
def test_sft_weight_adds_lambda_times_the_winners_mean_error(aaf):
    weight = 0.7
    policy_w = torch.tensor(POLICY_W, dtype=torch.float64, requires_grad=True)
    rest = [torch.tensor(v, dtype=torch.float64) for v in (POLICY_REF, REF_W, REF_REF)]
    loss, _ = preference_loss(policy_w, *rest, beta=BETA, num_train_timesteps=T, aaf=aaf, sft_weight=weight)
    per_pair = _expected(POLICY_W, POLICY_REF, REF_W, REF_REF, aaf)
    assert loss.item() == pytest.approx(sum(per_pair) / 3 + weight * sum(POLICY_W) / 3, rel=1e-9)
    loss.backward()
    plain_w = policy_w.detach().clone().requires_grad_(True)
    plain, _ = preference_loss(plain_w, *rest, beta=BETA, num_train_timesteps=T, aaf=aaf)
    plain.backward()
    # The SFT term's own gradient: weight / B on every winner error.
    torch.testing.assert_close(policy_w.grad - plain_w.grad, torch.full((3,), weight / 3, dtype=torch.float64))
