from mmserve.subtitles import Segment, segments, split_sentences, to_srt, to_vtt, words_with_times


def test_sentences_split_at_chinese_and_english_ends():
    assert split_sentences("你好。今天天气很好！Is it? Yes. 3.5 degrees") == [
        "你好。", "今天天气很好！", "Is it?", "Yes.", "3.5 degrees"]


def test_segments_use_unit_timestamps_when_counts_match():
    text = "你好。再见！"
    stamps = [(0, 100), (100, 200), (500, 600), (600, 700)]
    segs = segments(text, stamps, 1.0)
    assert [(s.start_s, s.end_s, s.text) for s in segs] == [(0.0, 0.2, "你好。"), (0.5, 0.7, "再见！")]
    assert [w["word"] for w in words_with_times(text, stamps)] == ["你", "好", "再", "见"]


def test_segments_fall_back_to_proportional_times():
    segs = segments("一二。三四。", None, 2.0)
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, 1.0), (1.0, 2.0)]
    assert words_with_times("一二。", [(0, 1)]) == []
    assert segments("", None, 1.0) == []


def test_srt_and_vtt_shapes():
    segs = [Segment(0.0, 1.5, "hello."), Segment(61.25, 3723.004, "bye.")]
    assert to_srt(segs) == ("1\n00:00:00,000 --> 00:00:01,500\nhello.\n\n"
                            "2\n00:01:01,250 --> 01:02:03,004\nbye.\n\n")
    assert to_vtt(segs).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nhello.\n\n")
