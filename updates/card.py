"""The model card: a Markdown file the maintainer writes, read into ``ModelCard``.

Required sections (``##`` headings, any order, case-insensitive): *Base model*, *Training
data*, *Licence* (or *License*, *Data licence*), *Evaluation* (or *Evaluation results*) and
*Intended use*. The first line of *Intended use* is the one line the phone app and the
review UI show next to every answer, so it must stand on its own.

SkinCAP is licensed CC BY-NC-SA 4.0 for research use: a card whose training data names
SkinCAP must carry that licence, or the bundle is not built.
"""

from __future__ import annotations

import re

from skinspector.core.bundle_manifest import ModelCard
from updates.errors import BundleInputError

__all__ = ["CARD_TEMPLATE", "parse_card"]

_HEADING = re.compile(r"^##\s+(.+?)\s*#*\s*$")
_SECTIONS = {
    "base model": "base_model",
    "training data": "training_data",
    "licence": "data_licence",
    "license": "data_licence",
    "data licence": "data_licence",
    "data license": "data_licence",
    "evaluation": "evaluation",
    "evaluation results": "evaluation",
    "intended use": "intended_use",
}
_REQUIRED = ("base_model", "training_data", "data_licence", "evaluation", "intended_use")
_TITLES = {
    "base_model": "Base model",
    "training_data": "Training data",
    "data_licence": "Licence",
    "evaluation": "Evaluation",
    "intended_use": "Intended use",
}
_SKINCAP_LICENCE = "cc by-nc-sa 4.0"
MAX_INTENDED_USE = 300

CARD_TEMPLATE = """\
# Model card: SKINspectoR bundle X.Y.Z

## Intended use
Decision support for trained health workers; not a diagnosis; research use only.

More detail: who may use it, for which patients, what it must not be used for.

## Base model
Qwen/Qwen2.5-VL-7B-Instruct, fine-tuned with DoRA (r=16, alpha=8), exported to GGUF
(language model Q4_K_M, vision projector F16).

## Training data
SkinCAP: 4,000 dermatology images with expert captions (80/20 split, seed 42).

## Licence
SkinCAP is licensed CC BY-NC-SA 4.0 (attribution, non-commercial, share-alike) for research
use: this bundle inherits those terms and must not be used commercially.

## Evaluation
Caption metrics on the held-out split (ROUGE-L, BLEU, METEOR, BERTScore) and the
dermatologist review summary; retrieval recall@5 and MRR of the knowledge base.
"""


def _clean(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines()).strip()


def parse_card(text: str) -> ModelCard:
    """Read the required sections; refuse a card that lacks one or misstates SkinCAP."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            current = _SECTIONS.get(heading[1].strip().lower().rstrip(":"))
            if current is not None and current in sections:
                raise BundleInputError(f"the model card has two '{_TITLES[current]}' sections")
            if current is not None:
                sections[current] = []
            continue
        if line.startswith("# "):
            current = None
            continue
        if current is not None:
            sections[current].append(line)
    values = {key: _clean("\n".join(lines)) for key, lines in sections.items()}
    missing = [_TITLES[key] for key in _REQUIRED if not values.get(key)]
    if missing:
        raise BundleInputError(
            "the model card lacks these sections (## headings): " + ", ".join(missing)
        )
    first = values["intended_use"].splitlines()[0].strip().lstrip("-*").strip()
    if not first or len(first) > MAX_INTENDED_USE:
        raise BundleInputError(
            f"the first line of 'Intended use' must be one line of 1-{MAX_INTENDED_USE} "
            "characters (the phone and review UIs show it)"
        )
    if "skincap" in values["training_data"].lower():
        licence = " ".join(values["data_licence"].lower().split())
        if _SKINCAP_LICENCE not in licence:
            raise BundleInputError(
                "the training data names SkinCAP, which is licensed CC BY-NC-SA 4.0 for "
                "research use: the card's Licence section must say 'CC BY-NC-SA 4.0'"
            )
    return ModelCard(
        base_model=values["base_model"],
        training_data=values["training_data"],
        data_licence=values["data_licence"],
        evaluation=values["evaluation"],
        intended_use=first,
    )
