"""Caption metrics: values on small inputs worked out independently, bootstrap intervals,
the diagnosis-match synonym table, WordNet from Debian, evaluation folders and the paired
comparison of the quantization ablation."""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from training.bootstrap import bootstrap
from training.diagnosis import DiagnosisMatcher, load_synonym_entries, parse_kb_entry
from training.evaluation_errors import EvaluationInputError, WordNetUnavailableError
from training.metrics import (
    MetricConfig,
    MetricSuite,
    MetricTable,
    compare,
    compute_metrics,
    meteor_tokens,
    read_eval_dir,
    score_records,
)
from training.wordnet import (
    DEBIAN_WORDNET,
    INSTALL_HINT,
    lexnames_text,
    missing_wordnet_files,
)

WORDNET_MISSING = missing_wordnet_files(DEBIAN_WORDNET)
needs_wordnet = pytest.mark.skipif(
    bool(WORDNET_MISSING), reason=f"Debian's WordNet is not installed: {INSTALL_HINT}"
)


@pytest.fixture(scope="module")
def suite(cache_dir: Path) -> Iterator[MetricSuite]:
    """Every metric, BERTScore on the MiniLM weights; models load once for the module."""
    config = MetricConfig(cache_dir=cache_dir, meteor=not WORDNET_MISSING, n_boot=200)
    return MetricSuite(config)


@pytest.fixture(scope="module")
def fast(cache_dir: Path) -> MetricSuite:
    return MetricSuite(MetricConfig(cache_dir=cache_dir, bertscore=False, meteor=False))


def one(suite: MetricSuite, prediction: str, reference: str, disease: str | None = None):  # type: ignore[no-untyped-def]
    return suite.compute([prediction], [reference], [disease])


# ------------------------------------------------------------------------ ROUGE


def f_measure(overlap: int, predicted: int, reference: int) -> float:
    p, r = overlap / predicted, overlap / reference
    return 2 * p * r / (p + r) if p + r else 0.0


def ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
            )
    return table[-1][-1]


def test_rouge_from_overlaps(fast: MetricSuite) -> None:
    # No word here changes under Porter stemming, so overlaps are plain word overlaps.
    pred = ["the", "red", "plaque", "on", "the", "left", "elbow"]
    ref = ["a", "red", "scaly", "plaque", "on", "the", "elbow"]
    table = one(fast, " ".join(pred), " ".join(ref))
    for n, name in ((1, "rouge1"), (2, "rouge2")):
        overlap = sum((ngrams(pred, n) & ngrams(ref, n)).values())
        expected = f_measure(overlap, len(pred) - n + 1, len(ref) - n + 1)
        assert table[name].value == pytest.approx(expected)
    # unigrams red, plaque, on, the, elbow: 5 of 7 each; bigrams "plaque on", "on the": 2 of 6
    assert table["rouge1"].value == pytest.approx(5 / 7)
    assert table["rouge2"].value == pytest.approx(2 / 6)
    assert table["rougeL"].value == pytest.approx(f_measure(lcs(pred, ref), len(pred), len(ref)))


def test_rouge_uses_stemming(fast: MetricSuite) -> None:
    table = one(fast, "scaling plaques", "scaled plaque")
    assert table["rouge1"].value == pytest.approx(1.0)


def test_report_convention_rouge_does_not_stem(cache_dir: Path) -> None:
    report = MetricSuite(
        MetricConfig(cache_dir=cache_dir, convention="report", bertscore=False, meteor=False)
    )
    table = one(report, "scaling plaques", "scaled plaque")
    assert table["rouge1"].value == pytest.approx(0.0)  # no stem shared without stemming
    assert one(report, "red plaque", "red plaque")["rouge1"].value == pytest.approx(1.0)


def test_report_convention_meteor_tokens_keep_punctuation() -> None:
    from training.metrics import meteor_tokens, report_meteor_tokens

    text = "A well-defined, pink plaque. It is the patient's."
    assert report_meteor_tokens(text) == [
        "A", "well-defined", ",", "pink", "plaque", ".", "It", "is", "the", "patient", "'s", ".",
    ]  # fmt: skip
    assert meteor_tokens(text) == [
        "a", "well", "defined", "pink", "plaque", "it", "is", "the", "patient's",
    ]  # fmt: skip


