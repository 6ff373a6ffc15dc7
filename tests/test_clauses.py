from graphs.clauses import ClauseSplitter, split_text


def feed_all(splitter, deltas):
    out = []
    for d in deltas:
        out.extend(splitter.feed(d))
    return out, splitter.flush()


def test_chinese_punctuation_ends_a_clause_immediately():
    clauses, rest = feed_all(ClauseSplitter(), ["你好", "，今天", "天气很好。我们", "去公园吧"])
    assert clauses == ["你好，今天天气很好。"]  # "你好，" alone is under min_chars
    assert rest == ["我们去公园吧"]


def test_english_needs_a_space_after_punctuation():
    clauses, rest = feed_all(ClauseSplitter(), ["It is 3", ".5 degrees", ". Nice", " day!"])
    assert clauses == ["It is 3.5 degrees."]
    assert rest == ["Nice day!"]


def test_short_fragments_wait_for_more_text():
    clauses, rest = feed_all(ClauseSplitter(min_chars=4), ["嗯，", "好的，", "明白了。"])
    assert clauses == ["嗯，好的，", "明白了。"]
    assert rest == []


def test_unpunctuated_text_is_cut_at_max_chars():
    splitter = ClauseSplitter(max_chars=10)
    clauses, rest = feed_all(splitter, ["abc def ghi jkl mno"])
    assert clauses and all(len(c) <= 10 for c in clauses)
    assert " ".join(clauses + rest) == "abc def ghi jkl mno"
    clauses, rest = feed_all(ClauseSplitter(max_chars=5), ["一二三四五六七八"])
    assert clauses == ["一二三四五"] and rest == ["六七八"]


def test_split_text_packs_clauses_under_the_limit():
    pieces = split_text("第一句。第二句。" * 10, max_chars=20)
    assert all(len(p) <= 20 for p in pieces)
    assert "".join(pieces) == "第一句。第二句。" * 10


def test_the_first_clause_is_cut_sooner_than_the_rest():
    clauses, rest = feed_all(ClauseSplitter(max_chars=12, first_max_chars=6), ["一二三四五六七八九十" * 2])
    assert clauses == ["一二三四五六", "七八九十一二三四五六七八"] and rest == ["九十"]
    clauses, _ = feed_all(ClauseSplitter(max_chars=12), ["一二三四五六七八九十" * 2])
    assert clauses[0] == "一二三四五六七八九十一二"  # without it, the first waits as long as any other
