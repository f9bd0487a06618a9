"""zoo.web.writing: what a typed line writes (the page's and `zoo sample --condition`'s rules)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vae_zoo_plugins.base.conditions import make_onehot_label
from zoo.web.writing import GAP_CHARACTERS, WHITESPACE, LayoutError, classes, layout

DIGITS = [str(d) for d in range(10)]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
KMNIST = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]
TWELVE = [f"class {k}" for k in range(12)]  # more than 10 classes: a number is one class, not its digits
_ = None  # a gap, in the tables below

WRITTEN = [
    (DIGITS, "2026", [2, 0, 2, 6]),
    (DIGITS, "2 026", [2, _, 0, 2, 6]),
    (DIGITS, "2,026", [2, _, 0, 2, 6]),
    (DIGITS, "-3.14", [_, 3, _, 1, 4]),
    (DIGITS, "12/25", [1, 2, _, 2, 5]),
    (DIGITS, "3 12", [3, _, 1, 2]),
    (DIGITS, "  7\t", [7]),  # whitespace at the ends is dropped, punctuation is not
    (DIGITS, "2\u202f026", [2, _, 0, 2, 6]),  # a narrow no-break space, as some locales group thousands
    (DIGITS, "1 - 2", [1, _, _, _, 2]),
    (FASHION, "sandal", [5]),
    (FASHION, "ankle boot", [9]),
    (FASHION, "snea", [7]),
    (FASHION, "SANDAL", [5]),
    (FASHION, "Ankle boot, Sandal", [9, _, _, 5]),
    (FASHION, "ankle b", [9]),
    (FASHION, "t-shirt/top dress", [0, _, 3]),
    (FASHION, "T-SH", [0]),
    (FASHION, "tr", [1]),
    (FASHION, "0 1 2 3", [0, _, 1, _, 2, _, 3]),  # the page's default for named classes
    (FASHION, "2026", [2, 0, 2, 6]),
    (FASHION, "3 sneaker", [3, _, 7]),
    (KMNIST, "ki su", [1, _, 2]),
    (KMNIST, "ts", [3]),
    (KMNIST, "o", [0]),
    (TWELVE, "11", [11]),
    (TWELVE, "3 11", [3, _, 11]),
    (TWELVE, "Class 1", [1]),  # a whole name wins over the longer names it begins
    (TWELVE, "class 11", [11]),
]


@pytest.mark.parametrize(("names", "text", "expected"), WRITTEN, ids=[repr(text) for _, text, _ in WRITTEN])
def test_a_line_writes_its_classes_and_keeps_its_gaps(names, text, expected):
    assert layout(text, names) == expected


REFUSED = [
    (DIGITS, "12x4", "unknown class '12x4'; classes are 0..9 (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)"),
    (DIGITS, "²", "unknown class '²'; classes are 0..9"),
    (DIGITS, "3 €", "unknown class '€'"),
    (DIGITS, "", "empty condition: nothing to write; give class numbers such as '3' or '2 0 2 6'"),
    (DIGITS, " \t ", "empty condition"),
    (DIGITS, "-.,/", "empty condition"),
    (FASHION, "s", "ambiguous class 's': it could be Sandal, Shirt, Sneaker; type more of the name"),
    (FASHION, "2 T", "ambiguous class 'T': it could be T-shirt/top, Trouser"),
    (
        FASHION,
        "boot",
        "unknown class 'boot'; classes are 0..9 (T-shirt/top, Trouser, Pullover, Dress, Coat, "
        "Sandal, Shirt, Sneaker, Bag, Ankle boot)",
    ),
    (FASHION, "sandals", "unknown class 'sandals'"),
    (
        FASHION,
        ",",
        "empty condition: nothing to write; give class numbers such as '3' or '2 0 2 6' or names such as 'T-shirt/top'",
    ),
    (TWELVE, "12", "unknown class '12'; classes are 0..11"),
    (TWELVE, "class", "ambiguous class 'class': it could be class 0, class 1,"),
]


@pytest.mark.parametrize(("names", "text", "message"), REFUSED, ids=[repr(text) for _, text, _ in REFUSED])
def test_what_cannot_be_written_is_refused_naming_why(names, text, message):
    with pytest.raises(LayoutError) as refused:
        layout(text, names)
    assert str(refused.value).startswith(message)


SEPARATORS = st.text(alphabet=GAP_CHARACTERS, min_size=1, max_size=3)


@given(
    st.lists(st.tuples(st.text(alphabet="0123456789", min_size=1, max_size=4), SEPARATORS), min_size=1, max_size=6),
    SEPARATORS,
)
def test_a_number_writes_every_digit_and_a_gap_per_separator_where_it_stands(groups, lead):
    text = lead + "".join(digits + separator for digits, separator in groups)
    kept = text.strip(WHITESPACE)
    assert layout(text, DIGITS) == [None if ch in GAP_CHARACTERS else int(ch) for ch in kept]


def prefixes(names):
    """(prefix, class) for every beginning of every name that only that name has (or that is a name),
    ending on a character that is not a gap."""
    lowered = [n.lower() for n in names]
    for index, name in enumerate(lowered):
        for end in range(1, len(name) + 1):
            prefix = name[:end]
            if prefix[-1] not in GAP_CHARACTERS and (
                prefix in lowered or sum(n.startswith(prefix) for n in lowered) == 1
            ):
                yield prefix, index


FASHION_PREFIXES = sorted(prefixes(FASHION))


@given(
    st.lists(st.sampled_from(FASHION_PREFIXES), min_size=1, max_size=5),
    st.randoms(use_true_random=False),
    st.sampled_from([" ", ", ", "/", " - "]),
)
def test_names_match_in_any_case_by_any_unique_beginning(chosen, random, separator):
    cased = ["".join(ch.upper() if random.random() < 0.5 else ch for ch in prefix) for prefix, _ in chosen]
    tokens = layout(separator.join(cased), FASHION)
    assert classes(tokens) == [index for _, index in chosen]
    assert tokens.count(None) == len(separator) * (len(chosen) - 1)


@given(
    st.text(alphabet=st.sampled_from(list("0123456789abkstSTe ,-./€²") + ["\u202f", "\U0001f600"]), max_size=30),
    st.sampled_from([DIGITS, FASHION, KMNIST, TWELVE]),
)
def test_any_text_is_written_or_refused_with_a_reason(text, names):
    try:
        tokens = layout(text, names)
    except LayoutError as refused:
        assert str(refused).startswith(("unknown class '", "ambiguous class '", "empty condition: "))
    else:
        assert any(t is not None for t in tokens) and all(t is None or 0 <= t < len(names) for t in tokens)


class Classes:
    """A dataset as far as a condition's parse looks at it."""

    class_names = DIGITS


def test_the_cli_condition_writes_the_classes_of_the_line_without_its_gaps():
    c, labels = make_onehot_label((8, 8, 1), 10).parse("2 026", Classes())
    assert labels == ["2", "0", "2", "6"]
    np.testing.assert_array_equal(np.asarray(c), np.eye(10)[[2, 0, 2, 6]])
