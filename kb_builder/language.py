"""The languages of the index: English and Bahasa Indonesia.

Both are first-class. Each has its own lexical analysis (PyStemmer's Snowball stemmer for
the language; one stop-word list, English + Indonesian, so a query mixing the two loses its
function words either way), and a query's language is detected from its words so it is
searched the way it was written:

- ``detect_language`` counts the words that only one of the two languages uses (function
  words, common lay words, Indonesian affixes); a tie, or no such word, is "unknown" and the
  query is searched in both languages.
- ``Glossary`` maps Indonesian lay words to the English words a clinical text uses
  ("gatal" -> "itch itchy pruritus"), so an Indonesian description can also match the
  English body of a knowledge-base entry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from kb_builder.errors import KbError

__all__ = [
    "INDONESIAN_STOPWORDS",
    "Glossary",
    "Language",
    "default_glossary",
    "detect_language",
    "stemmer_name",
    "stopwords",
    "word_tokens",
]


class Language(StrEnum):
    ENGLISH = "en"
    INDONESIAN = "id"


_STEMMERS = {Language.ENGLISH: "english", Language.INDONESIAN: "indonesian"}


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Bahasa Indonesia function words (standard and colloquial), so lay queries ("gatal di kulit
# yang ...", "udah gak sembuh") score on their content words.
INDONESIAN_STOPWORDS = _word_set(
    """
    yang di dan ke dari ini itu dengan untuk pada ada tidak saya aku kami kita dia ia atau
    juga akan sudah telah bisa dapat karena jika kalau seperti sangat lebih banyak sering
    adalah oleh dalam sebagai tersebut bagian setelah sejak hari minggu bulan tahun sekitar
    apa apakah bagaimana kenapa mengapa nya pun lah kah jadi masih baru belum hanya saja
    tapi tetapi namun agar supaya lalu kemudian sampai hingga sekali makin semakin lagi
    mereka anda kamu kau beliau punya sedang pernah selalu kadang kadang-kadang terus
    sendiri para sini sana situ begitu begini tanpa bila ketika saat waktu sebelum sesudah
    antara bahwa maka pula nah ya tak gak nggak ngga enggak engga udah sdh yg dgn dg tdk
    aja banget bgt kok sih deh dong nih tuh kayak gimana mau ingin harus perlu boleh
    biasanya mungkin hampir cukup agak terlalu paling tiap setiap semua seluruh beberapa
    """
)

# Words that mark a text as Indonesian besides its function words: common lay words of a
# skin complaint. Only words no English text uses.
_INDONESIAN_MARKERS = _word_set(
    """
    kulit gatal merah bintik bintil bercak benjolan benjol luka lecet lepuh melepuh nanah
    bernanah bengkak sakit nyeri perih panas demam anak bayi ibu bapak kaki tangan wajah
    muka kepala badan perut punggung dada leher lengan jari kuku rambut mata mulut bibir
    hidung pipi telinga ketiak selangkangan pantat paha betis tumit telapak sela putih
    hitam cokelat coklat kuning ungu biru bersisik sisik kering basah berair kasar tebal
    tipis kecil besar bulat menonjol timbul muncul tumbuh berubah warna berdarah darah
    kambuh sembuh obat salep minum makan garuk digaruk kena sudah lama seperti keluar
    """
)

_ENGLISH_MARKERS = _word_set(
    """
    the a an and or of to in on at with without for from by is are was were be been has
    have had it its this that these those my your his her their our i you he she we they
    me him them not no very after before since when which who what how why there here
    under over into onto about above below between through during against around near off
    up down out than then so but if because while until also only just still again ever
    never always often sometimes can could will would should may might must do does did
    done get got getting keeps keep started became become like same even more most less
    some any all both each every other another new old years months weeks days ago
    skin itch itchy itching rash red spot spots patch patches bump bumps lump lumps sore
    sores blister blisters scaly flaky painful pain swollen swelling child baby face hand
    hands foot feet leg legs arm arms back chest neck finger fingers toe toes nail nails
    scalp white black brown yellow purple dark small large round growing bleeds bleeding
    """
)

# Affixes that English words rarely carry (di-, pe-, ke-...-an, -an are left out: "disease",
# "pemphigus", "median").
_INDONESIAN_AFFIXED = re.compile(r"^(?:ber|ter|meng|meny|mem|men)\w{3,}|\w{3,}(?:nya|kan)$")
_WORD = re.compile(r"(?u)\b\w\w+\b")


def stemmer_name(language: Language) -> str:
    """The PyStemmer algorithm used for ``language``."""
    return _STEMMERS[language]


@cache
def stopwords() -> tuple[str, ...]:
    """English (bm25s' list) and Bahasa Indonesia stop words, one sorted list."""
    from bm25s.stopwords import STOPWORDS_EN

    return tuple(sorted(set(STOPWORDS_EN) | INDONESIAN_STOPWORDS))


def word_tokens(text: str) -> list[str]:
    """Lower-cased words of two or more letters (the bm25s token pattern)."""
    return _WORD.findall(text.lower())


def detect_language(text: str) -> Language | None:
    """English, Indonesian, or ``None`` when the words do not tell (a tie, or no marker).

    A word counts for Indonesian if it is an Indonesian function word or lay marker (half
    as much if it only carries an Indonesian affix: ber-, ter-, meN-, -nya, -kan); it counts
    for English if it is an English function word or marker.
    """
    english_words = _english_stopwords()
    indonesian = english = 0.0
    for word in word_tokens(text):
        if word in INDONESIAN_STOPWORDS or word in _INDONESIAN_MARKERS:
            indonesian += 1
        elif word in english_words or word in _ENGLISH_MARKERS:
            english += 1
        elif _INDONESIAN_AFFIXED.match(word) and not word.endswith(("tion", "ing")):
            indonesian += 0.5  # a weaker cue: "terrible", "menstrual"
    if indonesian > english:
        return Language.INDONESIAN
    if english > indonesian:
        return Language.ENGLISH
    return None


@cache
def _english_stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) - INDONESIAN_STOPWORDS


