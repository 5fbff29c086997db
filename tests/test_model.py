"""The single-stream Transformer: shapes, presets, sandwich, gates, RoPE, masks, stored values."""

import pytest
import torch

from happyhorse.model import CONFIGS, TransformerConfig, create_model

CFG = TransformerConfig(
    dim=64, depth=4, sandwich=1, heads=4, kv_heads=2, mlp_hidden=128, video_in=48, audio_in=20, text_in=16
)


def _inputs(b=2, nv=12, na=5, nt=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, nv, CFG.video_in, generator=g)
    audio = torch.randn(b, na, CFG.audio_in, generator=g)
    text = torch.randn(b, nt, CFG.text_in, generator=g)
    mask = torch.ones(b, nt, dtype=torch.bool)
    mask[1, 4:] = False
    pos = torch.cat([torch.rand(nv + na, 3, generator=g) * 4, torch.zeros(nt, 3)])
    return video, audio, text, mask, pos


def _model(cfg=CFG, seed=0):
    torch.manual_seed(seed)
    model = create_model(cfg)
    for head in (model.video_out, model.audio_out):  # zero-initialised; give them values to test
        torch.nn.init.normal_(head.weight, std=0.05)
    return model.eval()


def test_shapes_per_modality_and_zero_initialised_heads():
    out = create_model(CFG)(*_inputs())
    assert out.video.shape == (2, 12, 48) and out.audio.shape == (2, 5, 20)
    assert out.video.abs().max() == 0 and out.audio.abs().max() == 0  # heads start at zero
    out = _model()(*_inputs())
    assert out.video.abs().max() > 0


def test_deterministic_and_stored_slice():
    a = _model()(*_inputs())
    b = _model()(*_inputs())
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)
    expected = torch.tensor([-0.5845, -0.1132, 0.5371, -0.6491])
    torch.testing.assert_close(a.video[0, 0, :4], expected, atol=2e-4, rtol=0)


def test_presets_and_15b_on_meta():
    assert list(CONFIGS)[0] == "tiny" and "15b" in CONFIGS
    model = create_model("15b", device="meta")
    assert abs(model.num_parameters() / 15.3e9 - 1) < 0.02
    assert model.cfg.depth == 40 and model.cfg.sandwich == 4 and model.cfg.dim == 5120
    assert model.cfg.heads == 40 and model.cfg.kv_heads == 8 and model.cfg.head_dim == 128
    with pytest.raises(ValueError, match="unknown name"):
        create_model("huge")


def test_sandwich_layers_have_per_modality_weights():
    model = create_model(CFG)
    separate = [block.separate for block in model.blocks]
    assert separate == [True, False, False, True]
    assert len(model.blocks[0].attn.qkv.parts) == 3 and len(model.blocks[1].attn.qkv.parts) == 1
    # the audio weights of a sandwich layer touch audio tokens only
    x = torch.randn(1, 10, CFG.dim)
    lengths = (4, 3, 3)
    before = model.blocks[0].mlp(x, lengths)
    torch.nn.init.normal_(model.blocks[0].mlp.parts[1].down.weight)
    after = model.blocks[0].mlp(x, lengths)
    assert torch.equal(before[:, :4], after[:, :4]) and torch.equal(before[:, 7:], after[:, 7:])
    assert not torch.equal(before[:, 4:7], after[:, 4:7])


def test_gqa_shrinks_key_value_projections():
    qkv = create_model(CFG).blocks[1].attn.qkv.parts[0]
    hd = CFG.head_dim
    assert qkv.weight.shape[0] == CFG.heads * hd + 2 * CFG.kv_heads * hd + CFG.heads  # q, k, v, one gate per head


def test_per_head_sigmoid_gate_scales_head_outputs():
    model = create_model(CFG)
    attn = model.blocks[1].attn
    x = torch.ones(1, 6, CFG.dim)
    angles = torch.zeros(6, CFG.head_dim // 2)
    lengths = (6, 0, 0)
    half = attn(x, lengths, angles, None)  # gate rows start at zero: sigmoid(0) = 0.5
    with torch.no_grad():
        attn.qkv.parts[0].weight[-CFG.heads :] = 1.0  # logit = dim: sigmoid ~ 1
    full = attn(x, lengths, angles, None)
    torch.testing.assert_close(full, 2 * half, atol=1e-5, rtol=1e-4)


def test_rope_is_relative_in_time():
    model = _model()
    video, audio, text, mask, pos = _inputs()
    mask[:] = False  # no text: then shifting every token in time changes nothing
    shifted = pos.clone()
    shifted[:17, 0] += 3.0
    a, b = model(video, audio, text, mask, pos), model(video, audio, text, mask, shifted)
    torch.testing.assert_close(a.video, b.video, atol=1e-4, rtol=1e-4)
    pos2 = pos.clone()
    pos2[:12, 1] += 1.0  # moving video alone in space relative to audio does change the output
    assert not torch.allclose(model(video, audio, text, mask, pos2).video, a.video, atol=1e-4)


def test_padded_text_is_ignored():
    model = _model()
    video, audio, text, mask, pos = _inputs()
    a = model(video, audio, text, mask, pos)
    text2 = text.clone()
    text2[1, 4:] = 100.0  # padded positions of sample 1
    b = model(video, audio, text2, mask, pos)
    torch.testing.assert_close(a.video, b.video)


def test_timestep_free_by_default_and_flag_adds_conditioning():
    video, audio, text, mask, pos = _inputs()
    assert not CFG.timestep_conditioning
    cfg = TransformerConfig(**{**CFG.to_dict(), "timestep_conditioning": True})
    model = _model(cfg)
    with pytest.raises(ValueError, match="sigma"):
        model(video, audio, text, mask, pos)
    s1 = torch.full((2, 17), 0.2)
    s2 = torch.full((2, 17), 0.9)
    assert not torch.allclose(
        model(video, audio, text, mask, pos, sigma=s1).video, model(video, audio, text, mask, pos, sigma=s2).video
    )


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(dim=100, heads=3)
    with pytest.raises(ValueError, match="prediction: a setting measured and not shipped"):
        TransformerConfig.from_dict({**TransformerConfig().to_dict(), "prediction": "v"})
    assert TransformerConfig.from_dict({**TransformerConfig().to_dict(), "prediction": "x0"}) == TransformerConfig()
    with pytest.raises(ValueError, match="unknown"):
        TransformerConfig.from_dict({"width": 3})