def test_every_table_says_which_convention_it_uses(cache_dir: Path, tmp_path: Path) -> None:
    report = MetricConfig(cache_dir=cache_dir, convention="report", bertscore=False, meteor=False)
    assert (report.bertscore_model, report.bertscore_layers) == ("roberta-large", 17)
    table = MetricSuite(report).compute(["red plaque"], ["red scaly plaque"], [None])
    assert "report convention: ROUGE not stemmed" in table.render()
    rows = list(csv.reader(io.StringIO(table.to_csv())))
    assert rows[0][-1] == "convention"
    assert all(row[-1] == report.label() for row in rows[1:])
    assert report.label().endswith("BERTScore roberta-large layer 17")
    assert "project convention: ROUGE stemmed" in MetricConfig().label()


def test_compare_refuses_mixed_conventions(
    fast: MetricSuite, cache_dir: Path, tmp_path: Path
) -> None:
    preds, refs, labels = synthetic(12, seed=3)
    records = records_for(preds, refs, labels)
    score_records(records, suite=fast).write(tmp_path / "project", records, {"model": "a"})
    report = MetricSuite(
        MetricConfig(cache_dir=cache_dir, convention="report", bertscore=False, meteor=False)
    )
    score_records(records, suite=report).write(tmp_path / "report", records, {"model": "b"})
    with pytest.raises(EvaluationInputError, match="convention"):
        compare(tmp_path / "project", [tmp_path / "report"])


