"""Shapes, decoder behaviour, demodulation, gradients, adaLN-Zero, and the MAC budget of preset L."""
import copy
from dataclasses import replace

import pytest
import torch

from nerv_rt.diffusion.schedule import alphas_cumprod, linear_betas
from nerv_rt.errors import ConfigError, NervError
from nerv_rt.models.dit import ImplicitDiT
from nerv_rt.models.hyper_ae import NeRVVAE, kl_divergence, patchify
from nerv_rt.models.nerv import apply_shared, demodulate, make_upsample, transposed_as_pixel_shuffle
from nerv_rt.models.presets import PRESETS, RESOLUTIONS, ModelConfig, preset
from nerv_rt.models.stats import describe

SDVAE_DECODER_GMAC = {128: 1241.15, 256: 4977.50}  # diffusers AutoencoderKL SD-1.x, 16 frames, flop counter


def _run(cfg, device, batch=2, frames=5):
    vae, dit = NeRVVAE(cfg).to(device), ImplicitDiT(cfg).to(device)
    video = torch.rand(batch, cfg.frames, 3, cfg.res, cfg.res, device=device) * 2 - 1
    recon, mean, logvar = vae(video, torch.linspace(0, 1, frames, device=device), torch.randn(batch, cfg.tokens, cfg.token_dim, device=device))
    eps = dit(mean, torch.rand(batch, device=device) * 999, torch.zeros(batch, dtype=torch.long, device=device))
    return recon, mean, logvar, eps


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("res", RESOLUTIONS)
def test_shapes_every_preset(name, res):
    cfg = preset(name, res)
    real = name in ("tiny", "S") and res == 128 or name == "tiny"
    device = "cpu" if real else "meta"
    with torch.no_grad():
        recon, mean, logvar, eps = _run(cfg, device, batch=2 if real else 1)
    assert recon.shape == (2 if real else 1, 5, 3, res, res)
    assert mean.shape == logvar.shape == eps.shape == (2 if real else 1, cfg.tokens, cfg.token_dim)
    assert cfg.tokens == {128: {"tiny": 32}.get(name, 128), 256: {"tiny": 40}.get(name, 160)}[res]


def test_decoder_any_frame_count_and_fractional_times():
    cfg = preset("tiny", 128)
    dec = NeRVVAE(cfg).decoder.eval()
    z = torch.randn(1, cfg.tokens, cfg.token_dim)
    with torch.no_grad():
        for f in (1, 3, 40):
            assert dec(z, torch.linspace(0, 1, f)).shape == (1, f, 3, 128, 128)
        t = torch.tensor([0.0, 0.25, 1 / 3, 1.0, 1.5])  # fractional and beyond training range
        out = dec(z, t)
        single = dec(z, t[1:2])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 1], single[:, 0], atol=1e-5, rtol=1e-5)  # frames are independent queries


