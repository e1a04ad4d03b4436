"""The model card: required sections, the intended-use line, SkinCAP's licence."""

from __future__ import annotations

import pytest

from updates.card import CARD_TEMPLATE, parse_card
from updates.errors import BundleInputError


def test_template_parses_and_carries_the_skincap_licence() -> None:
    card = parse_card(CARD_TEMPLATE)
    assert card.intended_use.startswith("Decision support for trained health workers")
    assert "CC BY-NC-SA 4.0" in card.data_licence
    assert "research" in card.data_licence
    assert "SkinCAP" in card.training_data
    assert card.base_model.startswith("Qwen/Qwen2.5-VL-7B-Instruct")


def test_missing_sections_are_named() -> None:
    text = "# Card\n\n## Base model\nQwen\n\n## Intended use\nResearch only.\n"
    with pytest.raises(BundleInputError, match="Training data, Licence, Evaluation"):
        parse_card(text)


def test_skincap_without_its_licence_is_refused() -> None:
    text = CARD_TEMPLATE.replace("CC BY-NC-SA 4.0", "MIT")
    with pytest.raises(BundleInputError, match="SkinCAP"):
        parse_card(text)


def test_intended_use_is_the_first_line_and_must_be_short() -> None:
    text = CARD_TEMPLATE.replace(
        "Decision support for trained health workers; not a diagnosis; research use only.",
        "- " + "x" * 400,
    )
    with pytest.raises(BundleInputError, match="one line"):
        parse_card(text)
    text = CARD_TEMPLATE.replace(
        "Decision support for trained health workers; not a diagnosis; research use only.",
        "* Research use by trained staff.",
    )
    assert parse_card(text).intended_use == "Research use by trained staff."


def test_headings_are_case_insensitive_and_license_spelling_is_accepted() -> None:
    text = (
        "## BASE MODEL\nQwen\n## Training Data\nOwn photos\n## License\nCC BY 4.0\n"
        "## Evaluation results\nROUGE-L 0.3\n## Intended use\nTesting.\n"
    )
    card = parse_card(text)
    assert card.data_licence == "CC BY 4.0"
    assert card.evaluation == "ROUGE-L 0.3"


def test_duplicate_section_is_refused() -> None:
    with pytest.raises(BundleInputError, match="two 'Evaluation'"):
        parse_card(CARD_TEMPLATE + "\n## Evaluation\nagain\n")