@cache
def _indonesian_stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer(stemmer_name(Language.INDONESIAN))


def _key(words: Sequence[str]) -> str:
    """Words as the glossary matches them: Indonesian stems ("bersisik" -> "sisik")."""
    return " ".join(_indonesian_stemmer().stemWords(list(words)))


@dataclass(frozen=True, slots=True)
class Glossary:
    """Indonesian lay words (and two-word phrases) -> English clinical words.

    Matching is on Indonesian stems, so affixed forms find their root's entry ("bersisik",
    "sisiknya" -> "sisik"); a two-word phrase ("tahi lalat") wins over its words. Loaded
    from JSON lines ``{"id": "...", "en": "..."}``.
    """

    entries: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> Glossary:
        if not path.is_file():
            raise KbError(f"glossary not found: {path}")
        entries: dict[str, str] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record: Any = json.loads(line)
                source, target = str(record["id"]), str(record["en"]).strip()
            except (ValueError, KeyError, TypeError) as exc:
                raise KbError(f"{path}:{number}: not a glossary record ({exc})") from exc
            words = word_tokens(source)
            if not words or not target or len(words) > 2:
                raise KbError(f"{path}:{number}: a glossary entry is one or two words -> text")
            key = _key(words)
            entries[key] = f"{entries[key]} {target}" if key in entries else target
        return cls(entries)

    def translate(self, text: str) -> str:
        """The English words for the Indonesian words of ``text`` that the glossary knows
        (in order, each once); words it does not know are left out."""
        stems = _key(word_tokens(text)).split()
        found: list[str] = []
        index = 0
        while index < len(stems):
            pair = " ".join(stems[index : index + 2])
            if index + 1 < len(stems) and pair in self.entries:
                found.append(self.entries[pair])
                index += 2
                continue
            if stems[index] in self.entries:
                found.append(self.entries[stems[index]])
            index += 1
        return " ".join(dict.fromkeys(" ".join(found).split()))

    def __len__(self) -> int:
        return len(self.entries)


@cache
def default_glossary() -> Glossary:
    """The bundled Indonesian -> English dermatology lay glossary."""
    from kb_builder import glossary_path

    return Glossary.load(glossary_path())