def test_batched_decoding_equals_per_video():
    cfg = preset("tiny", 128)
    dec = NeRVVAE(cfg).decoder.eval()
    z = torch.randn(3, cfg.tokens, cfg.token_dim)
    t = torch.linspace(0, 1, 4)
    with torch.no_grad():
        batched = dec(z, t)
        single = torch.cat([dec(z[i:i + 1], t) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)


def test_transposed_conv_as_pixel_shuffle_is_the_same_map():
    """What CPU bf16 autocast runs in place of the upsampling's grouped transposed conv (oneDNN's is slow there)."""
    torch.manual_seed(0)
    up = make_upsample("transposed", 8, 4)
    torch.nn.init.normal_(up.bias)
    x = torch.randn(3, 2 * 8, 5, 5)  # 3 frames, 2 videos as channel groups
    torch.testing.assert_close(transposed_as_pixel_shuffle(up, x, 2), apply_shared(up, x, 2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(transposed_as_pixel_shuffle(up, x[:, :8], 1), up(x[:, :8]), atol=1e-5, rtol=1e-5)


def test_decoder_under_cpu_bf16_autocast_tracks_fp32(monkeypatch):
    """`train ... --precision bf16` on the CPU: the grouped (B > 1) path runs its upsampling as pixel shuffles and
    stays within bf16 rounding of the fp32 frames, with gradients that reach the tokens."""
    import nerv_rt.models.nerv as nerv

    calls = []
    monkeypatch.setattr(nerv, "transposed_as_pixel_shuffle",
                        lambda *a: calls.append(1) or transposed_as_pixel_shuffle(*a))
    torch.manual_seed(0)
    cfg = preset("tiny", 128)
    dec = NeRVVAE(cfg).decoder
    z = torch.randn(3, cfg.tokens, cfg.token_dim, requires_grad=True)
    t = torch.linspace(0, 1, 4)
    want = dec(z, t)
    assert not calls  # fp32: the transposed convs themselves
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = dec(z, t)
    assert got.dtype == torch.bfloat16 and len(calls) == len(dec.ups)
    err = (got.float() - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt()
    assert err < 0.02, f"relative RMS error {err:.4f}"
    got.float().pow(2).mean().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_attention_stays_fp32_under_cpu_autocast():
    """CPU autocast would run scaled_dot_product_attention in bf16 (8x slower backward there): it must see fp32."""
    from nerv_rt.models.transformer import Attention

    torch.manual_seed(0)
    attn, x = Attention(32, 4), torch.randn(2, 10, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = attn(x)
        qkv = attn.qkv(x).reshape(2, 10, 3, 4, 8).permute(2, 0, 3, 1, 4)
        with torch.autocast("cpu", enabled=False):
            inner = torch.nn.functional.scaled_dot_product_attention(*qkv.float().unbind(0)).to(qkv.dtype)
        want = attn.proj(inner.transpose(1, 2).reshape(2, 10, 32))
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_demodulated_kernels_have_unit_rms():
    k = torch.randn(2, 24, 3 * 9) * 5
    rms = demodulate(k).pow(2).mean(-1).sqrt()
    torch.testing.assert_close(rms, torch.ones_like(rms), atol=1e-5, rtol=1e-5)


def test_demodulation_does_not_overflow_in_fp16():
    """Rows whose sum of squares is far past fp16's 65504 (fan-in 9216, as in preset L)."""
    k = torch.randn(4, 9216) * 8
    assert k.pow(2).sum(-1).min() > 65504
    half = demodulate(k.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), demodulate(k), atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("name,scale,frames", [("S", 16, 2), ("L", 8, 1)])
def test_decoders_in_fp16_and_bf16_match_fp32(name, scale, frames):
    """Tokens large enough that the heads' rows sum past 65504 squared (the old sum-of-squares demodulation
    overflowed in fp16 and its kernels vanished): fp16 and bf16 decoders stay finite and >= 35 dB."""
    from nerv_rt.models.nerv import NeRVDecoder

    cfg = preset(name, 128)
    torch.manual_seed(0)
    dec = NeRVDecoder(cfg).eval()
    z, t = scale * torch.randn(1, cfg.tokens, cfg.token_dim), torch.linspace(0, 1, frames)
    with torch.no_grad():
        assert max(c.head(z).pow(2).sum(-1).max() for c in dec.convs) > 65504
        ref = dec(z, t)
        for dtype in (torch.float16, torch.bfloat16):
            low = NeRVDecoder(cfg).eval()
            low.load_state_dict(dec.state_dict())
            out = low.to(dtype)(z, t).float()
            assert torch.isfinite(out).all(), dtype
            psnr = 10 * torch.log10(4 / (out - ref).pow(2).mean())
            assert psnr >= 35, (dtype, psnr)


@pytest.mark.parametrize("switch,values", [("param", ["channel", "repeat", "fmm"]), ("reuse", ["multihead", "direct", "none"]),
                                           ("upsample", ["transposed", "pixelshuffle", "bilinear"]), ("side", ["residual", "vanilla", "skips"]),
                                           ("grid", [1, 16])])
def test_ablation_switches(switch, values):
    for v in values:
        cfg = preset("tiny", 128, **{switch: v})
        dec = NeRVVAE(cfg).decoder
        out = dec(torch.randn(2, cfg.tokens, cfg.token_dim), torch.linspace(0, 1, 3))
        assert out.shape == (2, 3, 3, 128, 128)
        out.mean().backward()  # every switch is trainable end to end


def test_dynamic_kernels_follow_the_tokens():
    cfg = preset("tiny", 128)
    conv = NeRVVAE(cfg).decoder.convs[1]
    z = torch.randn(2, cfg.tokens, cfg.token_dim)
    w = conv.kernels(z)
    rows = conv.rows
    assert not torch.allclose(w[0, :rows], w[1, :rows])  # instance-specific channels differ
    torch.testing.assert_close(w[0, rows:], w[1, rows:])  # shared channels are shared


def test_gradients_reach_encoder_through_bottleneck():
    cfg = preset("tiny", 128)
    vae = NeRVVAE(cfg)
    video = torch.rand(2, cfg.frames, 3, 128, 128) * 2 - 1
    recon, mean, logvar = vae(video, torch.linspace(0, 1, 2), torch.randn(2, cfg.tokens, cfg.token_dim))
    ((recon - video[:, :2]) ** 2).mean().add(1e-3 * kl_divergence(mean, logvar)).backward()
    for p in (vae.encoder.patch_embed.weight, vae.encoder.queries, vae.encoder.bottleneck[0].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_different_tokens_give_different_videos():
    cfg = preset("tiny", 128)
    dec = NeRVVAE(cfg).decoder.eval()
    t = torch.linspace(0, 1, 4)
    with torch.no_grad():
        a = dec(torch.randn(1, cfg.tokens, cfg.token_dim), t)
        b = dec(torch.randn(1, cfg.tokens, cfg.token_dim), t)
    assert (a - b).abs().mean() > 1e-2


def test_dit_last_layer_is_exactly_zero_at_init():
    """adaLN-Zero: the last layer starts at 0. An eps model then returns eps = 0; a v model (v = 0) returns
    eps = sqrt(1 - abar_t) x_t, whose x0 estimate sqrt(abar_t) x_t - sqrt(1 - abar_t) v stays bounded at t = 999."""
    cfg = preset("tiny", 128)
    x, t, y = torch.randn(3, cfg.tokens, cfg.token_dim), torch.tensor([0.0, 500.0, 999.0]), torch.tensor([0, 1, cfg.num_classes])
    eps_model = ImplicitDiT(replace(cfg, dit=replace(cfg.dit, prediction="eps")))
    assert torch.equal(eps_model(x, t, y), torch.zeros_like(x))
    assert cfg.dit.prediction == "v"
    abar = torch.from_numpy(alphas_cumprod(linear_betas())).float()[t.long()].view(-1, 1, 1)
    torch.testing.assert_close(ImplicitDiT(cfg)(x, t, y), (1 - abar).sqrt() * x, rtol=0, atol=1e-6)


def test_v_model_returns_the_eps_of_its_v():
    """eps = sqrt(1 - abar) x_t + sqrt(abar) v for the v its last layer makes, at every timestep."""
    torch.manual_seed(0)
    cfg = preset("tiny", 128)
    dit = ImplicitDiT(cfg)
    torch.nn.init.normal_(dit.final_layer.linear.weight, std=0.1)
    v = {}
    dit.final_layer.register_forward_hook(lambda _m, _i, out: v.setdefault("v", out))
    x, t, y = torch.randn(4, cfg.tokens, cfg.token_dim), torch.tensor([0.0, 10.0, 700.0, 999.0]), torch.tensor([0, 1, 2, 3])
    eps = dit(x, t, y)
    abar = torch.from_numpy(alphas_cumprod(linear_betas())).float()[t.long()].view(-1, 1, 1)
    assert v["v"].abs().mean() > 0.01
    torch.testing.assert_close(eps, (1 - abar).sqrt() * x + abar.sqrt() * v["v"], rtol=1e-5, atol=1e-6)


def test_patchify_is_a_tiling():
    video = torch.arange(2 * 8 * 3 * 16 * 16, dtype=torch.float32).reshape(2, 8, 3, 16, 16)
    patches = patchify(video, (4, 8, 8))
    assert patches.shape == (2, 2 * 2 * 2, 4 * 3 * 8 * 8)
    assert torch.equal(patches.flatten().sort().values, video.flatten().sort().values)


def test_v_model_in_half_precision_keeps_fp32_tables_and_output():
    """A cast model keeps the v -> eps tables fp32 and returns fp32 eps: near t = 999 eps ~ x_t, and a bf16 eps
    would carry the x0 error v-prediction avoids."""
    cfg = preset("tiny", 128)
    dit = ImplicitDiT(cfg)
    torch.nn.init.normal_(dit.final_layer.linear.weight, std=0.1)
    half = copy.deepcopy(dit).to(torch.bfloat16)
    assert half.sqrt_abar.dtype == half.sqrt_one_minus_abar.dtype == torch.float32
    assert half.final_layer.linear.weight.dtype == torch.bfloat16
    x, t, y = torch.randn(2, cfg.tokens, cfg.token_dim), torch.tensor([999.0, 998.6]), torch.tensor([0, 1])
    eps = half(x, t, y)
    assert eps.dtype == torch.float32
    torch.testing.assert_close(eps, dit(x, t.round(), y), rtol=0, atol=0.02)  # only v's bf16 error, times sqrt(abar)


def test_config_round_trip_and_validation():
    cfg = preset("S", 256, num_classes=5, side="vanilla")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old = cfg.to_dict()
    del old["dit"]["prediction"]  # configs written before v-prediction were eps models
    assert ModelConfig.from_dict(old).dit.prediction == "eps"
    with pytest.raises(ValueError, match="prediction"):
        replace(cfg, dit=replace(cfg.dit, prediction="x0"))
    with pytest.raises(ValueError, match="param"):
        preset("tiny", 128, param="nope")
    with pytest.raises(NervError, match="unknown preset"):  # a ConfigError: nerv_rt's one error type, and a ValueError
        preset("XL", 128)
    assert issubclass(ConfigError, ValueError)


def test_preset_L_decoder_cost_is_in_the_paper_band():
    info = describe(preset("L", 128))
    assert info["tokens"] == 128
    ratio = info["macs"]["decoder_16f"] / 1e9 / SDVAE_DECODER_GMAC[128]
    assert 0.55 <= ratio <= 0.75, ratio
