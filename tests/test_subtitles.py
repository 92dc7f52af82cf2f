"""SRT and WebVTT from timed segments: order, end times, no overlaps, escaping — checked
with real parsers (srt, webvtt-py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import srt
import webvtt

from gs_video_report.services import subtitles
from gs_video_report.services.templates import TemplateRegistry


def _segments() -> list[dict[str, object]]:
    return [  # out of order, two at the same second, one past the end, one with an end
        {"start_seconds": 30, "speaker": "Student A", "text": "A question?"},
        {"start_seconds": 0, "speaker": "Lecturer", "text": "Welcome.\n\n\nToday: fractions."},
        {"start_seconds": 30, "speaker": "Lecturer", "text": "Good question."},
        {"start_seconds": 12, "end_seconds": 20, "speaker": "Lecturer", "text": "1 --> 2 <b>&</b>"},
        {"start_seconds": 95, "speaker": "Lecturer", "text": "after the end"},
        {"start_seconds": 5, "speaker": "", "text": "   "},  # no text: no cue
    ]


def test_cues_are_ordered_bounded_and_never_overlap() -> None:
    subs = subtitles.build(_segments(), duration_s=60.0)
    assert [(c.start_s, c.end_s) for c in subs.cues] == [(0, 12), (12, 20), (30, 60)]
    assert subs.dropped == 1  # starts at 95 s in a 60 s video
    assert subs.cues[0].text == "Welcome.\nToday: fractions."  # a blank line ends a cue
    assert subs.cues[2].text == "A question?\nLecturer: Good question."  # same second: one cue
    for earlier, later in zip(subs.cues, subs.cues[1:], strict=False):
        assert earlier.start_s < earlier.end_s <= later.start_s


def test_srt_and_vtt_parse_back_to_the_same_cues() -> None:
    subs = subtitles.build(_segments(), duration_s=60.0)
    parsed = list(srt.parse(subtitles.to_srt(subs)))
    assert [(p.start, p.end) for p in parsed] == [
        (timedelta(seconds=0), timedelta(seconds=12)),
        (timedelta(seconds=12), timedelta(seconds=20)),
        (timedelta(seconds=30), timedelta(seconds=60)),
    ]
    assert parsed[0].content == "Lecturer: Welcome.\nToday: fractions."
    assert parsed[1].content == "Lecturer: 1 -> 2 <b>&</b>"  # no second timing line
    vtt = webvtt.from_string(subtitles.to_vtt(subs))
    assert [(c.start, c.end) for c in vtt.captions] == [
        ("00:00:00.000", "00:00:12.000"),
        ("00:00:12.000", "00:00:20.000"),
        ("00:00:30.000", "00:01:00.000"),
    ]
    assert vtt.captions[0].voice == "Lecturer"
    assert vtt.captions[1].raw_text.endswith("1 --&gt; 2 &lt;b&gt;&amp;&lt;/b&gt;")


def test_unknown_duration_bounds_the_last_cue_and_long_times_format() -> None:
    subs = subtitles.build([{"start_seconds": 3725.5, "text": "late"}], duration_s=None)
    assert (subs.cues[0].start_s, subs.cues[0].end_s) == (3725.5, 3725.5 + subtitles.LAST_CUE_S)
    assert "01:02:05,500 --> 01:02:15,500" in subtitles.to_srt(subs)
    assert "01:02:05.500 --> 01:02:15.500" in subtitles.to_vtt(subs)


@pytest.mark.parametrize("bad", [None, -1, "12", float("nan"), True])
def test_segments_without_a_usable_start_are_left_out(bad: object) -> None:
    subs = subtitles.build(
        [{"start_seconds": bad, "text": "x"}, {"start_seconds": 1, "text": "y"}], 9
    )
    assert [c.text for c in subs.cues] == ["y"]


def test_which_templates_have_timed_segments() -> None:
    registry = TemplateRegistry.with_builtins()
    timed = {name: subtitles.timed_field(registry.get(name).schema) for name in registry.names()}
    assert timed == {
        "chinese_transcript": "transcript",
        "comprehensive_lesson": None,
        "summary_report": None,
    }
