import json
from collections import Counter

import pytest

from vhslab.shapes.prompts import Item, PromptError, PromptSpec, read_prompts, write_prompts
from vhslab.shapes.suites import load_suite


def test_real_geneval_file_loads_with_its_tag_counts(geneval_file):
    specs = read_prompts(geneval_file)
    assert len(specs) == 553
    counts = Counter(s.tag for s in specs)
    assert sorted(counts.values(), reverse=True) == [100, 100, 99, 94, 80, 80]
    assert counts == {"position": 100, "color_attr": 100, "two_object": 99, "colors": 94,
                      "single_object": 80, "counting": 80}
    pos = next(s for s in specs if s.tag == "position")
    assert pos.include[1].position[1] == 0 and pos.include[1].position[0] in ("left of", "right of", "above", "below")
    counting = next(s for s in specs if s.tag == "counting")
    assert counting.exclude[0].count == counting.include[0].count + 1


def test_round_trip_is_byte_identical_and_json_array_variant(geneval_file, tmp_path):
    specs = read_prompts(geneval_file)
    out = tmp_path / "copy.jsonl"
    write_prompts(specs, out)
    assert out.read_bytes() == geneval_file.read_bytes()
    assert read_prompts(out) == specs
    arr = tmp_path / "copy.json"
    write_prompts(specs, arr)
    assert isinstance(json.loads(arr.read_text()), list)
    assert read_prompts(arr) == specs


@pytest.mark.parametrize(
    "row, field",
    [
        ({"tag": "single_object", "prompt": "p", "include": [{"class": "circle", "count": 0}]}, "include[0].count"),
        ({"tag": "position", "prompt": "p", "include": [{"class": "circle", "count": 1, "position": ["left of", 3]}]},
         "include[0].position"),
        ({"tag": "position", "prompt": "p", "include": [{"class": "circle", "count": 1, "position": ["near", 0]}]},
         "include[0].position"),
        ({"tag": "single_object", "prompt": "p", "include": [{"count": 1}]}, "include[0].class"),
        ({"tag": "single_object", "include": [{"class": "a"}]}, "prompt"),
        ({"tag": "single_object", "prompt": "p", "include": [{"class": "a", "count": "2"}]}, "include[0].count"),
        ({"tag": "x", "prompt": "p", "include": [{"class": "a"}]}, "tag"),  # not one of GenEval's six
        ({"tag": "single_object", "prompt": 42, "include": [{"class": "a"}]}, "prompt"),
        ({"tag": "counting", "prompt": "p", "include": [{"class": "a", "count": 2}], "exclude": None}, "exclude"),
    ],
)
def test_bad_metadata_names_the_field(row, field, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(PromptError, match=rf"bad.jsonl:1.*{field.replace('[', '.').replace(']', '.')}"):
        read_prompts(path)


def test_invalid_json_line_is_reported_with_its_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"tag": "a", "prompt": "p", "include": [{"class": "c"}]}\n{oops\n')
    with pytest.raises(PromptError, match=r"bad\.jsonl:2"):
        read_prompts(path)


def test_suites_are_disjoint_versioned_and_in_geneval_proportions():
    ev = load_suite("geneval-shapes")
    tr = load_suite("train")
    assert Counter(s.tag for s in ev) == {"position": 100, "color_attr": 100, "two_object": 99, "colors": 94,
                                          "single_object": 80, "counting": 80}
    assert not {s.prompt for s in ev} & {s.prompt for s in tr}
    assert len(tr) >= 150 and len({s.prompt for s in tr}) == len(tr)
    assert load_suite("geneval-shapes") == ev  # deterministic
    assert ev[0].prompt.startswith("a photo of ")
    with pytest.raises(PromptError, match="unknown prompt suite"):
        load_suite("nope")


def test_spec_round_trips_through_json():
    spec = PromptSpec("position", "a photo of a star above a circle",
                      (Item("circle"), Item("star", 1, None, ("above", 0))))
    assert PromptSpec.from_json(spec.to_json()) == spec


def test_meaning_ignores_order_and_mirroring_and_nothing_else():
    from vhslab.shapes.phrasing import parse_prompt

    same = [
        ("a photo of a red circle and a blue square", "a photo of a blue square and a red circle"),
        ("a photo of a circle left of a square", "a photo of a square right of a circle"),
        ("a photo of a star above a triangle", "a photo of a triangle below a star"),
        ("a photo of a circle and a square", "a photo of a square and a circle"),
    ]
    for a, b in same:
        assert parse_prompt(a).meaning == parse_prompt(b).meaning, (a, b)
    different = [
        ("a photo of a red circle and a blue square", "a photo of a blue circle and a red square"),
        ("a photo of a circle left of a square", "a photo of a square left of a circle"),
        ("a photo of a circle left of a square", "a photo of a circle above a square"),
        ("a photo of two circles", "a photo of three circles"),
        ("a photo of a red circle", "a photo of a circle"),
    ]
    for a, b in different:
        assert parse_prompt(a).meaning != parse_prompt(b).meaning, (a, b)


def test_no_meaning_crosses_train_and_geneval_shapes():
    from vhslab.shapes.suites import prompt_space

    train, evaluation = load_suite("train"), load_suite("geneval-shapes")
    assert not {s.meaning for s in train} & {s.meaning for s in evaluation}
    # the split keeps every meaning's prompts together, including those that neither suite uses
    for tag in ("two_object", "position", "color_attr"):
        groups = Counter(s.meaning for s in prompt_space(tag))
        assert set(groups.values()) == {2}  # two wordings per meaning in these tags
    by_meaning = Counter(s.meaning for s in set(train))
    assert max(by_meaning.values()) == 2 and sum(v == 2 for v in by_meaning.values()) > 0