def test_an_unavailable_bertscore_model_is_a_clear_error(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without the model hub
    config = MetricConfig(cache_dir=cache_dir, convention="report", meteor=False)
    with pytest.raises(EvaluationInputError, match="--bertscore-model with a local copy"):
        MetricSuite(config).compute(["red plaque"], ["red plaque"], [None])


def test_rouge_corpus_value_is_the_mean_of_examples(fast: MetricSuite) -> None:
    table = fast.compute(
        ["red plaque", "blue sky"], ["red plaque", "green field"], None, progress=True
    )
    assert table["rouge1"].value == pytest.approx(0.5)
    assert table["rouge1"].n == 2


# ------------------------------------------------------------------------- BLEU


def test_bleu_brevity_penalty_and_precisions_from_lengths(fast: MetricSuite) -> None:
    pred = "a red scaly plaque on the elbow"  # 7 tokens
    ref = "a red scaly plaque on the extensor surface of the elbow"  # 11 tokens
    table = one(fast, pred, ref)
    c, r = 7, 11
    assert table["bleu_ratio"].value == pytest.approx(c / r)
    assert table["bleu_bp"].value == pytest.approx(math.exp(1 - r / c))
    p_tok, r_tok = pred.split(), ref.split()
    precisions = [
        sum((ngrams(p_tok, n) & ngrams(r_tok, n)).values()) / (len(p_tok) - n + 1)
        for n in range(1, 5)
    ]
    assert precisions == pytest.approx([7 / 7, 6 / 6, 4 / 5, 3 / 4])
    for n in range(4):
        assert table[f"bleu_p{n + 1}"].value == pytest.approx(precisions[n])
    geometric = math.exp(sum(math.log(p) for p in precisions) / 4)
    assert table["bleu"].value == pytest.approx(math.exp(1 - r / c) * geometric)


def test_bleu_is_corpus_level_not_a_mean_of_sentences(fast: MetricSuite) -> None:
    from sacrebleu.metrics.bleu import BLEU

    preds = ["the lesion is red and scaly", "a pearly nodule", "itchy papules on the wrists"]
    refs = ["the lesion is red and very scaly", "a pearly nodule with vessels", "papules"]
    table = fast.compute(preds, refs, None)
    corpus = BLEU().corpus_score(preds, [refs])
    assert table["bleu"].value == pytest.approx(corpus.score / 100)
    assert table["bleu_bp"].value == pytest.approx(corpus.bp)
    sentence_mean = (
        np.mean(
            [
                BLEU(effective_order=True).sentence_score(p, [r]).score
                for p, r in zip(preds, refs, strict=True)
            ]
        )
        / 100
    )
    assert table["bleu"].value != pytest.approx(sentence_mean, abs=1e-3)


# ----------------------------------------------------------------------- METEOR


def test_meteor_tokens() -> None:
    assert meteor_tokens("Well-defined, patient’s LESION (2 cm).")[2] == "patient’s"
    assert meteor_tokens("Well-defined, patient's LESION (2 cm).") == [
        "well",
        "defined",
        "patient's",
        "lesion",
        "2",
        "cm",
    ]


@needs_wordnet
def test_meteor_on_known_pairs(suite: MetricSuite) -> None:
    # METEOR = Fmean * (1 - 0.5 * (chunks / matches) ** 3), Fmean = 10PR / (R + 9P).
    # All four words match (crimson ~ red through WordNet), in one chunk: P = R = 1.
    table = one(suite, "A crimson, scaly plaque.", "a red scaly plaque")
    assert table["meteor"].value == pytest.approx(1 - 0.5 * (1 / 4) ** 3)
    # Six exact matches in two chunks ("on the mat" | "a cat sat"). (nltk aligns greedily,
    # so words used twice could split chunks further: these are all distinct.)
    table = one(suite, "On the mat a cat sat", "a cat sat on the mat")
    assert table["meteor"].value == pytest.approx(1 - 0.5 * (2 / 6) ** 3)
    # 2 of 3 hypothesis words match 2 of 4 reference words, one chunk.
    p, r = 2 / 3, 2 / 4
    fmean = 10 * p * r / (r + 9 * p)
    table = one(suite, "red plaque today", "red plaque with scale")
    assert table["meteor"].value == pytest.approx(fmean * (1 - 0.5 * (1 / 2) ** 3))


@needs_wordnet
def test_meteor_empty_prediction_scores_zero(suite: MetricSuite) -> None:
    assert one(suite, "", "a red plaque")["meteor"].value == 0.0


def test_meteor_without_wordnet_says_how_to_install(tmp_path: Path) -> None:
    suite = MetricSuite(MetricConfig(wordnet_dir=tmp_path, bertscore=False, cache_dir=tmp_path))
    with pytest.raises(WordNetUnavailableError) as caught:
        suite.compute(["a"], ["a"])
    message = str(caught.value)
    assert "wordnet-base" in message
    assert "wordnet-sense-index" in message
    assert "meteor=False" in message
    # Without METEOR nothing needs WordNet.
    ok = MetricSuite(MetricConfig(wordnet_dir=tmp_path, bertscore=False, meteor=False))
    assert "meteor" not in ok.compute(["a"], ["a"]).metrics


@pytest.mark.skipif(
    not Path("/usr/share/man/man5/lexnames.5WN.gz").is_file(), reason="lexnames(5WN) missing"
)
def test_generated_lexnames_match_debians_manual() -> None:
    import gzip

    with gzip.open("/usr/share/man/man5/lexnames.5WN.gz", "rt") as handle:
        manual = handle.read()
    rows = [line.split("\t")[:2] for line in manual.splitlines() if line[:2].isdigit()]
    expected = [f"{number}\t{name.strip()}" for number, name in rows]
    assert [line.rsplit("\t", 1)[0] for line in lexnames_text().splitlines()] == expected


@needs_wordnet
def test_wordnet_copy_is_built_once(suite: MetricSuite, cache_dir: Path) -> None:
    reader = suite.wordnet()
    assert reader.get_version() == "3.0"
    assert {lemma.name() for s in reader.synsets("red") for lemma in s.lemmas()} >= {"crimson"}
    from training.wordnet import wordnet_root

    root = wordnet_root(DEBIAN_WORDNET, cache_dir)
    assert (root / "lexnames").read_text() == lexnames_text()
    before = (root / "data.noun").stat().st_mtime_ns
    assert wordnet_root(DEBIAN_WORDNET, cache_dir) == root
    assert (root / "data.noun").stat().st_mtime_ns == before


# -------------------------------------------------------------------- BERTScore


def test_bertscore_with_minilm(suite: MetricSuite) -> None:
    same = "Well demarcated red plaque with silvery scale on the elbow."
    table = suite.compute(
        [same, "The cat sat on the mat.", "Red scaly plaque on the elbow."],
        [same, "Basal cell carcinoma with arborizing vessels.", same],
    )
    scores = table.examples
    assert scores is not None
    f1 = scores.values["bertscore_f1"]
    assert f1[0] == pytest.approx(1.0, abs=1e-4)
    assert f1[1] < f1[2] < f1[0]
    for name in ("bertscore_p", "bertscore_r", "bertscore_f1"):
        assert table[name].value == pytest.approx(float(np.mean(scores.values[name])))
    p, r = scores.values["bertscore_p"][2], scores.values["bertscore_r"][2]
    assert f1[2] == pytest.approx(2 * p * r / (p + r), rel=1e-5)


def test_bertscore_of_an_empty_prediction_is_zero(suite: MetricSuite) -> None:
    table = suite.compute(["", "red plaque"], ["red plaque", "red plaque"])
    assert table.examples is not None
    assert table.examples.values["bertscore_f1"][0] == 0.0
    assert table.examples.values["bertscore_f1"][1] == pytest.approx(1.0, abs=1e-4)


# -------------------------------------------------------------- diagnosis match


@pytest.fixture(scope="module")
def matcher() -> DiagnosisMatcher:
    return DiagnosisMatcher.from_kb()


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        ("Findings are consistent with plaque psoriasis.", "psoriasis", True),
        ("PSORIASIS VULGARIS", "psoriasis", True),
        ("psoriatic nail changes", "psoriasis", False),  # a word boundary, not a prefix
        ("likely a rodent ulcer", "basal cell carcinoma", True),  # KB synonym
        ("Basal-cell carcinoma suspected", "basal cell carcinoma", True),  # hyphen = space
        ("Likely BCC.", "basal cell carcinoma", True),  # abbreviation, in capitals
        ("looks like a bcc", "basal cell carcinoma", False),  # lower case is not the acronym
        ("a nodular lesion", "basal cell carcinoma", False),  # a qualifier, not a name
        ("discoid lupus on the cheek", "lupus erythematosus", True),  # label in one entry
        ("eczema of the flexures", "eczema", True),  # title alternative "(eczema)"
        ("atopic dermatitis", "eczema", True),
        ("the itch is worse at night", "scabies", False),  # generic phrase dropped
        ("mycosis fungoides, patch stage", "mycosis fungoides", True),  # not in the KB
        ("fungal infection", "mycosis fungoides", False),
        ("no diagnosis named", "psoriasis", False),
    ],
)
def test_diagnosis_match(matcher: DiagnosisMatcher, text: str, label: str, expected: bool) -> None:
    assert matcher.matches(text, label) is expected


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        ("Not consistent with melanoma; likely a benign naevus.", "melanoma", False),
        ("No signs of scabies.", "scabies", False),
        ("This rules out impetigo.", "impetigo", False),
        ("Bukan kusta.", "leprosy", False),
        ("Negative for psoriasis but typical of eczema.", "eczema", True),  # clause break
        ("Not infected, but consistent with psoriasis.", "psoriasis", True),  # negation ends
        ("Melanoma is unlikely; a seborrheic keratosis.", "melanoma", True),  # after: counts
    ],
)
def test_negated_mentions_do_not_count(
    matcher: DiagnosisMatcher, text: str, label: str, expected: bool
) -> None:
    assert matcher.matches(text, label) is expected


