"""Token refinement (semi-amortized encoding): it recovers known tokens, leaves the decoder alone,
and is deterministic."""
import pytest
import torch

from nerv_rt.models.nerv import NeRVDecoder
from nerv_rt.models.presets import ModelConfig, preset
from nerv_rt.models.refine import refine_tokens, refinement_loss, stratified_frames
from nerv_rt.runtime.frames import frame_times


@pytest.fixture(scope="module")
def problem():
    """A random tiny decoder, a clip it renders exactly from tokens z_true, and a perturbed start."""
    torch.manual_seed(0)
    cfg = preset("tiny", 128)
    decoder = NeRVDecoder(cfg).eval().requires_grad_(False)
    frame_t = torch.from_numpy(frame_times(cfg.frames))
    z_true = torch.randn(2, cfg.tokens, cfg.token_dim)
    with torch.no_grad():
        video = decoder(z_true, frame_t)
    return decoder, frame_t, video, z_true + 0.5 * torch.randn_like(z_true)


def _mse(decoder, z, frame_t, video):
    with torch.no_grad():
        return (decoder(z, frame_t) - video).pow(2).flatten(1).mean(1)


def test_refinement_lowers_every_clips_error(problem):
    decoder, frame_t, video, start = problem
    weights = [p.clone() for p in decoder.parameters()]
    refined = refine_tokens(decoder, start, frame_t, video, steps=30)
    before, after = _mse(decoder, start, frame_t, video), _mse(decoder, refined, frame_t, video)
    assert (after < 0.5 * before).all(), (before, after)
    assert all(torch.equal(a, b) for a, b in zip(weights, decoder.parameters()))  # weights untouched
    assert all(p.grad is None for p in decoder.parameters())
    assert not refined.requires_grad and refined.shape == start.shape


def test_refinement_is_deterministic_and_zero_steps_is_identity(problem):
    decoder, frame_t, video, start = problem
    a = refine_tokens(decoder, start, frame_t, video, steps=3)
    b = refine_tokens(decoder, start, frame_t, video, steps=3)
    assert torch.equal(a, b) and not torch.equal(a, start)
    assert torch.equal(refine_tokens(decoder, start, frame_t, video, steps=0), start)
    with torch.no_grad():  # callers under no_grad (the runtime's engines) still get refined tokens
        assert torch.equal(refine_tokens(decoder, start, frame_t, video, steps=3), a)
    with pytest.raises(ValueError, match=">= 0"):
        refine_tokens(decoder, start, frame_t, video, steps=-1)


def test_stratified_frames_span_the_clip():
    """One frame from each of k equal spans, in time order; over many steps every frame is drawn."""
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(200):
        k = stratified_frames(16, 4, g)
        assert k.tolist() == sorted(k.tolist()) and [int(i) // 4 for i in k] == [0, 1, 2, 3]
        seen.update(k.tolist())
    assert seen == set(range(16))
    uneven = stratified_frames(10, 3, g)  # spans [0, 3), [3, 6), [6, 10)
    assert uneven.shape == (3,) and 0 <= uneven[0] < 3 <= uneven[1] < 6 <= uneven[2] < 10
    assert torch.equal(stratified_frames(4, 8, g), torch.arange(4))


def test_config_rejects_negative_refine_steps():
    with pytest.raises(ValueError, match="refine_steps"):
        ModelConfig(refine_steps=-1)


def test_refinement_loss_charges_wrong_motion_not_a_constant_offset():
    torch.manual_seed(0)
    err = torch.randn(2, 4, 3, 8, 8)
    expected = err.pow(2).mean(dim=(1, 2, 3, 4)) + 2.0 * (err[:, 1:] - err[:, :-1]).pow(2).mean(dim=(1, 2, 3, 4))
    assert torch.allclose(refinement_loss(err, 2.0), expected)
    assert torch.allclose(refinement_loss(err, 0.0), err.pow(2).mean(dim=(1, 2, 3, 4)))
    offset = err[:, :1].expand(-1, 4, -1, -1, -1)  # the same error in every frame: the motion is right
    assert torch.allclose(refinement_loss(offset, 5.0), refinement_loss(offset, 0.0))
    changed = err.clone()
    changed[1] += 1.0
    assert torch.equal(refinement_loss(changed, 2.0)[0], refinement_loss(err, 2.0)[0])  # clips are independent
    one_frame = err[:, :1]
    assert torch.allclose(refinement_loss(one_frame, 2.0), one_frame.pow(2).mean(dim=(1, 2, 3, 4)))  # no NaN


def test_refinement_uses_the_temporal_term(problem):
    decoder, frame_t, video, start = problem
    plain = refine_tokens(decoder, start, frame_t, video, steps=3, temporal_weight=0.0)
    assert not torch.equal(refine_tokens(decoder, start, frame_t, video, steps=3, temporal_weight=1.0), plain)
    single = refine_tokens(decoder, start, frame_t, video, steps=3, frames_per_step=1)
    assert torch.isfinite(single).all() and not torch.equal(single, start)
