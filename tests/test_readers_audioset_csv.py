"""AudioSet segment-CSV and ontology class-label readers on the real file forms."""

from __future__ import annotations

import pytest

from ingest.sources.audioset_csv import (
    AudioSetCSVError,
    Segment,
    mid_to_index,
    parse_class_labels,
    parse_segments,
    read_class_labels,
    read_segments,
    video_url,
)

SEGMENTS = """# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=3, num_segs=3, num_unique_labels=3, num_positive_labels=4
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
-0RWZT-miFs, 420.000, 430.000, "/m/03v3yw"

-0CamVQdP_Y, 0.000, 6.000, "/m/04rlf"
"""

LABELS = """index,mid,display_name
0,/m/09x0r,"Speech"
1,/t/dd00088,"Male speech, man speaking"
2,/m/03v3yw,"Keys jangling"
3,/m/04rlf,"Music"
"""


def test_parses_real_segment_form(tmp_path):
    path = tmp_path / "balanced_train_segments.csv"
    path.write_text(SEGMENTS)
    segs = read_segments(path)
    assert segs[0] == Segment("--PJHxphWEs", 30.0, 40.0, ("/m/09x0r", "/t/dd00088"))
    assert [s.ytid for s in segs] == ["--PJHxphWEs", "-0RWZT-miFs", "-0CamVQdP_Y"]
    assert segs[2].duration == 6.0


def test_parses_class_labels_with_quoted_commas(tmp_path):
    path = tmp_path / "class_labels_indices.csv"
    path.write_text(LABELS)
    classes = read_class_labels(path)
    assert classes[1].display_name == "Male speech, man speaking"
    assert mid_to_index(classes) == {"/m/09x0r": 0, "/t/dd00088": 1, "/m/03v3yw": 2, "/m/04rlf": 3}
    segs = list(parse_segments(SEGMENTS.splitlines(), "s.csv", [c.mid for c in classes]))
    assert len(segs) == 3


@pytest.mark.parametrize(
    "line, message",
    [
        ('abc, 1.0, "/m/1"', "expected 4 fields"),
        ('abc, x, 10.0, "/m/1"', "not numbers"),
        ('abc, 10.0, 5.0, "/m/1"', "start_seconds < end_seconds"),
        ('abc, 0.0, 10.0, "speech"', "positive_labels"),
        ('a b, 0.0, 10.0, "/m/1"', "bad YTID"),
    ],
)
def test_bad_segment_rows_name_file_and_line(line, message):
    lines = ["# header", "# header", "# YTID, ...", 'ok_id, 0.0, 10.0, "/m/1"', line]
    with pytest.raises(AudioSetCSVError, match=rf"^seg\.csv:5: .*{message}"):
        list(parse_segments(lines, "seg.csv"))


def test_unknown_label_is_reported():
    with pytest.raises(AudioSetCSVError, match=r"seg\.csv:1: labels not in the ontology"):
        list(parse_segments(['x, 0, 10, "/m/unknown"'], "seg.csv", ["/m/09x0r"]))


def test_bad_class_label_files_are_reported():
    with pytest.raises(AudioSetCSVError, match=r"l\.csv:1: header"):
        parse_class_labels(["idx,mid,name", "0,/m/1,a"], "l.csv")
    with pytest.raises(AudioSetCSVError, match=r"l\.csv:3: repeated"):
        parse_class_labels(["index,mid,display_name", "0,/m/1,a", "0,/m/2,b"], "l.csv")
    with pytest.raises(AudioSetCSVError, match=r"l\.csv:2: index is not an integer"):
        parse_class_labels(["index,mid,display_name", "zero,/m/1,a"], "l.csv")


def test_video_url_template():
    assert video_url("http://127.0.0.1:8000/{YTID}.mp4", "abc") == "http://127.0.0.1:8000/abc.mp4"
    assert (
        video_url("https://www.youtube.com/watch?v={YTID}", "x-y")
        == "https://www.youtube.com/watch?v=x-y"
    )
    with pytest.raises(ValueError, match="YTID"):
        video_url("http://h/{id}.mp4", "abc")
