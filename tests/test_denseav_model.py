"""The DenseAV model: real transformers backbones from small configs, phases, save/load, errors."""

import json

import pytest
import torch
from transformers import HubertModel, ViTModel

from denseav import BackboneNotFoundError, DenseAV, DenseAVConfig, DenseAVLoss
from denseav.backbones import qkv_module_names
from denseav.losses import LOSS_TERMS


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 32, 32, generator=g)
    wave = torch.randn(4, 32000, generator=g)
    mask = torch.ones(4, 32000)
    mask[1, 20000:] = 0
    return images, wave, mask


def _model(**changes) -> DenseAV:
    torch.manual_seed(0)
    return DenseAV(DenseAVConfig.tiny(**changes))


def test_backbones_are_the_real_transformers_classes_with_lora_on_qkv():
    model = _model()
    assert isinstance(model.image_backbone, ViTModel) and model.image_backbone.pooler is None
    assert isinstance(model.audio_backbone, HubertModel)
    names = {
        n.rsplit(".", 3)[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if "lora_A" in n
    }
    assert names == set(qkv_module_names(model.image_backbone)) and len(names) == 3
    lora_a = next(p for n, p in model.named_parameters() if "lora_A" in n)
    assert lora_a.shape[0] == 8  # rank


def test_shapes_in_training_and_eval(batch):
    images, wave, mask = batch
    model = _model()
    out = model(images, wave, mask)
    t = model.num_tokens(32000)
    assert out.audio.features.shape == (4, 32, t) and out.audio.mask.shape == (4, t)
    assert out.audio.cls.shape == (4, 32) and out.image.cls.shape == (4, 32)
    assert out.image.features.shape == (4, 32, 2, 2)  # 32 px / patch 8 = 4, pooled 2x2 in training
    assert out.inverse_temperature.item() == 1.0
    leaves, _ = torch.utils._pytree.tree_flatten(out)  # what DDP walks to find the output tensors
    assert len(leaves) == 6 and all(isinstance(x, torch.Tensor) for x in leaves)
    model.eval()
    with torch.no_grad():
        assert model.encode_image(images).features.shape == (4, 32, 4, 4)
        assert model.encode_image(torch.rand(1, 3, 48, 40)).features.shape == (1, 32, 6, 5)
    with pytest.raises(ValueError, match="patch size"):
        model.encode_image(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="float"):
        model.encode_image(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_pooling_can_be_switched_off(batch):
    model = _model(pool_image_in_training=False)
    assert model.encode_image(batch[0]).features.shape == (4, 32, 4, 4)


@pytest.mark.parametrize("aggregation", ["multihead", "cls"])
def test_forward_loss_backward_of_tiny_model(batch, aggregation):
    images, wave, mask = batch
    model = _model(aggregation=aggregation)
    model.set_phase(2)
    out = model(images, wave, mask)
    splice = torch.zeros_like(mask)
    splice[0, 8000:16000] = 1
    terms = DenseAVLoss(model.config)(
        out.audio, out.image, out.inverse_temperature, model.token_mask(splice)
    )
    assert set(terms) == {"loss", *LOSS_TERMS}
    assert set(LOSS_TERMS) == {"a2v", "v2a", "dis", "splice", "silence", "cal", "nonneg", "tv"}
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["splice"] > 0 and terms["silence"] > 0
    terms["loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert model.inverse_temperature.grad.abs() > 0


def test_mixed_precision_forward_and_loss(batch):
    images, wave, mask = batch
    model = _model()
    model.set_phase(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images, wave, mask)
        terms = DenseAVLoss(model.config)(
            out.audio, out.image, out.inverse_temperature, out.audio.mask
        )
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()


def test_similarity_uses_configured_aggregation(batch):
    images, wave, mask = batch
    model = _model(heads=1, aggregation="avgpool").eval()
    with torch.no_grad():
        out = model(images, wave, mask)
        got = model.similarity(out.audio.features, out.image.features, out.audio.mask)
    a = (out.audio.features * out.audio.mask[:, None]).sum(-1) / out.audio.mask.sum(
        -1, keepdim=True
    )
    torch.testing.assert_close(got, a @ out.image.features.mean((2, 3)).T)


def _step(model, batch, lr=1e-2):
    images, wave, mask = batch
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    out = model(images, wave, mask)
    DenseAVLoss(model.config)(out.audio, out.image, out.inverse_temperature)["loss"].backward()
    opt.step()


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("phase", [1, 2])
def test_phase_switching_decides_what_trains(batch, phase):
    model = _model()
    model.set_phase(phase)
    before = _snapshot(model)
    _step(model, batch)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}

    def group(prefix, needle=""):
        return {n for n in before if n.startswith(prefix) and needle in n}

    lora = group("image_backbone.", "lora_")
    assert group("image_aligner.") <= changed and group("audio_aligner.") <= changed
    assert "inverse_temperature" in changed
    assert not (group("image_backbone.") - lora) & changed  # DINO base weights never train
    if phase == 1:
        assert not lora & changed and not group("audio_backbone.") & changed
    else:
        # lora_B starts at zero, so after one step lora_B has moved; then lora_A moves too.
        assert {n for n in lora if "lora_B" in n} <= changed
        _step(model, batch)
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
        assert lora <= changed
        assert len(group("audio_backbone.") & changed) > 0.9 * len(group("audio_backbone."))
    with pytest.raises(ValueError, match="phase"):
        model.set_phase(3)


@pytest.mark.parametrize("phase", [1, 2])
def test_frozen_audio_backbone_records_no_graph(batch, phase):
    """Phase 1 must not build (and later run backward through) HuBERT's graph."""
    _, wave, _ = batch
    model = _model()
    model.train()
    model.set_phase(phase)
    hidden = model.audio_backbone(wave).last_hidden_state
    assert hidden.requires_grad == (phase == 2)


def test_save_load_round_trip_is_bit_exact(batch, tmp_path):
    images, wave, mask = batch
    model = _model()
    model.set_phase(2)
    _step(model, batch)  # non-trivial LoRA and aligner weights
    _step(model, batch)
    model.eval()
    path = model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    saved = json.loads((path / "config.json").read_text())
    assert saved["image_backbone_config"]["model_type"] == "vit"
    loaded = DenseAV.from_pretrained(path)
    assert not loaded.training
    sd1, sd2 = model.state_dict(), loaded.state_dict()
    assert sd1.keys() == sd2.keys()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    with torch.no_grad():
        a, b = model(images, wave, mask), loaded(images, wave, mask)
    assert torch.equal(a.audio.features, b.audio.features)
    assert torch.equal(a.image.features, b.image.features)
    with pytest.raises(FileNotFoundError, match="config.json"):
        DenseAV.from_pretrained(tmp_path / "missing")


def test_missing_pretrained_weights_name_the_model_and_the_fix():
    # tests/conftest.py sets HF_HUB_OFFLINE=1, so hub look-ups fail at once.
    with pytest.raises(BackboneNotFoundError) as err:
        DenseAV(DenseAVConfig.paper())
    text = str(err.value)
    assert "facebook/dino-vits8" in text and "image_backbone:" in text and "local" in text
    tiny = DenseAVConfig.tiny()
    with pytest.raises(BackboneNotFoundError) as err:
        DenseAV(
            tiny.replace(
                audio_backbone="facebook/hubert-large-ls960-ft", audio_backbone_config=None
            )
        )
    assert "facebook/hubert-large-ls960-ft" in str(err.value) and "audio_backbone:" in str(
        err.value
    )
    with pytest.raises(BackboneNotFoundError, match="local path '/nonexistent/dino'"):
        DenseAV(tiny.replace(image_backbone="/nonexistent/dino", image_backbone_config=None))


def test_local_backbone_directory_loads_its_weights(tmp_path):
    torch.manual_seed(3)
    source = _model()
    plain = ViTModel(source.image_backbone.config, add_pooling_layer=False)
    plain.save_pretrained(tmp_path / "vit")
    model = DenseAV(
        DenseAVConfig.tiny(image_backbone=str(tmp_path / "vit"), image_backbone_config=None)
    )
    want = plain.state_dict()["embeddings.patch_embeddings.projection.weight"]
    got = model.image_backbone.state_dict()["embeddings.patch_embeddings.projection.weight"]
    assert torch.equal(got, want)


def test_config_round_trip_and_validation():
    for preset in (DenseAVConfig.paper(), DenseAVConfig.toy(), DenseAVConfig.tiny(heads=1)):
        assert DenseAVConfig.from_dict(json.loads(json.dumps(preset.to_dict()))) == preset
    with pytest.raises(ValueError, match="unknown"):
        DenseAVConfig.from_dict({"feature_dims": 3})
    with pytest.raises(ValueError, match="heads"):
        DenseAVConfig.tiny(heads=3)
    with pytest.raises(ValueError, match="aggregation"):
        DenseAVConfig.tiny(aggregation="mean")
    with pytest.raises(ValueError, match="similarity_impl"):
        DenseAVConfig.tiny(similarity_impl="fast")
    with pytest.raises(ValueError, match="model_type"):
        DenseAVConfig.tiny(image_backbone_config={"hidden_size": 8})


def test_paper_geometry_28x28_image_tokens_and_55_audio_tokens_for_10_s():
    """DINO ViT-S/8 geometry (224 px, patch 8, 384-d; one layer to stay fast) and HuBERT's
    7-layer conv encoder (total stride 320; narrow) give the token grids the paper states."""
    vits8 = {
        "model_type": "vit",
        "hidden_size": 384,
        "num_hidden_layers": 1,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
        "image_size": 224,
        "patch_size": 8,
        "qkv_bias": True,
        "layer_norm_eps": 1e-6,
    }
    hubert = {
        "model_type": "hubert",
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "conv_dim": [8] * 7,
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
    }
    config = DenseAVConfig.paper(
        image_backbone=None,
        image_backbone_config=vits8,
        audio_backbone=None,
        audio_backbone_config=hubert,
    )
    torch.manual_seed(0)
    model = DenseAV(config)
    assert model.token_layers == [
        (10, 5),
        (3, 2),
        (3, 2),
        (3, 2),
        (3, 2),
        (2, 2),
        (2, 2),
        (3, 3),
        (3, 3),
    ]
    assert int(model.audio_backbone._get_feat_extract_output_lengths(160000)) == 499  # ~50 Hz
    assert model.num_tokens(160000) == 55  # ~5.5 Hz after the aligner
    with torch.no_grad():
        assert model.encode_image(torch.rand(1, 3, 224, 224)).features.shape == (1, 384, 14, 14)
        model.eval()
        assert model.encode_image(torch.rand(1, 3, 224, 224)).features.shape == (1, 384, 28, 28)
        audio = model.encode_audio(torch.randn(1, 160000))
    assert audio.features.shape == (1, 384, 55)


def test_full_image_finetuning_trains_every_image_weight_in_phase_2_only(batch):
    model = _model(image_finetuning="full")
    assert not any("lora_" in n for n, _ in model.named_parameters())
    image = {n for n, _ in model.image_backbone.named_parameters()}
    for phase in (1, 2):
        model.set_phase(phase)
        trains = {n for n, p in model.image_backbone.named_parameters() if p.requires_grad}
        assert trains == (image if phase == 2 else set())
    with pytest.raises(ValueError, match="image_finetuning"):
        DenseAVConfig.tiny(image_finetuning="partial")


TINY_RESNET = {
    "model_type": "resnet",
    "num_channels": 3,
    "embedding_size": 8,
    "hidden_sizes": [8, 16],
    "depths": [1, 1],
    "layer_type": "basic",
    "image_size": 32,
}


def test_resnet_image_backbone_gives_a_stride_8_feature_map_and_round_trips(batch, tmp_path):
    images = batch[0]
    model = _model(image_backbone_config=TINY_RESNET, image_finetuning="full")
    assert type(model.image_backbone).__name__ == "ResNetModel"
    assert (model.patch_size, model.image_size) == (8, 32)
    model.eval()
    out = model.encode_image(images)
    assert out.features.shape == (4, 32, 4, 4) and out.cls.shape == (4, 32)
    # Each feature sees only its neighbourhood (receptive field 51 px): on a 64 px image, blanking
    # one corner leaves the features of the far corner as they were.
    large = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    changed = large.clone()
    changed[:, :, :8, :8] = 0
    before, after = (model.encode_image(x).features for x in (large, changed))
    torch.testing.assert_close(after[..., -1, -1], before[..., -1, -1])
    assert not torch.allclose(after[..., 0, 0], before[..., 0, 0])
    model.set_phase(2)
    model.train()
    _step(model, batch)
    model.eval()
    loaded = DenseAV.from_pretrained(model.save_pretrained(tmp_path / "resnet"))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.encode_image(images).features, model.encode_image(images).features
        )
    with pytest.raises(ValueError, match="LoRA"):
        _model(image_backbone_config=TINY_RESNET)  # image_finetuning="lora" needs attention