@pytest.mark.parametrize(
    ("text", "label", "top1", "anywhere"),
    [
        # Structured answer: the first item of the conditions section is the primary.
        ("## Most likely conditions\n- Psoriasis (high)\n- Eczema (low)\n## Red flags\n- none",
         "psoriasis", True, True),
        ("## Most likely conditions\n- Psoriasis (high)\n- Eczema (low)\n## Red flags\n- none",
         "eczema", False, True),
        # Caption: the first sentence naming a known condition.
        ("A red plaque. Consistent with impetigo. Differential: eczema.", "impetigo", True, True),
        ("A red plaque. Consistent with impetigo. Differential: eczema.", "eczema", False, True),
        # A negated first mention is not the primary.
        ("Not melanoma. Most likely a melanocytic nevus.", "melanocytic nevus", True, True),
        ("Not melanoma. Most likely a melanocytic nevus.", "melanoma", False, False),
        ("A pink patch on the cheek.", "rosacea", False, False),
    ],
)  # fmt: skip
def test_top1_and_in_the_differential(
    matcher: DiagnosisMatcher, text: str, label: str, top1: bool, anywhere: bool
) -> None:
    assert matcher.top1(text, label) is top1
    assert matcher.matches(text, label) is anywhere


def test_labels_outside_the_kb_come_from_the_data_table(tmp_path: Path) -> None:
    from training.diagnosis import load_label_synonyms

    table = load_label_synonyms()
    assert "cutaneous T-cell lymphoma" in table["mycosis fungoides"]
    matcher = DiagnosisMatcher.from_kb()
    assert matcher.matches("Plaques of cutaneous T-cell lymphoma.", "mycosis fungoides")
    broken = tmp_path / "synonyms.json"
    broken.write_text('{"sarcoidosis": "sarcoid"}')
    with pytest.raises(ValueError, match="must map to a list of names"):
        load_label_synonyms(broken)


