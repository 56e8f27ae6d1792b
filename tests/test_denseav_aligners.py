"""Aligners: image LayerNorm + 1x1 conv by hand; audio downsampling and masked attention."""

import torch

from denseav.aligners import AudioAligner, ImageAligner
from denseav.audio import conv_output_length


def test_image_aligner_is_channel_layernorm_then_1x1_conv():
    torch.manual_seed(0)
    aligner = ImageAligner(5, 4)
    x = torch.randn(2, 5, 3, 2)
    got = aligner(x)
    expected = torch.zeros(2, 4, 3, 2)
    for b in range(2):
        for y in range(3):
            for z in range(2):
                v = x[b, :, y, z]
                v = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + aligner.norm.eps)
                v = v * aligner.norm.weight + aligner.norm.bias
                expected[b, :, y, z] = aligner.proj.weight[:, :, 0, 0] @ v + aligner.proj.bias
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(aligner.align_global(x[:, :, 1, 0]), expected[:, :, 1, 0])


def test_audio_aligner_downsamples_like_two_stride_3_convs():
    aligner = AudioAligner(6, 8, kernel=3, stride=3, attention_heads=2)
    assert aligner.layers == [(3, 3), (3, 3)]
    for t_in in (9, 50, 101, 499):
        features, cls = aligner(torch.randn(2, t_in, 6))
        assert features.shape == (2, 8, conv_output_length(t_in, aligner.layers))
        assert cls.shape == (2, 8)
    assert conv_output_length(499, aligner.layers) == 55  # 50 Hz * 10 s -> ~5.5 Hz


def test_audio_aligner_masked_tokens_do_not_affect_the_others():
    torch.manual_seed(1)
    aligner = AudioAligner(6, 8, kernel=3, stride=3, attention_heads=2).eval()
    frames = torch.randn(1, 45, 6)  # token t sees exactly frames [9t, 9t + 9): 5 tokens
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.5, 0.0]])
    changed = frames.clone()
    changed[:, 36:] = torch.randn(1, 9, 6) * 5  # only the masked last token's frames
    f1, c1 = aligner(frames, mask)
    f2, c2 = aligner(changed, mask)
    torch.testing.assert_close(f1[..., :4], f2[..., :4])
    torch.testing.assert_close(c1, c2)
    assert not torch.allclose(f1[..., 4], f2[..., 4])
    # Without the mask the change reaches every token through attention.
    g1, _ = aligner(frames)
    g2, _ = aligner(changed)
    assert not torch.allclose(g1[..., 0], g2[..., 0])


def test_audio_aligner_fully_masked_clip_is_finite():
    aligner = AudioAligner(6, 8, kernel=3, stride=3, attention_heads=2)
    features, cls = aligner(torch.randn(2, 45, 6), torch.zeros(2, 5))
    assert torch.isfinite(features).all() and torch.isfinite(cls).all()
