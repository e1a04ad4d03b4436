"""The term language of the red-flag rules: how a rule's terms match free text.

Text and terms are normalised the same way: Unicode NFKD, combining marks dropped
(accent-insensitive), ``str.casefold`` (case-insensitive), then split into words (runs of
letters, runs of digits: "3hari" is "3 hari") joined by one space. A term matches when its
normalised words occur as whole, consecutive words of the text, so ``"mole"`` does not
match "molecule" and ``"non-healing"`` matches "non healing". A term ending in ``*``
matches any word that starts with its last word (``"bleed*"``: bleed, bleeds, bleeding),
and a ``#`` word matches any number (``"for # months"``). Matching ignores negation: "no
fever" still contains "fever". That errs towards referral, which is the safe direction for
a red flag.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

__all__ = [
    "MASK",
    "MIN_STEM_LETTERS",
    "TERM_SYNTAX",
    "compile_terms",
    "normalise_text",
    "term_regex",
]

#: Letters a ``*`` term must keep before its ``*`` (``"ab*"`` would match too much).
MIN_STEM_LETTERS = 3

#: Replaces an ignored phrase: not a word, so no term can match across it.
MASK = "#"

#: What makes a term valid, for error messages and the rule file's JSON schema.
TERM_SYNTAX = (
    "a term needs letters or digits; '#' stands for a number; '*' is allowed only at its "
    f"end, after at least {MIN_STEM_LETTERS} letters"
)

_WORD = re.compile(r"[^\W\d_]+|\d+")  # runs of letters, runs of digits
_NUMBER = r"\d+(?: \d+)?"  # "2", or "1.5" / "1,5" after normalisation ("1 5")


def normalise_text(text: str) -> str:
    """Matching form of ``text``: NFKD, combining marks dropped, casefolded, split into
    words (runs of letters, runs of digits) joined by single spaces.
    ``"Démam, TINGGI! sejak 3hari"`` -> ``"demam tinggi sejak 3 hari"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_WORD.findall(bare.casefold()))


def term_regex(term: str) -> str | None:
    """Regex source matching one term inside normalised text, or None if it is unusable.

    Words are normalised like the text; a ``#`` word matches a number; a final ``*``
    lets the last word continue (at least ``MIN_STEM_LETTERS`` letters must precede it).
    """
    stem = term.endswith("*")
    body = term[:-1] if stem else term
    if "*" in body:
        return None
    words: list[str | None] = []  # None stands for a number
    for part in re.split(r"(#)", body):
        words.extend([None] if part == "#" else normalise_text(part).split())
    if all(word is None for word in words):
        return None
    last = words[-1]
    if stem and (last is None or len(last) < MIN_STEM_LETTERS):
        return None
    pieces = [_NUMBER if word is None else re.escape(word) for word in words]
    return " ".join(pieces) + (r"\w*" if stem else "")


def compile_terms(terms: Sequence[str]) -> re.Pattern[str]:
    r"""One regex for a term list, whole words only: ``(?<!\S)(?:t1|t2|...)(?!\S)``.

    Raises ``ValueError`` for an unusable term (see :func:`term_regex`).
    """
    sources: set[str] = set()
    for term in terms:
        source = term_regex(term)
        if source is None:
            raise ValueError(f"bad term {term!r}: {TERM_SYNTAX}")
        sources.add(source)
    # Longest first, so that the alternation prefers the most specific term.
    alternation = "|".join(sorted(sources, key=len, reverse=True))
    return re.compile(rf"(?<!\S)(?:{alternation})(?!\S)")
