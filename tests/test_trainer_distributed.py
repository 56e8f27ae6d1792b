"""Negatives from every process: two gloo processes reproduce the single-process global-batch gradient."""


import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from denseav.config import DenseAVConfig
from denseav.losses import DenseAVLoss
from denseav.model import AudioFeatures, DenseAVOutput, ImageFeatures
from trainer.distributed import gather_no_grad, gather_with_grad, local_offset
from trainer.train import global_batch_loss

B, C, T, H, W, WORLD = 3, 8, 5, 2, 2, 2


def _inputs():
    g = torch.Generator().manual_seed(0)
    xa = torch.randn(WORLD * B, C, T, generator=g)
    xv = torch.randn(WORLD * B, C, H, W, generator=g)
    mask = (torch.rand(WORLD * B, T, generator=g) > 0.2).float()
    splice = torch.rand(WORLD * B, T, generator=g)
    wa = torch.randn(C, C, generator=g)
    wv = torch.randn(C, C, generator=g)
    return xa, xv, mask, splice, wa, wv


def _loss_and_grads(rows: slice):
    """Features = linear maps of fixed inputs; returns (loss, dW_a, dW_v) on the given rows."""
    xa, xv, mask, splice, wa, wv = _inputs()
    wa, wv = wa.requires_grad_(), wv.requires_grad_()
    gamma = torch.tensor(2.0, requires_grad=True)
    audio = AudioFeatures(
        torch.einsum("dc,bct->bdt", wa, xa[rows]), mask[rows], xa[rows].mean(-1) @ wa.T
    )
    image = ImageFeatures(
        torch.einsum("dc,bchw->bdhw", wv, xv[rows]), xv[rows].mean((-1, -2)) @ wv.T
    )
    out = DenseAVOutput(audio=audio, image=image, inverse_temperature=gamma)
    # The masked-mean regularisers (splice, silence) average per process by design; left out here.
    cfg = DenseAVConfig.tiny(
        feature_dim=C,
        heads=2,
        audio_attention_heads=2,
        nonneg_weight=0.0,
        splice_weight=0.0,
        silence_weight=0.0,
        similarity_impl="naive",
    )
    terms = global_batch_loss(DenseAVLoss(cfg), out, splice[rows], torch.Generator().manual_seed(1))
    terms["loss"].backward()
    return terms["loss"].detach(), wa.grad, wv.grad, gamma.grad


def _worker(rank: int, init_file: str, result_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        x = torch.full((rank + 1, 2), float(rank), requires_grad=True)  # uneven sizes
        gathered = gather_with_grad(x)
        assert gathered.shape == (3, 2) and local_offset(rank + 1, x.device) == rank
        (gathered.sum() * (rank + 1)).backward()  # every rank's loss reaches every slice
        assert torch.equal(x.grad, torch.full_like(x, 3.0)), x.grad
        assert torch.equal(gather_no_grad(torch.tensor([rank])), torch.tensor([0, 1]))

        loss, ga, gv, gg = _loss_and_grads(slice(rank * B, (rank + 1) * B))
        for t in (loss, ga, gv, gg):  # what DDP does to gradients (and what we log for the loss)
            dist.all_reduce(t)
            t /= WORLD
        if rank == 0:
            torch.save({"loss": loss, "wa": ga, "wv": gv, "gamma": gg}, result_file)
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_global_batch_gradient(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    result = tmp_path / "result.pt"
    # spawn, not fork: a fork after torch's OpenMP pool has run (earlier tests) can hang the child
    mp.start_processes(
        _worker,
        args=(str(tmp_path / "init"), str(result)),
        nprocs=WORLD,
        join=True,
        start_method="spawn",
    )
    got = torch.load(result, weights_only=True)
    loss, ga, gv, gg = _loss_and_grads(slice(None))
    torch.testing.assert_close(got["loss"], loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["wa"], ga, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got["wv"], gv, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got["gamma"], gg, rtol=1e-4, atol=1e-6)


def test_single_process_gather_is_identity():
    x = torch.randn(2, 3)
    assert gather_with_grad(x) is x and local_offset(2, x.device) == 0
