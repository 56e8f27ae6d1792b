"""The optimizer's parameter groups: what trains, and what weight decay may shrink."""

import torch

from denseav.config import DenseAVConfig
from denseav.model import DenseAV
from trainer.train import param_groups


def _model() -> DenseAV:
    torch.manual_seed(0)
    model = DenseAV(DenseAVConfig.tiny())
    model.set_phase(2)
    return model


def test_groups_hold_every_trained_parameter_once_and_never_decay_vectors():
    model = _model()
    groups = param_groups(model, lr=1e-3, weight_decay=0.1)

    members = [p for g in groups for p in g["params"]]
    assert len({id(p) for p in members}) == len(members)
    expected = {
        id(model.inverse_temperature),
        *(id(p) for p in model.image_aligner.parameters()),
        *(id(p) for p in model.audio_aligner.parameters()),
        *(id(p) for p in model.finetuned_image_parameters()),
        *(id(p) for p in model.audio_backbone.parameters()),
    }
    assert {id(p) for p in members} == expected
    assert {g["name"] for g in groups} == {"aligners", "image_backbone", "audio_backbone"}
    for group in groups:
        assert group["weight_decay"] == (0.1 if group["params"][0].ndim >= 2 else 0.0)
        assert len({p.ndim >= 2 for p in group["params"]}) == 1
    (temperature_group,) = [
        g for g in groups if any(p is model.inverse_temperature for p in g["params"])
    ]
    assert temperature_group["weight_decay"] == 0.0


def test_weight_decay_shrinks_matrices_only_and_is_decoupled_from_the_gradient():
    model = _model()
    lr, decay = 0.1, 0.5
    optimizer = torch.optim.AdamW(param_groups(model, lr, decay), lr=lr)
    trained = [p for g in optimizer.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in trained]
    for p in trained:
        p.grad = torch.zeros_like(p)  # Adam's own step is then exactly zero
    optimizer.step()

    for p, old in zip(trained, before):
        expected = old * (1 - lr * decay) if p.ndim >= 2 else old
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7)
    assert any(p.ndim >= 2 and not torch.equal(p, old) for p, old in zip(trained, before))


def test_without_weight_decay_the_steps_are_adams():
    adam_model, adamw_model = _model(), _model()
    adam = torch.optim.Adam(param_groups(adam_model, 1e-2), lr=1e-2)
    adamw = torch.optim.AdamW(param_groups(adamw_model, 1e-2, 0.0), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        for optimizer in (adam, adamw):
            generator_state = generator.get_state()
            for g in optimizer.param_groups:
                for p in g["params"]:
                    p.grad = torch.randn(p.shape, generator=generator)
            optimizer.step()
            if optimizer is adam:
                generator.set_state(generator_state)  # the same gradients for AdamW
    for a, b in zip(adam_model.parameters(), adamw_model.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(next(adam_model.parameters()), next(_model().parameters()))