def test_diagnosis_top1_is_reported_beside_the_differential(fast: MetricSuite) -> None:
    table = fast.compute(
        ["Likely eczema; psoriasis possible.", "Psoriasis.", "Not psoriasis."],
        ["r1", "r2", "r3"],
        ["psoriasis", "psoriasis", "psoriasis"],
    )
    assert table["diagnosis_top1"].value == pytest.approx(1 / 3)
    assert table["diagnosis_match"].value == pytest.approx(2 / 3)


def test_synonym_table_from_markdown() -> None:
    entry = parse_kb_entry(
        "> notice\n\n# Basal cell carcinoma (BCC)\n\n## Synonyms and lay terms\n"
        '- English: rodent ulcer; nodular, pigmented (sclerosing) BCC; "pearly bump".\n'
        "- Bahasa Indonesia: karsinoma sel basal (KSB), ulkus rodens. Note: not a mole.\n"
        "## Red flags\n- bleeding, growth\n"
    )
    assert entry is not None
    assert entry.title == "Basal cell carcinoma"
    assert set(entry.names) == {
        "Basal cell carcinoma",
        "BCC",
        "rodent ulcer",
        "nodular",
        "pigmented BCC",
        "karsinoma sel basal",
        "KSB",
        "ulkus rodens",
    }
    cleaned = {e.title: e for e in load_synonym_entries()}
    assert "nodular" not in cleaned["Basal cell carcinoma"].names  # generic, dropped
    assert "lupus vulgaris" in cleaned["Cutaneous tuberculosis"].names


def test_diagnosis_match_rate_counts_labelled_examples_only(fast: MetricSuite) -> None:
    table = fast.compute(
        ["psoriasis on the knees", "probably eczema", "a mole", "unclear"],
        ["r1", "r2", "r3", "r4"],
        ["psoriasis", "psoriasis", None, "melanoma"],
    )
    assert table["diagnosis_match"].value == pytest.approx(1 / 3)
    assert table["diagnosis_match"].n == 3
    assert "diagnosis_match" not in fast.compute(["a"], ["b"], [None]).metrics


# ---------------------------------------------------------------- intervals


def synthetic(n: int, seed: int = 0) -> tuple[list[str], list[str], list[str | None]]:
    rng = np.random.default_rng(seed)
    words = [
        "red",
        "scaly",
        "plaque",
        "nodule",
        "pearly",
        "erythematous",
        "papule",
        "crust",
        "ulcer",
        "silvery",
    ]
    diseases = ["psoriasis", "basal cell carcinoma", "impetigo", None]
    preds, refs, labels = [], [], []
    for _ in range(n):
        ref = list(rng.choice(words, size=8))
        pred = [w if rng.random() < 0.6 else str(rng.choice(words)) for w in ref]
        label = diseases[int(rng.integers(len(diseases)))]
        if label and rng.random() < 0.5:
            pred.append(label)
        refs.append(" ".join(ref))
        preds.append(" ".join(pred))
        labels.append(label)
    return preds, refs, labels


