"""Checkpoints keep each process's own state: the reader position and the splice donors."""

import pytest
import torch

from trainer.checkpoint import CheckpointManager
from trainer.splice import DonorClips


def test_process_state_round_trips_with_the_module_and_optimizer(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    donors = DonorClips(torch.randn(2, 50), torch.tensor([50, 20]))
    manager = CheckpointManager(str(tmp_path), keep=2, rank=0, world_size=1, barrier=lambda: None)
    url = manager.save(
        7,
        2,
        model,
        optimizer,
        scheduler,
        None,
        {"position": 3},
        {"seed": 0},
        {"splice_donors": donors.state_dict()},
    )

    restored_model = torch.nn.Linear(3, 2)
    restored = manager.load(
        url, restored_model, torch.optim.Adam(restored_model.parameters()), None
    )
    assert (restored.step, restored.phase, restored.data_state) == (7, 2, {"position": 3})
    again = DonorClips.from_state_dict(restored.process_state["splice_donors"])
    assert torch.equal(again.audio, donors.audio)
    assert torch.equal(again.valid_samples, donors.valid_samples)
    assert torch.equal(restored_model.weight, model.weight)


def test_optimizer_state_of_other_parameter_groups_is_refused_by_name(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    manager = CheckpointManager(str(tmp_path), keep=2, rank=0, world_size=1, barrier=lambda: None)
    url = manager.save(1, 2, model, optimizer, scheduler, None, {}, {}, {})

    split = torch.optim.AdamW([{"params": [model.weight]}, {"params": [model.bias]}])
    with pytest.raises(RuntimeError, match="step-000000001.*parameter groups"):
        manager.load(url, model, split, None)
