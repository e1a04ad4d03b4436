"""Diagnosis match: does a generated caption name the reference disease or a synonym of it?

The synonym table comes from the knowledge base's Markdown entries: the title (``# Name``,
plus alternative names in its parentheses, e.g. ``# Atopic dermatitis (eczema)``) and the
``## Synonyms and lay terms`` section, whose lines list comma/semicolon-separated names
after a language prefix (``- English: ...``, ``- Bahasa Indonesia: ...``).

What counts as a name (kept deliberately conservative, since a false "match" flatters the
model):

- quoted phrases are lay *descriptions* ("silvery scaly patches"), not names: dropped;
- only the first sentence of a line is read (later sentences are notes);
- ``X (Y)``: ``X`` without the parentheses is a name; ``Y`` is one too when it is an
  abbreviation (``BCC``) or a short alternative name (``eczema``), not a remark
  (``e.g. ...``, ``older term``, ``with sarcoidosis``);
- single generic words that describe rather than name (``nodular``, ``spots``...) and
  names listed under two different entries (``cacar api``) are dropped.

A SkinCAP label (lower case, e.g. ``"basal cell carcinoma"``) is resolved to KB entries by
exact name (title first, then synonyms), then by containment in exactly one entry's names
(``"lupus erythematosus"`` -> the cutaneous lupus entry). The label itself always counts.

Matching is case-insensitive on word boundaries, with any run of spaces or hyphens between
words (``basal-cell carcinoma`` = ``basal cell carcinoma``); abbreviations of up to five
characters written in capitals in the KB (``BCC``, ``AK``, ``PR``) match only in capitals,
since their lower-case forms are ordinary words in English or Indonesian.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kb_builder import starter_kb_dir
from skinspector.core.resources import resource_path

__all__ = [
    "STARTER_KB",
    "DiagnosisMatcher",
    "SynonymEntry",
    "load_label_synonyms",
    "load_synonym_entries",
    "negated",
    "parse_kb_entry",
]

STARTER_KB = starter_kb_dir()

#: Qualifiers, findings and everyday words that some synonym lists carry but that do not
#: name a disease (compared case-insensitively).
GENERIC_TERMS = frozenset(
    {
        "acrofacial", "allergic reaction", "bites", "borderline", "brown spot", "cacar",
        "cholinergic", "cold", "crusted", "deep", "depigmentation", "diaper", "discoid",
        "epidemic", "face", "flexural", "generalised", "gum", "hand", "hypopigmented",
        "infeksi kulit", "junctional", "mixed", "morbilliform", "nodular", "norwegian",
        "pigmented", "spots", "subacute", "superficial", "the itch", "tinea", "tuberculoid",
        "zits", "wheals", "weals", "black dot", "grey patch",
    }
)  # fmt: skip
#: Parenthesised remarks (not names) start with one of these words.
_REMARK_START = re.compile(
    r"^(e\.g\.|i\.e\.|with|when|older|used|often|sering|pointer|the|a|an|of|in|on|at|see)\b",
    re.IGNORECASE,
)
#: Abbreviations: one token with at least two capitals (``BCC``, ``PsA``, ``HSV-1``).
_ABBREVIATION = re.compile(r"^(?=(?:[^A-Z]*[A-Z]){2})[A-Za-z0-9/-]{2,8}$")
_LANGUAGE_PREFIX = re.compile(r"^\s*-\s*(?:[A-Za-z ]{2,30}):\s*")
_SENTENCE_END = re.compile(r"\.\s+(?=[A-Z])")
_QUOTED = re.compile(r"[\"\u201c\u201d]")
#: Between the words of a name: spaces, hyphen-minus, hyphen, en dash.
_SEPARATORS = r"[\s\-\u2010\u2013]+"


@dataclass(frozen=True, slots=True)
class SynonymEntry:
    """One knowledge-base entry: its title name and every name it lists."""

    title: str
    names: tuple[str, ...]
    title_names: tuple[str, ...] = ()
    source: str = ""


def _split_top_level(text: str, separators: str = ",;") -> list[str]:
    """Split on ``separators`` outside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        if char in separators and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _clean(name: str) -> str:
    name = re.sub(r"^(?:lay|e\.g\.)\s*:?\s*", "", name.strip(), flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", name).strip(" .:-")


def _names_in_item(item: str, *, title: bool = False) -> list[str]:
    """Names in one list item such as ``psoriatic arthritis (PsA)``.

    In a title, a one-word alternative in parentheses is a name (``(eczema)``); in a
    list it is usually a qualifier (``crusted (Norwegian) scabies``) unless it is an
    abbreviation.
    """
    if _QUOTED.search(item):
        return []
    outer = _clean(re.sub(r"\([^()]*\)", " ", item))
    names = [outer] if outer else []
    for group in re.findall(r"\(([^()]*)\)", item):
        for part in _split_top_level(group):
            if _REMARK_START.match(part.strip()):
                continue
            for alt in (_clean(piece) for piece in part.split("/")):
                if not alt:
                    continue
                words = len(alt.split())
                if _ABBREVIATION.match(alt) or 2 <= words <= 4 or (title and words == 1):
                    names.append(alt)
    return names


def parse_kb_entry(markdown: str, source: str = "") -> SynonymEntry | None:
    """The title and names of one KB Markdown entry (``None`` without a ``# Title``).

    The title's parts count as names too: ``# Keloid and hypertrophic scar`` names
    ``keloid`` and ``hypertrophic scar``.
    """
    title_match = re.search(r"^#\s+(.+?)\s*$", markdown, re.MULTILINE)
    if title_match is None:
        return None
    title_line = title_match.group(1)
    title = _clean(re.sub(r"\([^()]*\)", " ", title_line))
    title_names = [title, *_names_in_item(title_line, title=True)]
    title_names += [part for part in re.split(r",\s*|\s+and\s+", title) if part and part != title]
    names: list[str] = []
    section = re.search(
        r"^##\s+Synonyms[^\n]*\n(.*?)(?=^##\s|\Z)", markdown, re.MULTILINE | re.DOTALL
    )
    if section is not None:
        for line in section.group(1).splitlines():
            if not line.strip().startswith("-"):
                continue
            body = _LANGUAGE_PREFIX.sub("", line, count=1)
            body = _SENTENCE_END.split(body, maxsplit=1)[0]
            for item in _split_top_level(body):
                names.extend(_names_in_item(item))
    return SynonymEntry(
        title=title,
        names=_unique([*title_names, *names]),
        title_names=_unique(title_names),
        source=source,
    )


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for name in names:
        key = _key(name)
        if key and key not in seen and len(key) >= 2:
            seen[key] = name
    return tuple(seen.values())


def _key(name: str) -> str:
    """Case- and separator-insensitive form used to compare names."""
    return re.sub(_SEPARATORS, " ", name.casefold()).strip()


def load_synonym_entries(kb_dir: Path = STARTER_KB) -> list[SynonymEntry]:
    """Every entry of the KB folder's ``*.md`` files, generic and shared names removed."""
    entries = []
    for path in sorted(kb_dir.glob("*.md")):
        entry = parse_kb_entry(path.read_text(encoding="utf-8"), source=path.name)
        if entry is not None:
            entries.append(entry)
    owners: dict[str, set[int]] = {}
    for index, entry in enumerate(entries):
        for name in entry.names:
            owners.setdefault(_key(name), set()).add(index)
    cleaned = []
    for index, entry in enumerate(entries):
        own = {_key(name) for name in entry.title_names}
        kept = tuple(
            name
            for name in entry.names
            if _key(name) == _key(entry.title)
            or (
                _key(name) not in GENERIC_TERMS
                and (_key(name) in own or owners[_key(name)] == {index})
            )
        )
        cleaned.append(SynonymEntry(entry.title, kept, entry.title_names, entry.source))
    return cleaned


def _pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of ``names`` on word boundaries."""
    folded: list[str] = []
    exact: list[str] = []
    for name in sorted(set(names), key=len, reverse=True):
        words = [re.escape(word) for word in re.split(_SEPARATORS, name.strip()) if word]
        if not words:
            continue
        body = _SEPARATORS.join(words)
        (exact if _ABBREVIATION.match(name) else folded).append(body)
    parts = []
    if folded:
        parts.append(r"(?i:" + "|".join(folded) + ")")
    if exact:
        parts.append("|".join(exact))
    if not parts:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(parts) + r")(?!\w)")


#: Words that, shortly before a mention in the same clause, deny it ("not consistent with
#: melanoma", "no signs of scabies", "rules out impetigo", "bukan kusta").
_NEGATION = re.compile(
    r"\b(?:not|no|without|unlikely|excluded?|excluding|rules?\s+out|ruled\s+out|"
    r"negative\s+for|tidak|bukan|tanpa)\b[^.;:!?\n]{0,40}$",
    re.IGNORECASE,
)
_CLAUSE_BREAK = re.compile(r"[.;:!?\n]|\b(?:but|however|rather|instead|tetapi|namun)\b", re.I)
_CONDITIONS_HEADING = re.compile(
    r"^\s*#{1,6}\s*(?:most likely conditions|likely conditions|kemungkinan diagnosis|"
    r"kemungkinan kondisi)\s*:?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_NEXT_HEADING = re.compile(r"^\s*#{1,6}\s", re.MULTILINE)
_ITEM = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*(?P<item>.+?)\s*$", re.MULTILINE)
#: Names for dataset labels the knowledge base lacks: data, not code.
LABEL_SYNONYMS = resource_path("training", "tables", "label_synonyms.json")


def negated(text: str, start: int) -> bool:
    """Whether the mention at ``start`` is denied by a negation earlier in its clause."""
    before = text[max(0, start - 60) : start]
    breaks = list(_CLAUSE_BREAK.finditer(before))
    if breaks:
        before = before[breaks[-1].end() :]
    return _NEGATION.search(before) is not None


def _conditions_section(text: str) -> list[str]:
    heading = _CONDITIONS_HEADING.search(text)
    if heading is None:
        return []
    rest = text[heading.end() :]
    following = _NEXT_HEADING.search(rest)
    body = rest[: following.start()] if following else rest
    return [m.group("item") for m in _ITEM.finditer(body)]


def load_label_synonyms(path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """The label synonym table (lower-case label -> names); keys starting with ``_`` are
    comments."""
    import json

    source = path or LABEL_SYNONYMS
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"label synonym table {source} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"label synonym table {source} must be a JSON object")
    table = {}
    for label, names in data.items():
        if label.startswith("_"):
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{source}: {label!r} must map to a list of names")
        table[_key(label)] = tuple(names)
    return table


@dataclass
class DiagnosisMatcher:
    """Resolves disease labels to names and tells whether a text names them.

    ``extra`` adds names per label (lower-case label -> names), e.g. for labels the KB
    lacks. Patterns are compiled once per label.
    """

    entries: Sequence[SynonymEntry]
    extra: Mapping[str, Sequence[str]] = field(default_factory=dict)
    _cache: dict[str, re.Pattern[str] | None] = field(default_factory=dict, repr=False)

    @classmethod
    def from_kb(
        cls, kb_dir: Path | None = None, extra: Mapping[str, Sequence[str]] | None = None
    ) -> DiagnosisMatcher:
        names = dict(load_label_synonyms())
        names.update({_key(label): tuple(values) for label, values in (extra or {}).items()})
        return cls(load_synonym_entries(kb_dir or STARTER_KB), names)

    def entries_for(self, label: str) -> list[SynonymEntry]:
        """The KB entries ``label`` resolves to: by title name, then by any listed name,
        then by containment in exactly one entry's names."""
        key = _key(label)
        matched = [e for e in self.entries if key in {_key(n) for n in e.title_names}]
        if not matched:
            matched = [e for e in self.entries if key in {_key(n) for n in e.names}]
        if not matched:
            word = re.compile(r"(?<!\w)" + re.escape(key) + r"(?!\w)")
            containing = [e for e in self.entries if any(word.search(_key(n)) for n in e.names)]
            matched = containing if len(containing) == 1 else []
        return matched

    def names_for(self, label: str) -> tuple[str, ...]:
        """The label, its extra names, and the names of the KB entries it resolves to."""
        key = _key(label)
        names = [label.strip(), *self.extra.get(key, ()), *self.extra.get(label, ())]
        for entry in self.entries_for(label):
            names.extend(entry.names)
        return _unique(names)

    def _label_pattern(self, label: str) -> re.Pattern[str] | None:
        key = _key(label)
        if key not in self._cache:
            self._cache[key] = _pattern(self.names_for(label))
        return self._cache[key]

    def mentions(self, text: str, label: str) -> list[int]:
        """Start offsets of the non-negated mentions of ``label`` (or a synonym) in ``text``."""
        pattern = self._label_pattern(label)
        if pattern is None:
            return []
        return [m.start() for m in pattern.finditer(text) if not negated(text, m.start())]

    def matches(self, text: str, label: str) -> bool:
        """Whether ``text`` names ``label`` or one of its synonyms, not negated ("in the
        differential")."""
        return bool(self.mentions(text, label))

    def top1(self, text: str, label: str) -> bool:
        """Whether the stated primary diagnosis is ``label`` (or a synonym): the first item
        of a ``Most likely conditions`` section when the text has one; otherwise the label
        must be named (not negated) before any other knowledge-base condition is."""
        conditions = _conditions_section(text)
        if conditions:
            return self.matches(conditions[0], label)
        own = self.mentions(text, label)
        if not own:
            return False
        first = min(own)
        mine = {entry.title for entry in self.entries_for(label)}
        for entry in self.entries:
            if entry.title in mine:
                continue
            other = self.mentions(text, entry.title)
            if other and min(other) < first:
                return False
        return True
