"""The weight average: its formula, and checkpoints that keep it beside the trained weights."""

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from trainer.averaging import WeightAverage
from trainer.checkpoint import TRAINING_WEIGHTS_NAME, CheckpointManager


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def _train_step(net: nn.Module, seed: int) -> None:
    """A stand-in for an optimizer step: new weights and BatchNorm statistics."""
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    net.train()(torch.randn(5, 3, generator=torch.Generator().manual_seed(seed)))


def test_the_average_starts_as_a_copy_then_moves_by_one_minus_decay():
    net = _net()
    average = WeightAverage(decay=0.75, start=2)
    _train_step(net, 1)
    average.update(net, step=1)
    assert average.state_dict(net) is None  # before its start

    _train_step(net, 2)
    average.update(net, step=2)
    started = {k: v.clone() for k, v in net.state_dict().items()}
    assert all(torch.equal(v, started[k]) for k, v in average.state_dict(net).items())

    _train_step(net, 3)
    average.update(net, step=3)
    now = net.state_dict()
    state = average.state_dict(net)
    for name in ("0.weight", "1.bias", "1.running_mean", "1.running_var"):
        torch.testing.assert_close(state[name], 0.75 * started[name] + 0.25 * now[name])
    assert state["1.num_batches_tracked"] == now["1.num_batches_tracked"] == 3  # as it is

    again = WeightAverage(decay=0.75, start=2)
    again.load_state_dict(state, net)
    assert all(torch.equal(v, state[k]) for k, v in again.state_dict(net).items())
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(decay=1.0, start=0)


def test_a_checkpoint_with_an_average_exports_it_and_resumes_the_trained_weights(tmp_path):
    net, fresh = _net(), _net()
    average = WeightAverage(decay=0.5, start=0)
    average.update(net, step=0)
    _train_step(net, 1)
    average.update(net, step=1)
    optimizer = torch.optim.Adam(net.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    manager = CheckpointManager(str(tmp_path), keep=2, rank=0, world_size=1, barrier=lambda: None)

    url = manager.save(
        1, 2, net, optimizer, scheduler, None, {}, {}, None, None, average.state_dict(net)
    )
    folder = tmp_path / "step-000000001"
    averaged = average.state_dict(net)
    assert all(
        torch.equal(v, averaged[k]) for k, v in load_file(folder / "model.safetensors").items()
    )
    trained = load_file(folder / TRAINING_WEIGHTS_NAME)
    assert all(torch.equal(v, trained[k]) for k, v in net.state_dict().items())
    restored = manager.load(url, fresh, torch.optim.Adam(fresh.parameters()), None)
    assert all(torch.equal(v, trained[k]) for k, v in fresh.state_dict().items())
    assert all(torch.equal(v, averaged[k]) for k, v in restored.averaged_state.items())

    # Without an average the folder holds the trained weights only, as before.
    url = manager.save(2, 2, net, optimizer, scheduler, None, {}, {})
    assert not (tmp_path / "step-000000002" / TRAINING_WEIGHTS_NAME).exists()
    assert (
        manager.load(url, fresh, torch.optim.Adam(fresh.parameters()), None).averaged_state is None
    )
