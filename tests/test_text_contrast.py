"""bench/text_contrast.py: which caption pairs it compares (one fact word swapped for another of its kind)."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "text_contrast", Path(__file__).resolve().parents[1] / "bench" / "text_contrast.py"
)
text_contrast = importlib.util.module_from_spec(spec)
spec.loader.exec_module(text_contrast)


def test_swaps_change_one_whole_word_of_the_group():
    caption = "A big red ball is thrown to the left, and a small blue box rests on the floor."
    groups = text_contrast.GROUPS
    assert text_contrast.swaps(caption, groups["direction"]) == [
        ("A big red ball is thrown to the right, and a small blue box rests on the floor.", "left", "right")
    ]
    [(other, word, new)] = text_contrast.swaps(caption, groups["colour"])
    assert word == "red" and new != "red" and new in groups["colour"]
    assert other == caption.replace("red", new, 1)
    # whole words only: "block" is a shape word, "blocks" in "blockstack" is not matched
    assert text_contrast.swaps("A blockstack sits still.", groups["shape"]) == []
    assert text_contrast.swaps("A red ball drops.", groups["direction"]) == []
    assert {"left", "right"} == set(groups["direction"]) and {"sphere", "wedge", "cube"} <= set(groups["shape"])
