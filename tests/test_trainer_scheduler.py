"""The learning-rate schedule: warm-up per phase, then constant or cosine to zero."""

import math
from itertools import pairwise

import pytest
import torch

from trainer.scheduler import PhaseSchedule, linear_ramp, phase_scheduler


def test_constant_schedule_warms_up_each_phase():
    f = PhaseSchedule(warmup_steps=4, phase2_start=10, total_steps=30)
    assert [f(s) for s in (0, 3, 9)] == [0.25, 1.0, 1.0]
    assert [f(s) for s in (10, 13, 29)] == [0.25, 1.0, 1.0]


def test_cosine_decays_phase_2_to_zero_at_the_last_step():
    f = PhaseSchedule(warmup_steps=0, phase2_start=10, total_steps=30, decay="cosine")
    assert f(5) == 1.0  # phase 1 is not decayed
    assert f(10) == 1.0 and f(20) == pytest.approx(0.5) and f(30) == pytest.approx(0.0)
    assert f(15) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    values = [f(s) for s in range(10, 31)]
    assert all(a >= b for a, b in pairwise(values))


def test_scheduler_state_round_trips_and_bad_decay_is_named():
    param = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.Adam([param], lr=1.0)
    sched = phase_scheduler(opt, 2, 3, 10, "cosine")
    for _ in range(5):
        opt.step()
        sched.step()
    again = phase_scheduler(torch.optim.Adam([param], lr=1.0), 2, 3, 10, "cosine")
    again.load_state_dict(sched.state_dict())
    assert again.get_last_lr() == sched.get_last_lr()
    with pytest.raises(ValueError, match="optim.decay"):
        PhaseSchedule(0, 0, 10, "step")


def test_linear_ramp_falls_to_its_end_and_stays():
    assert [linear_ramp(s, 0.5, 0.05, 10) for s in (0, 5, 10, 11, 100)] == pytest.approx(
        [0.5, 0.275, 0.05, 0.05, 0.05]
    )
    assert linear_ramp(3, 0.0, 0.05, 6) == pytest.approx(0.025)  # a rise works alike
