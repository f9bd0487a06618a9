"""What a typed line writes: text in, a layout of classes and gaps out.

"2 026", "2,026", "-3.14" and "12/25" write their digits and keep every space
or punctuation mark as a gap where it stands; class names are matched
case-insensitively and by a unique beginning ("snea" is "Sneaker"). Only what
cannot be written is refused, with a message naming the word (and, for an
ambiguous beginning, the classes it could be).

These are the rules of the server (`POST /api/sample`, `zoo sample
--condition`). The static page of `zoo export-web` runs the same rules in
zoo/web/writing.js, reading GAP_CHARACTERS from the model's info so that the
set is defined only here; tests/test_web.py runs both parsers on the same
inputs and requires the same answers.
"""

from __future__ import annotations

import re
import string
from typing import Optional, Sequence

from zoo.errors import ZooError

# Spaces a typed number may use as a thousands separator (no-break, thin, narrow
# no-break), then every ASCII punctuation mark. Anything else is part of a word.
WHITESPACE = " \t\n\r\u00a0\u2009\u202f"
GAP_CHARACTERS = WHITESPACE + string.punctuation + "\u2212\u2013\u2014"  # − – —
DIGITS_PER_CLASS_LIMIT = 10  # with at most this many classes each digit is a class; with more, a number is one

Token = Optional[int]  # a class index, or None for a gap


class LayoutError(ZooError):
    """Text the page cannot write; the message says which word and why."""


def layout(text: str, class_names: Sequence[str]) -> list[Token]:
    """The line `text` writes: class indices and None for gaps, in the order typed.

    Leading and trailing whitespace is dropped; a line with no class in it is refused.
    """
    names = [str(name) for name in class_names]
    text = text.strip(WHITESPACE)
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        if text[i] in GAP_CHARACTERS:
            tokens.append(None)
            i += 1
            continue
        word = text[i : word_end(text, i)]
        named = name_at(text, i, names)
        if named is not None:
            index, i = named
            tokens.append(index)
        elif re.fullmatch("[0-9]+", word):
            tokens.extend(number_classes(word, names))
            i += len(word)
        else:
            raise LayoutError(unknown(word, names))
    if not any(token is not None for token in tokens):
        raise LayoutError(empty(names))
    return tokens


def classes(tokens: Sequence[Token]) -> list[int]:
    """The class indices of a layout, gaps left out: what is sampled."""
    return [token for token in tokens if token is not None]


def word_end(text: str, start: int) -> int:
    """Where the word starting at `start` ends: the next gap character, or the end."""
    end = start
    while end < len(text) and text[end] not in GAP_CHARACTERS:
        end += 1
    return end


def name_at(text: str, start: int, names: Sequence[str]) -> Optional[tuple[int, int]]:
    """(class index, end) of the class name written at `start`, or None when no name begins there.

    The longest stretch that ends before a gap (or at the end) and begins some
    name wins, so a name with spaces or punctuation in it ("Ankle boot",
    "T-shirt/top") is one class. A stretch that is a whole name is that class;
    one that begins several names and is none of them is refused, naming them.
    """
    lowered = [name.lower() for name in names]
    longest = max((len(name) for name in names), default=0)
    for end in range(min(len(text), start + longest), start, -1):
        if (end < len(text) and text[end] not in GAP_CHARACTERS) or text[end - 1] in GAP_CHARACTERS:
            continue
        stretch = text[start:end].lower()
        candidates = [k for k, name in enumerate(lowered) if name.startswith(stretch)]
        exact = [k for k in candidates if lowered[k] == stretch]
        if exact or len(candidates) == 1:
            return (exact or candidates)[0], end
        if candidates:
            raise LayoutError(
                f"ambiguous class '{text[start:end]}': it could be "
                f"{', '.join(names[k] for k in candidates)}; type more of the name"
            )
    return None


def number_classes(number: str, names: Sequence[str]) -> list[int]:
    """The classes a run of digits writes: each digit (at most 10 classes), else the whole number."""
    parts = list(number) if len(names) <= DIGITS_PER_CLASS_LIMIT else [number]
    for part in parts:
        if int(part) >= len(names):
            raise LayoutError(unknown(part, names))
    return [int(part) for part in parts]


def unknown(word: str, names: Sequence[str]) -> str:
    """The refusal of a word that is no class: it names the word and lists what can be written."""
    return f"unknown class '{word}'; classes are 0..{len(names) - 1} ({', '.join(names)})"


def empty(names: Sequence[str]) -> str:
    """The refusal of a line with nothing to write."""
    named = "" if names == [str(k) for k in range(len(names))] or not names else f" or names such as '{names[0]}'"
    return f"empty condition: nothing to write; give class numbers such as '3' or '2 0 2 6'{named}"
