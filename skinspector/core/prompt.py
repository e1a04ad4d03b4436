"""The one prompt of the project: inference, training and evaluation all import it.

The seed project's prompts drifted apart between training, evaluation and inference; here
they cannot: ``SYSTEM_PROMPT`` and ``render_user_text`` are the only source of both turns,
and ``parse_assessment`` reads back the output structure the system prompt asks for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skinspector.core.case_schema import (
    Action,
    Assessment,
    ClinicalContext,
    Language,
    LikelyCondition,
)

__all__ = [
    "DISCLAIMERS",
    "FINDINGS_PROMPT_VERSION",
    "FINDINGS_SYSTEM_PROMPT",
    "PROMPTS",
    "PROMPT_VERSION",
    "SECTION_HEADINGS",
    "SYSTEM_PROMPT",
    "PromptSpec",
    "Reference",
    "build_findings_messages",
    "build_messages",
    "cited_references",
    "neutralise_special_tokens",
    "parse_assessment",
    "prompt_messages",
    "prompt_mismatches",
    "prompt_spec",
    "render_user_text",
]

#: The version of the pass-2 assessment prompt (SYSTEM_PROMPT, the user turn, references).
#: Bump when its text changes: training records it, evaluation checks it.
PROMPT_VERSION = "2026-11-28.2"
#: The version of the pass-1 findings prompt (FINDINGS_SYSTEM_PROMPT and its user turn).
FINDINGS_PROMPT_VERSION = "2026-12-02.1"

SECTION_HEADINGS: tuple[str, ...] = (
    "Visible findings",
    "Most likely conditions",
    "Red flags",
    "Recommended action",
    "Disclaimer",
)

DISCLAIMERS: dict[Language, str] = {
    Language.EN: (
        "This is decision support, not a diagnosis. A qualified clinician must examine the "
        "patient; when in doubt, refer."
    ),
    Language.ID: (
        "Ini adalah alat bantu keputusan, bukan diagnosis. Pasien harus diperiksa oleh tenaga "
        "kesehatan yang berwenang; jika ragu, rujuk."
    ),
}

SYSTEM_PROMPT = """\
You are SKINspectoR, a cautious dermatology assistant supporting health workers in remote \
primary-care clinics. You look at one photo of a skin problem, with any clinical context \
given, and describe what you see before you suggest what it might be.

Rules:
- Describe only what is visible: lesion type, colour, shape, border, surface, size if \
judgeable, distribution and body site.
- Give at most three likely conditions, each with your uncertainty (low, moderate or high \
likelihood). Never state a diagnosis as certain.
- Name any red flags (for example: rapid change, bleeding or ulceration, irregular \
pigmentation, blistering with mucosal involvement, fever or a very unwell patient, spreading \
redness, a lesion on the face of an infant). Write "None seen" if there are none.
- Choose exactly one recommended action: self-care, routine referral, or urgent referral. \
When unsure, or when the photo is unclear, choose the safer, more urgent action.
- Use reference notes only when they fit what you see; they may be incomplete. When you \
use one, cite it by its number in square brackets, e.g. [2].
- If the photo does not show skin or is too blurred or dark to judge, say so in the \
findings and recommend routine referral.

Answer with exactly these five sections, headings in English as written, content in the \
language asked for:
## Visible findings
## Most likely conditions
## Red flags
## Recommended action
## Disclaimer"""


#: Pass 1 of the two-pass analysis: what is visible, nothing else. Its answer (plus the
#: health worker's notes) becomes the retrieval query for pass 2.
FINDINGS_SYSTEM_PROMPT = """\
You are SKINspectoR, a dermatology assistant. Describe only what is visible in the photo \
in one to three short sentences of plain clinical English: lesion type, colour, shape, \
border, surface, distribution and body site. Do not name a diagnosis. If the photo does not \
show skin or is unclear, say so."""


@dataclass(frozen=True, slots=True)
class Reference:
    """One retrieved knowledge-base passage offered to the model."""

    title: str
    text: str
    source: str | None = None


_LANGUAGE_NAMES = {Language.EN: "English", Language.ID: "Bahasa Indonesia"}

#: Qwen's control tokens are written ``<|name|>`` (``<|im_start|>``, ``<|im_end|>``,
#: ``<|endoftext|>``, ``<|vision_start|>``, ``<|image_pad|>`` ...), plus a few tag-like
#: added tokens. Tokenizers (Hugging Face and llama.cpp alike) match them as literal strings
#: anywhere in the text, so user text containing one becomes a real control token.
_TAG_TOKENS = re.compile(r"<(/?)(tool_call|tool_response|think|tools)>", re.IGNORECASE)


