"""The optional pass-2 task: synthesized assessment targets from SkinCAP + the knowledge
base, mixed into training at a ratio, so tuning pass 1 does not untrain pass 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kb_builder import starter_kb_dir
from skinspector.core.case_schema import Action
from skinspector.core.prompt import SYSTEM_PROMPT, parse_assessment
from training.assessment_targets import AssessmentTargets, read_kb_condition


def test_every_starter_entry_gives_a_condition_with_red_flags() -> None:
    entries = sorted(starter_kb_dir().glob("*.md"))
    conditions = [read_kb_condition(path) for path in entries]
    assert len(entries) == 47
    assert all(c is not None and c.red_flags for c in conditions)
    urgent = sorted(c.title for c in conditions if c and c.referral is Action.URGENT_REFERRAL)
    assert urgent == ["Melanoma", "Pemphigus vulgaris"]  # "every/all suspected" cases


@pytest.mark.parametrize(
    ("label", "action"),
    [
        ("melanoma", Action.URGENT_REFERRAL),
        ("psoriasis", Action.ROUTINE_REFERRAL),
        ("basal cell carcinoma", Action.ROUTINE_REFERRAL),
        ("lupus erythematosus", Action.ROUTINE_REFERRAL),  # resolved by containment
    ],
)
def test_a_synthesized_target_is_a_complete_assessment(label: str, action: Action) -> None:
    text = AssessmentTargets().target("A pink scaly plaque on the elbow.", label)
    assert text is not None
    parsed = parse_assessment(text)
    assert parsed.complete
    assert parsed.action is action
    assert parsed.action_from_model
    assert parsed.findings == ["A pink scaly plaque on the elbow."]
    assert parsed.red_flags
    assert parsed.likely_conditions[0].likelihood == "moderate"


def test_a_label_outside_the_knowledge_base_gets_no_target() -> None:
    targets = AssessmentTargets()
    assert targets.target("A plaque.", "made-up dermatosis") is None
    assert targets.target("A plaque.", None) is None


@pytest.mark.slow
def test_mixed_training_learns_the_synthesized_targets_and_pass_2_still_parses(
    tiny_model, dataset: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Train with half the examples on the assessment task; the run records both prompts
    and the synthesized-target note, and the server's pass 2 parses at least as often
    after training as before (measured on the eval images)."""
    import torch
    from peft import PeftModel
    from transformers import Qwen2_5_VLForConditionalGeneration

    from tests.training.conftest import OVERRIDES
    from training.config import load_config
    from training.data import Split, load_skincap, select
    from training.trainer import train
    from training.vlm import generate_hf, load_image, load_processor, render_prompt

    config = load_config(
        None,
        [
            *OVERRIDES,
            "max_steps=12",
            "eval.every=12",
            "tasks.assessment_ratio=0.5",
            f"base_model={json.dumps(str(tiny_model.hf_dir))}",
        ],
    )
    result = train(config, dataset, tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert set(record["prompts"]) == {"findings", "assessment"}
    assert "pending clinical review" in record["synthesized_targets"]

    small = {"min_pixels": config.data.min_pixels, "max_pixels": config.data.max_pixels}
    processor = load_processor(tiny_model.hf_dir, **small)
    prompt = render_prompt(processor.tokenizer, prompt="assessment")
    assert SYSTEM_PROMPT in prompt
    split = Split.read(Path(record["split_file"]))
    examples, _ = load_skincap(dataset)
    images = [load_image(e.image, **small) for e in select(examples, split.eval)]

    def complete_rate(model) -> float:  # type: ignore[no-untyped-def]
        answers = [
            generate_hf(model, processor, prompt, image, seed=42 + i, max_new_tokens=48)
            for i, image in enumerate(images)
        ]
        return sum(parse_assessment(a).complete for a in answers) / len(answers)

    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        tiny_model.hf_dir, dtype=torch.float32
    ).eval()
    before = complete_rate(base)
    tuned = PeftModel.from_pretrained(base, str(result.checkpoints[-1])).eval()
    after = complete_rate(tuned)
    print(f"pass-2 complete rate on {len(images)} eval images: before {before}, after {after}")
    assert after >= before
