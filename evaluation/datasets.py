"""Reader of the released DenseAV prompted-segmentation sets (ADE20K speech- and sound-prompted).

A set is a folder::

    prompted_segmentation.csv    one prompt per row: image_location, ade_class_id, and either
                                 speech_prompt_file + timing (speech) or vggsound_file (sound)
    frames/<image_location>      the image (JPEG)
    audio/<basename of the prompt file>
    annotations/<image_location with .jpg -> _seg.png>
                                 ADE20K colour-coded masks: class id = R / 10 * 256 + G

``timing`` is a JSON list ``[start, end]`` in seconds: the span of the object's word in the
speech prompt. As in the released evaluation, rows without a prompt file or with class id 0
(background) are skipped. Extra columns (e.g. a pandas index column) are ignored.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

PROMPT_COLUMNS = {"speech": "speech_prompt_file", "sound": "vggsound_file"}


class PromptedSetError(ValueError):
    """A prompted-segmentation set is malformed; the message names the file and row/field."""


@dataclass(frozen=True)
class Prompt:
    """One evaluation prompt: an image, the audio that names or sounds one of its classes, the
    class id (ADE20K numbering) whose pixels are the target, and the word's time span in the
    audio for speech prompts (None for sound prompts)."""

    row: int  # 1-based data row in the CSV (the header is row 0)
    image_path: Path
    audio_path: Path
    seg_path: Path
    ade_class_id: int
    class_name: str | None
    timing: tuple[float, float] | None


@dataclass(frozen=True)
class PromptedSet:
    """A loaded set: its folder, kind ("speech" or "sound") and prompts in CSV order."""

    root: Path
    kind: str
    prompts: tuple[Prompt, ...]

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> Prompt:
        return self.prompts[i]

    def class_ids(self) -> list[int]:
        """The distinct prompted class ids, sorted."""
        return sorted({p.ade_class_id for p in self.prompts})


def decode_ade_seg(rgb: np.ndarray) -> np.ndarray:
    """ADE20K ``_seg.png`` colours (H, W, 3) uint8 -> class ids (H, W) int32 (0 = unlabelled),
    class = R / 10 * 256 + G."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an (H, W, 3) colour mask, got shape {rgb.shape}")
    r = rgb[..., 0].astype(np.int32)
    g = rgb[..., 1].astype(np.int32)
    return r // 10 * 256 + g


def read_ade_seg(path: str | os.PathLike) -> np.ndarray:
    """Read a ``_seg.png`` into class ids (H, W) int32 (see :func:`decode_ade_seg`)."""
    with Image.open(path) as im:
        if im.mode != "RGB":
            raise PromptedSetError(f"{path}: a _seg.png must be RGB, got mode {im.mode}")
        return decode_ade_seg(np.asarray(im))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as RGB (H, W, 3) uint8."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _parse_timing(text: str, where: str) -> tuple[float, float]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise PromptedSetError(f"{where}: timing is not JSON: {text!r}") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) for v in value)
    ):
        raise PromptedSetError(f"{where}: timing must be a JSON list [start, end], got {text!r}")
    start, end = float(value[0]), float(value[1])
    if end < start:
        raise PromptedSetError(f"{where}: timing ends before it starts: {text!r}")
    return start, end


def load_prompted_set(
    root: str | os.PathLike, kind: str | None = None, check_files: bool = True
) -> PromptedSet:
    """Load a prompted-segmentation set from its folder.

    Args:
        root: the set's folder (holding ``prompted_segmentation.csv``).
        kind: "speech" or "sound"; inferred from the CSV's columns when None (an error if the
            CSV has both prompt columns filled and ``kind`` is not given).
        check_files: verify that every referenced image, audio and mask file exists.

    Raises:
        PromptedSetError: naming the CSV and the row and column at fault, or a missing file.
    """
    root = Path(root)
    csv_path = root / "prompted_segmentation.csv"
    if not csv_path.is_file():
        raise PromptedSetError(f"{csv_path}: not found")
    with csv_path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    if kind is None:
        present = [
            k
            for k, col in PROMPT_COLUMNS.items()
            if col in columns and any(r.get(col) for r in rows)
        ]
        if len(present) != 1:
            raise PromptedSetError(
                f"{csv_path}: cannot tell speech from sound prompts (columns {columns}); pass kind="
            )
        kind = present[0]
    if kind not in PROMPT_COLUMNS:
        raise PromptedSetError(f"unknown prompt kind {kind!r}; expected 'speech' or 'sound'")
    prompt_col = PROMPT_COLUMNS[kind]
    required = ["image_location", "ade_class_id", prompt_col] + (
        ["timing"] if kind == "speech" else []
    )
    missing = [c for c in required if c not in columns]
    if missing:
        raise PromptedSetError(f"{csv_path}: missing column(s) {missing}; has {columns}")

    prompts = []
    for i, r in enumerate(rows, start=1):
        where = f"{csv_path}: row {i}"
        if not r.get(prompt_col):
            continue
        try:
            class_id = int(float(r["ade_class_id"]))
        except (TypeError, ValueError):
            raise PromptedSetError(
                f"{where}: ade_class_id is not an integer: {r['ade_class_id']!r}"
            ) from None
        if class_id == 0:
            continue
        image = r["image_location"]
        if not image:
            raise PromptedSetError(f"{where}: empty image_location")
        stem, _ = os.path.splitext(image)
        timing = (
            _parse_timing(r["timing"], f"{where} column 'timing'") if kind == "speech" else None
        )
        prompt = Prompt(
            row=i,
            image_path=root / "frames" / image,
            audio_path=root / "audio" / r[prompt_col].split("/")[-1],
            seg_path=root / "annotations" / f"{stem}_seg.png",
            ade_class_id=class_id,
            class_name=r.get("ade_class_name") or None,
            timing=timing,
        )
        if check_files:
            for path in (prompt.image_path, prompt.audio_path, prompt.seg_path):
                if not path.is_file():
                    raise PromptedSetError(f"{where}: file not found: {path}")
        prompts.append(prompt)
    return PromptedSet(root, kind, tuple(prompts))