def neutralise_special_tokens(text: str) -> str:
    """User-supplied text made safe to template: every ``<|`` / ``|>`` and every tag-like
    added token gets full-width angle brackets (``＜|im_end|＞``), which read the same to
    a person but never match a control token. Apply to every field a user typed (clinical
    notes, symptoms, body site, the chat endpoint's text parts) before templating."""
    text = text.replace("<|", "\uff1c|").replace("|>", "|\uff1e")
    return _TAG_TOKENS.sub(lambda m: f"\uff1c{m.group(1)}{m.group(2)}\uff1e", text)


def _context_lines(context: ClinicalContext) -> list[str]:
    safe = neutralise_special_tokens
    lines = []
    if context.age_years is not None:
        lines.append(f"- Age: {context.age_years} years")
    if context.sex is not None:
        lines.append(f"- Sex: {context.sex.value}")
    if context.body_site:
        lines.append(f"- Body site: {safe(context.body_site)}")
    if context.duration:
        lines.append(f"- Duration: {safe(context.duration)}")
    if context.symptoms:
        lines.append(f"- Symptoms: {safe(', '.join(context.symptoms))}")
    if context.notes:
        lines.append(f"- Notes from the health worker: {safe(context.notes)}")
    return lines


def render_user_text(
    context: ClinicalContext | None = None, references: Sequence[Reference] = ()
) -> str:
    """The text of the user turn that follows the image."""
    context = context or ClinicalContext()
    parts = ["Assess the skin problem in this photo."]
    lines = _context_lines(context)
    if lines:
        parts.append("Clinical context:\n" + "\n".join(lines))
    if references:
        notes = []
        for number, ref in enumerate(references, start=1):
            title, body = neutralise_special_tokens(ref.title), ref.text.strip()
            notes.append(f"[{number}] {title}\n{neutralise_special_tokens(body)}")
        parts.append("Reference notes (from the clinic knowledge base):\n" + "\n\n".join(notes))
    parts.append(f"Answer in {_LANGUAGE_NAMES[context.language]}.")
    return "\n\n".join(parts)


def _image_parts(image_urls: str | Sequence[str]) -> list[dict[str, Any]]:
    urls = [image_urls] if isinstance(image_urls, str) else list(image_urls)
    return [{"type": "image_url", "image_url": {"url": url}} for url in urls]


