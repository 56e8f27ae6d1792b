"""Reader of the released DenseAV prompted-segmentation format (evaluation.datasets)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evaluation.datasets import (
    PromptedSetError,
    decode_ade_seg,
    load_prompted_set,
    read_ade_seg,
)


def _make_set(root, header: str, rows: list[str], stems=("ADE_val_00000001",)) -> None:
    for sub in ("frames", "audio", "annotations"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        Image.new("RGB", (8, 8)).save(root / "frames" / f"{stem}.jpg")
        seg = np.zeros((8, 8, 3), np.uint8)
        seg[2:5, 2:5] = (30, 232, 1)  # class 1000
        Image.fromarray(seg).save(root / "annotations" / f"{stem}_seg.png")
        (root / "audio" / f"{stem}.wav").write_bytes(b"RIFF")
    (root / "prompted_segmentation.csv").write_text("\n".join([header] + rows) + "\n")


def test_decode_ade_seg():
    rgb = np.array([[[0, 0, 0], [0, 12, 5], [10, 0, 0], [30, 232, 9]]], np.uint8)
    assert decode_ade_seg(rgb).tolist() == [[0, 12, 256, 1000]]


def test_speech_set(tmp_path):
    _make_set(
        tmp_path,
        ",image_location,speech_prompt_file,ade_class_id,timing",
        [
            '0,ADE_val_00000001.jpg,prompts/speech/ADE_val_00000001.wav,1000,"[1.25, 1.75]"',
            '1,ADE_val_00000001.jpg,,1000,"[0, 1]"',  # no prompt: skipped
            '2,ADE_val_00000001.jpg,x/ADE_val_00000001.wav,0,"[0, 1]"',  # background: skipped
        ],
    )
    s = load_prompted_set(tmp_path)
    assert s.kind == "speech" and len(s) == 1 and s.class_ids() == [1000]
    p = s[0]
    assert p.timing == (1.25, 1.75) and p.row == 1
    assert p.audio_path == tmp_path / "audio" / "ADE_val_00000001.wav"
    assert (read_ade_seg(p.seg_path) == 1000).sum() == 9


def test_sound_set(tmp_path):
    _make_set(
        tmp_path,
        "image_location,vggsound_file,ade_class_id",
        ["ADE_val_00000001.jpg,vggsound/ADE_val_00000001.wav,1000"],
    )
    s = load_prompted_set(tmp_path)
    assert s.kind == "sound" and s[0].timing is None


@pytest.mark.parametrize(
    "row, message",
    [
        (
            'ADE_val_00000001.jpg,a/ADE_val_00000001.wav,7,"[2, 1]"',
            "row 1 column 'timing'.*ends before",
        ),
        ('ADE_val_00000001.jpg,a/ADE_val_00000001.wav,7,"1.5"', "row 1 column 'timing'.*JSON list"),
        ('ADE_val_00000001.jpg,a/ADE_val_00000001.wav,seven,"[1, 2]"', "row 1: ade_class_id"),
        ('ADE_val_00000002.jpg,a/ADE_val_00000001.wav,7,"[1, 2]"', "row 1: file not found"),
    ],
)
def test_bad_rows_name_csv_and_row(tmp_path, row, message):
    _make_set(tmp_path, "image_location,speech_prompt_file,ade_class_id,timing", [row])
    with pytest.raises(PromptedSetError, match=rf"prompted_segmentation\.csv: {message}"):
        load_prompted_set(tmp_path)


def test_missing_columns_and_ambiguous_kind(tmp_path):
    _make_set(
        tmp_path, "image_location,speech_prompt_file,ade_class_id", ["ADE_val_00000001.jpg,a.wav,7"]
    )
    with pytest.raises(PromptedSetError, match=r"missing column\(s\) \['timing'\]"):
        load_prompted_set(tmp_path)
    _make_set(
        tmp_path,
        "image_location,speech_prompt_file,vggsound_file,ade_class_id,timing",
        ['ADE_val_00000001.jpg,a.wav,b.wav,7,"[0, 1]"'],
    )
    with pytest.raises(PromptedSetError, match="pass kind="):
        load_prompted_set(tmp_path)
    assert load_prompted_set(tmp_path, kind="sound", check_files=False).kind == "sound"
