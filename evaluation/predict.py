"""``python -m evaluation.predict``: heatmap overlays of a trained model for any image or video.

``--image FILE --audio FILE`` writes a PNG: the image with every head's activation in its own
colour, for the whole clip and for each moment (``--window`` seconds), above a strip of each head's
activation over time (paper Figure 1). ``--video FILE`` writes an MP4 with the same overlay on
every frame (the moment around that frame's time) and the audio kept. Audio of any container is
decoded with PyAV and resampled to 16 kHz mono. The model always runs in eval mode: dropout off
and full-resolution image features (the training-time 2x2 pooling is skipped).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from denseav.model import DenseAV
from denseav.similarity import sim_volume
from evaluation import MODEL_HELP, pictures
from evaluation.datasets import read_image
from evaluation.heatmaps import prompt_token_weights
from evaluation.media import (
    SAMPLE_RATE,
    MediaError,
    load_audio,
    load_video_frames,
    resize_center_crop,
    write_mp4,
)
from evaluation.runtime import (
    audio_batch,
    batched,
    image_batch,
    load_model,
    model_image_size,
    pick_device,
)


@dataclass
class Activations:
    """Per-head activations of frames under audio windows.

    Attributes:
        frames: ``(F, S, S, 3)`` uint8, the model's view of each frame (resized, centre-cropped).
        maps: ``(F, W, K, h, w)`` each head's activation, averaged over each window's audio tokens.
        strength: ``(K, T)`` each head's strongest activation per audio token (over the image of
            the frame shown at that token's time).
        duration: audio length in seconds.
    """

    frames: np.ndarray
    maps: np.ndarray
    strength: np.ndarray
    duration: float


def window_sample_masks(windows: Sequence[tuple[float, float]], num_samples: int) -> torch.Tensor:
    """``(W, N)`` 1 inside each ``(start, end)`` window (seconds), at least one sample wide."""
    masks = torch.zeros(len(windows), num_samples)
    for i, (start, end) in enumerate(windows):
        lo = min(max(0, int(start * SAMPLE_RATE)), num_samples - 1)
        hi = max(lo + 1, min(num_samples, int(np.ceil(end * SAMPLE_RATE))))
        masks[i, lo:hi] = 1.0
    return masks


@torch.no_grad()
def compute_activations(
    model: DenseAV,
    frames: Sequence[np.ndarray],
    audio: np.ndarray,
    windows_per_frame: Sequence[Sequence[tuple[float, float]]],
    device: torch.device | str = "cpu",
    batch_size: int = 8,
) -> Activations:
    """Encode the audio once and every frame, and reduce the similarity volume per window.

    The audio is padded to the 10 s training length like in the measurements, so a picture shows
    the same heatmaps the segmentation scores.

    Args:
        frames: ``F`` RGB uint8 images (any size). audio: ``(N,)`` float32 16 kHz.
        windows_per_frame: for each frame, the ``W`` time windows (seconds) to average over
            (the same ``W`` for every frame).
    """
    model.eval()
    size = model_image_size(model)
    crops = np.stack([resize_center_crop(f, size) for f in frames])
    waveform, sample_mask, _ = audio_batch([audio], device)
    aud = model.encode_audio(waveform, sample_mask=sample_mask)
    n = waveform.shape[1]
    weights = [
        prompt_token_weights(model, window_sample_masks(w, n).to(device), aud.mask)
        for w in windows_per_frame
    ]  # F x (W, T)
    valid = int((aud.mask[0] > 0).sum())  # tokens that hear real audio (padding comes last)
    token_frame = np.minimum((np.arange(valid) + 0.5) / valid * len(frames), len(frames) - 1)
    maps, strength = [], torch.zeros(model.config.heads, valid)
    batches = list(batched(range(len(frames)), batch_size))
    for batch in tqdm(batches, desc="frames", unit="batch", disable=len(frames) == 1):
        img = model.encode_image(image_batch(list(crops[batch]), device))
        volume = sim_volume(aud.features, img.features, model.config.heads)[0].float()
        for j, f in enumerate(batch):  # volume[j]: (K, T, h, w)
            w = weights[f]
            total = w.sum(-1).clamp_min(1e-6)[:, None, None, None]
            maps.append((torch.einsum("nt,kthw->nkhw", w, volume[j]) / total).cpu())
            own = torch.from_numpy(token_frame.astype(int) == f)
            strength[:, own] = volume[j, :, :valid].flatten(-2).amax(-1)[:, own].cpu()
    return Activations(crops, torch.stack(maps).numpy(), strength.numpy(), len(audio) / SAMPLE_RATE)


def moment_windows(duration: float, window: float) -> list[tuple[float, float]]:
    """Consecutive windows of ``window`` seconds covering the clip."""
    count = max(1, int(np.ceil(duration / window - 1e-6)))
    return [(i * window, min(duration, (i + 1) * window)) for i in range(count)]


def _panel(image: np.ndarray, display: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((display, display), Image.BILINEAR))


def _head_overlay(
    frame: np.ndarray, maps: np.ndarray, lo: float, hi: float, display: int
) -> np.ndarray:
    """Upsample ``(K, h, w)`` maps to the display size and colour each head over the frame."""
    up = torch.nn.functional.interpolate(
        torch.from_numpy(maps)[None], size=(display, display), mode="bilinear", align_corners=False
    )[0]
    return pictures.overlay_heads(_panel(frame, display), pictures.scale_unit(up.numpy(), lo, hi))


def image_figure(
    act: Activations,
    windows: Sequence[tuple[float, float]],
    head_names: Sequence[str],
    display: int = 192,
) -> np.ndarray:
    """The PNG: whole-clip overlay, one overlay per moment, the per-head strip and a legend."""
    maps = act.maps[0]  # (1 + M, K, h, w): whole clip first
    lo, hi = float(maps.min()), float(maps.max())
    panels = [
        pictures.caption(_head_overlay(act.frames[0], maps[0], lo, hi, display), "whole clip")
    ]
    for (start, end), m in zip(windows[1:], maps[1:]):
        panels.append(
            pictures.caption(
                _head_overlay(act.frames[0], m, lo, hi, display), f"{start:.1f}-{end:.1f} s"
            )
        )
    per_row = 6
    rows = [panels[i : i + per_row] for i in range(0, len(panels), per_row)]
    row_width = min(len(panels), per_row) * (display + 4) - 4
    strip = pictures.caption(
        pictures.activation_strip(pictures.scale_unit(act.strength), row_width),
        "activation over time",
    )
    return pictures.grid([[pictures.head_legend(head_names)], *rows, [strip]])


def video_frames(
    act: Activations, head_names: Sequence[str], display: int = 384
) -> list[np.ndarray]:
    """One picture per frame: the overlay of its moment, the strip with a time cursor, a legend."""
    lo, hi = float(act.maps.min()), float(act.maps.max())
    strength = pictures.scale_unit(act.strength)
    legend = pictures.head_legend(head_names)
    out = []
    for f in range(len(act.frames)):
        overlay = _head_overlay(act.frames[f], act.maps[f, 0], lo, hi, display)
        strip = pictures.activation_strip(strength, display, cursor=(f + 0.5) / len(act.frames))
        out.append(pictures.grid([[legend], [overlay], [strip]], pad=0))
    return out


def predict_image(
    model: DenseAV,
    image: np.ndarray,
    audio: np.ndarray,
    window: float = 1.0,
    head_names: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, Activations]:
    """Overlay picture ``(H, W, 3)`` uint8 for one image and an audio clip, and the activations."""
    duration = len(audio) / SAMPLE_RATE
    windows = [(0.0, duration), *moment_windows(duration, window)]
    act = compute_activations(model, [image], audio, [windows], device)
    return image_figure(act, windows, head_names or default_head_names(model)), act


def predict_video(
    model: DenseAV,
    frames: Sequence[np.ndarray],
    fps: float,
    audio: np.ndarray,
    window: float = 1.0,
    head_names: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> tuple[list[np.ndarray], Activations]:
    """Overlay frames for a video: frame ``i`` (at ``i / fps`` s) shows the window centred on it."""
    windows = [[(i / fps - window / 2, i / fps + window / 2)] for i in range(len(frames))]
    act = compute_activations(model, frames, audio, windows, device)
    return video_frames(act, head_names or default_head_names(model)), act


def default_head_names(model: DenseAV) -> list[str]:
    return [f"head {k}" for k in range(model.config.heads)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--video", help="a video with an audio track (any container PyAV reads)")
    parser.add_argument("--image", help="an image (with --audio)")
    parser.add_argument(
        "--audio", help="an audio file or a video whose sound to use (with --image)"
    )
    parser.add_argument("--out", default="predict_out", help="output folder (default: predict_out)")
    parser.add_argument(
        "--window", type=float, default=1.0, help="seconds of audio per moment (default 1.0)"
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=10.0,
        help="video: frames per second of the output (default 10)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="video: use at most this many seconds (default 30)",
    )
    parser.add_argument(
        "--head-names",
        default=None,
        help="comma-separated names of the heads, e.g. 'sound,language' (default: head 0, head 1, ...)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    return parser


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Path:
    device = pick_device(args.device)
    model = load_model(args.model, device)
    names = args.head_names.split(",") if args.head_names else default_head_names(model)
    if len(names) != model.config.heads:
        parser.error(
            f"--head-names gives {len(names)} names for a model with {model.config.heads} heads"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.video:
        frames, fps = load_video_frames(args.video, args.fps, args.max_seconds)
        audio = load_audio(args.video)[: int(len(frames) / fps * SAMPLE_RATE)]
        overlays, _ = predict_video(model, list(frames), fps, audio, args.window, names, device)
        path = write_mp4(out / f"{Path(args.video).stem}_heads.mp4", overlays, fps, audio)
    else:
        picture, _ = predict_image(
            model, read_image(args.image), load_audio(args.audio), args.window, names, device
        )
        path = out / f"{Path(args.image).stem}_heads.png"
        pictures.save_png(path, picture)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (
        bool(args.video) == bool(args.image or args.audio)
        or (args.image and not args.audio)
        or (args.audio and not args.image)
    ):
        parser.error("give either --video FILE, or --image FILE and --audio FILE")
    try:
        path = _run(args, parser)
    except (FileNotFoundError, MediaError) as err:  # bad input, named in the message
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