def test_intervals_bracket_the_value(suite: MetricSuite) -> None:
    table = suite.compute(*synthetic(40))
    assert set(table.metrics) >= {"rouge1", "bleu", "bleu_p4", "bertscore_f1"}
    for name, v in table.metrics.items():
        assert v.ci_low <= v.value <= v.ci_high, name
        if name != "bleu_bp" or v.value < 1:  # the penalty is exactly 1 for long outputs
            assert v.ci_low < v.ci_high, name  # 40 varied examples: a real spread


def test_identical_examples_give_zero_width_intervals(suite: MetricSuite) -> None:
    table = suite.compute(
        ["red scaly plaque on the elbow, psoriasis"] * 12,
        ["a red plaque with silvery scale on the elbow"] * 12,
        ["psoriasis"] * 12,
    )
    for name, v in table.metrics.items():
        assert v.ci_low == v.value == v.ci_high, name


def test_same_seed_same_intervals_other_seed_other_intervals(fast: MetricSuite) -> None:
    data = synthetic(30, seed=3)
    a = fast.compute(*data)
    b = compute_metrics(*data, config=fast.config)
    c = compute_metrics(*data, config=fast.config.model_copy(update={"seed": 7}))
    assert a.metrics == b.metrics
    assert any(a[n].ci_low != c[n].ci_low for n in a.metrics)
    assert all(a[n].value == c[n].value for n in a.metrics)


def test_percentile_bootstrap_of_a_mean_matches_the_normal_approximation() -> None:
    values = np.array([1.0] * 200 + [0.0] * 200)

    def mean(rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"mean": values[rows].mean(axis=1)}

    low, high = bootstrap(mean, 400, n_boot=4000, seed=1, confidence=0.95)["mean"]
    half_width = 1.96 * math.sqrt(0.25 / 400)  # 0.049
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.12)
    assert (low + high) / 2 == pytest.approx(0.5, abs=0.01)


def test_input_errors(fast: MetricSuite) -> None:
    with pytest.raises(EvaluationInputError, match="no examples"):
        fast.compute([], [])
    with pytest.raises(EvaluationInputError, match="2 predictions but 1 references"):
        fast.compute(["a", "b"], ["a"])


# ----------------------------------------------------------- table and files


def records_for(preds: list[str], refs: list[str], labels: list[str | None], prefix: str = "ex"):  # type: ignore[no-untyped-def]
    return [
        {
            "id": f"{prefix}{i}",
            "image": f"/data/{i}.png",
            "reference": ref,
            "disease": label,
            "prediction": pred,
            "seed": 42 + i,
            "step": None,
        }
        for i, (pred, ref, label) in enumerate(zip(preds, refs, labels, strict=True))
    ]


def test_table_json_csv_text_and_files(fast: MetricSuite, tmp_path: Path) -> None:
    preds, refs, labels = synthetic(10)
    records = records_for(preds, refs, labels)
    table = score_records(records, suite=fast)
    again = MetricTable.from_json(json.loads(json.dumps(table.to_json())))
    assert again.metrics == table.metrics
    assert again.config == table.config

    written = table.write(tmp_path / "eval", records, {"model": "f16", "split": "eval", "seed": 42})
    assert sorted(p.name for p in written) == [
        "metrics.csv",
        "metrics.json",
        "predictions.jsonl",
        "scores.jsonl",
    ]
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["model"] == "f16"
    assert saved["seed"] == 42
    assert saved["metrics"]["rouge1"]["value"] == pytest.approx(table["rouge1"].value)
    csv_rows = (tmp_path / "eval" / "metrics.csv").read_text().splitlines()
    assert csv_rows[0] == "metric,value,ci_low,ci_high,n,convention"
    assert len(csv_rows) == 1 + len(table.metrics)
    assert not list((tmp_path / "eval").glob(".*tmp"))

    folder = read_eval_dir(tmp_path / "eval")
    assert folder.records == records
    assert folder.table.metadata["model"] == "f16"
    assert folder.name == "f16"
    assert folder.table.examples is not None
    np.testing.assert_allclose(
        folder.table.examples.values["rouge1"],
        table.examples.values["rouge1"],  # type: ignore[union-attr]
    )

    text = table.render()
    assert "ROUGE-1" in text
    assert "BLEU brevity penalty" in text
    assert "95% CI" in text
    with pytest.raises(EvaluationInputError, match="9 records"):
        table.write(tmp_path / "bad", records[:9])