def build_messages(
    image_urls: str | Sequence[str],
    context: ClinicalContext | None = None,
    references: Sequence[Reference] = (),
) -> list[dict[str, Any]]:
    """OpenAI-style chat messages: system turn, then the image(s) and the user text."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": [
                *_image_parts(image_urls),
                {"type": "text", "text": render_user_text(context, references)},
            ],
        },
    ]


def build_findings_messages(
    image_urls: str | Sequence[str], context: ClinicalContext | None = None
) -> list[dict[str, Any]]:
    """Pass 1: ask for the visible findings only (body site given when known)."""
    text = "Describe the visible findings."
    if context is not None and context.body_site:
        text += f" Body site: {neutralise_special_tokens(context.body_site)}."
    return [
        {"role": "system", "content": FINDINGS_SYSTEM_PROMPT},
        {"role": "user", "content": [*_image_parts(image_urls), {"type": "text", "text": text}]},
    ]


_CITATION_RE = re.compile(r"\[(\d{1,2})\]")


def cited_references(text: str, count: int) -> list[int]:
    """1-based numbers of the reference notes the answer cites, in order of first use."""
    seen: list[int] = []
    for match in _CITATION_RE.finditer(text):
        number = int(match.group(1))
        if 1 <= number <= count and number not in seen:
            seen.append(number)
    return seen


# ---------------------------------------------------------------- parsing the answer

_HEADING_ALIASES: dict[str, str] = {
    "visible findings": "findings",
    "findings": "findings",
    "temuan": "findings",
    "temuan yang terlihat": "findings",
    "most likely conditions": "conditions",
    "likely conditions": "conditions",
    "kemungkinan diagnosis": "conditions",
    "kemungkinan kondisi": "conditions",
    "red flags": "red_flags",
    "tanda bahaya": "red_flags",
    "recommended action": "action",
    "tindakan yang disarankan": "action",
    "disclaimer": "disclaimer",
    "penafian": "disclaimer",
}
_HEADING_RE = re.compile(r"^\s*#{1,6}\s*(?P<title>[^\n#]+?)\s*:?\s*$", re.MULTILINE)
_BULLET_RE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")
_LIKELIHOOD_RE = re.compile(
    r"\(?\b(?P<level>low|moderate|medium|high|rendah|sedang|tinggi)\b(?:\s+likelihood)?\)?",
    re.IGNORECASE,
)
_NONE_RE = re.compile(r"^(none( seen)?|no red flags?|tidak ada\w*)\.?$", re.IGNORECASE)

_ACTION_PATTERNS: tuple[tuple[Action, re.Pattern[str]], ...] = (
    (Action.URGENT_REFERRAL, re.compile(r"\burgent|\bsegera\b|\bdarurat\b", re.IGNORECASE)),
    (Action.ROUTINE_REFERRAL, re.compile(r"\brefer|\brujuk", re.IGNORECASE)),
    (Action.SELF_CARE, re.compile(r"\bself[- ]care\b|\bperawatan mandiri\b", re.IGNORECASE)),
)


def _split_sections(text: str) -> dict[str, str]:
    sections: dict[str, str] = {}
    matches = list(_HEADING_RE.finditer(text))
    for index, match in enumerate(matches):
        key = _HEADING_ALIASES.get(match.group("title").strip().lower())
        if key is None or key in sections:
            continue
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        sections[key] = text[match.end() : end].strip()
    return sections


def _items(body: str) -> list[str]:
    items = []
    for line in body.splitlines():
        cleaned = _BULLET_RE.sub("", line).strip()
        if cleaned:
            items.append(cleaned)
    return items


def _condition(item: str) -> LikelyCondition:
    match = _LIKELIHOOD_RE.search(item)
    if match is None:
        return LikelyCondition(name=item)
    name = (item[: match.start()] + item[match.end() :]).strip(" -:,;()")
    return LikelyCondition(name=name or item, likelihood=match.group("level").lower())


def _action(body: str) -> Action | None:
    """The most urgent action the section names (a cautious reading of mixed answers)."""
    for action, pattern in _ACTION_PATTERNS:
        if pattern.search(body):
            return action
    return None


def parse_assessment(text: str, language: Language = Language.EN) -> Assessment:
    """Read the model's answer into an ``Assessment``.

    Missing sections give empty lists; a missing or unreadable action falls back to routine
    referral (``action_from_model=False``). The disclaimer is always ours, never the model's.
    """
    sections = _split_sections(text)
    action = _action(sections.get("action", ""))
    red_flags = [f for f in _items(sections.get("red_flags", "")) if not _NONE_RE.match(f)]
    return Assessment(
        findings=_items(sections.get("findings", "")),
        likely_conditions=[_condition(i) for i in _items(sections.get("conditions", ""))],
        red_flags=red_flags,
        action=action or Action.ROUTINE_REFERRAL,
        action_from_model=action is not None,
        disclaimer=DISCLAIMERS[language],
        raw_text=text,
        complete=all(key in sections for key in ("findings", "conditions", "red_flags", "action")),
    )


# ------------------------------------------------------------------------------ registry


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """One prompt the server sends, by name, with its version. Training, evaluation and the
    server's two passes all take prompts from :data:`PROMPTS`, so what a model is trained
    and scored on is what the clinic box asks it."""

    name: str
    version: str
    description: str


PROMPTS: dict[str, PromptSpec] = {
    "findings": PromptSpec(
        "findings",
        FINDINGS_PROMPT_VERSION,
        "pass 1: describe the visible findings (what SkinCAP's captions are); the answer "
        "becomes the retrieval query",
    ),
    "assessment": PromptSpec(
        "assessment",
        PROMPT_VERSION,
        "pass 2: the five-section assessment grounded in retrieved references",
    ),
}


def prompt_mismatches(trained: Mapping[str, str]) -> list[str]:
    """Each registered prompt the model was trained on at another version than the one
    sent now, described (an empty list when they all agree)."""
    return [
        f"{name} (trained on {version}, sent now {PROMPTS[name].version})"
        for name, version in sorted(trained.items())
        if name in PROMPTS and PROMPTS[name].version != version
    ]


def prompt_spec(name: str) -> PromptSpec:
    """The registered prompt ``name`` (``ValueError`` naming the known ones otherwise)."""
    try:
        return PROMPTS[name]
    except KeyError:
        raise ValueError(f"unknown prompt {name!r}; known: {', '.join(sorted(PROMPTS))}") from None


def prompt_messages(
    name: str,
    image_urls: str | Sequence[str],
    context: ClinicalContext | None = None,
    references: Sequence[Reference] = (),
) -> list[dict[str, Any]]:
    """The chat messages of the registered prompt ``name`` (the findings prompt takes no
    references)."""
    prompt_spec(name)
    if name == "findings":
        if references:
            raise ValueError("the findings prompt takes no references")
        return build_findings_messages(image_urls, context)
    return build_messages(image_urls, context, references)