def test_records_must_have_unique_ids(fast: MetricSuite) -> None:
    records = records_for(["a", "b"], ["a", "b"], [None, None])
    records[1]["id"] = records[0]["id"]
    with pytest.raises(EvaluationInputError, match="duplicate id"):
        score_records(records, suite=fast)


# ------------------------------------------------------------------- compare


@pytest.fixture
def eval_dirs(fast: MetricSuite, tmp_path: Path) -> dict[str, Path]:
    """F16-like base, a copy in another order, a worse "Q4" and an unrelated split."""
    preds, refs, labels = synthetic(30, seed=11)
    base = records_for(preds, refs, labels)
    worse_preds = [" ".join(p.split()[: max(1, len(p.split()) // 2)]) for p in preds]
    worse = records_for(worse_preds, refs, labels)
    dirs = {}
    for name, records in (("f16", base), ("q8_0", base[::-1]), ("q4_k_m", worse)):
        score_records(records, suite=fast).write(tmp_path / name, records, {"model": name})
    other = records_for(preds, refs, labels, prefix="other")
    score_records(other, suite=fast).write(tmp_path / "other", other, {"model": "other"})
    for name in ("f16", "q8_0", "q4_k_m", "other"):
        dirs[name] = tmp_path / name
    return dirs


def test_compare_pairs_by_id(eval_dirs: dict[str, Path]) -> None:
    result = compare(eval_dirs["f16"], [eval_dirs["q8_0"], eval_dirs["q4_k_m"]])
    assert result.others == ["q8_0", "q4_k_m"]
    same = result.deltas["q8_0"]
    for name, d in same.items():  # identical generations in another order: no change
        assert d.delta == pytest.approx(0.0, abs=1e-12), name
        assert d.ci_low == pytest.approx(0.0, abs=1e-12)
        assert d.ci_high == pytest.approx(0.0, abs=1e-12)
        assert not d.significant
    worse = result.deltas["q4_k_m"]
    base_table = read_eval_dir(eval_dirs["f16"]).table
    worse_table = read_eval_dir(eval_dirs["q4_k_m"]).table
    for name, d in worse.items():
        assert d.delta == pytest.approx(worse_table[name].value - base_table[name].value)
        assert d.ci_low <= d.delta <= d.ci_high
    assert worse["rouge1"].delta < 0
    assert worse["rouge1"].significant
    assert worse["bleu_ratio"].delta < 0
    text = result.render()
    assert "Δ q4_k_m" in text
    assert "ROUGE-1" in text
    assert "*" in text
    assert json.loads(json.dumps(result.to_json()))["deltas"]["q4_k_m"]["rouge1"]["delta"] < 0


def test_compare_refuses_different_example_sets(eval_dirs: dict[str, Path]) -> None:
    with pytest.raises(EvaluationInputError, match="evaluate different examples") as caught:
        compare(eval_dirs["f16"], [eval_dirs["other"]])
    assert "30 only in the base" in str(caught.value)


def test_compare_refuses_other_references(eval_dirs: dict[str, Path]) -> None:
    path = eval_dirs["q8_0"] / "predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["reference"] += " changed"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(EvaluationInputError, match="another reference caption"):
        compare(eval_dirs["f16"], [eval_dirs["q8_0"]])


def test_compare_needs_per_example_scores(eval_dirs: dict[str, Path]) -> None:
    (eval_dirs["q8_0"] / "scores.jsonl").unlink()
    with pytest.raises(EvaluationInputError, match=r"no scores\.jsonl"):
        compare(eval_dirs["f16"], [eval_dirs["q8_0"]])
