"""WordNet for METEOR from Debian's packages, without nltk's downloader.

nltk cannot download corpora here. Debian's ``wordnet-base`` (the WordNet 3.0 database in
``/usr/share/wordnet``) and ``wordnet-sense-index`` (``index.sense``) hold every file
nltk's ``WordNetCorpusReader`` opens except ``lexnames``, the table of the 45
lexicographer file names (number, name, syntactic category) that the reader loads first.
Debian documents that table in ``lexnames(5WN)`` but does not ship it, so it is written
here from WordNet 3.0's fixed list and checked against the database: every lexicographer
file number that ``data.noun``/``data.verb``/``data.adj``/``data.adv`` use must name a file
of that category.

The reader needs all its files in one folder, and nltk 3.10 opens only files under its
data paths (``nltk.data.path``) whose real path stays inside the corpus folder: it resolves
symbolic links and refuses hard-linked files. Its reader also looks up a corpus named
``wordnet`` on the data path while loading (to map sense keys between versions). So
``wordnet_root`` builds an nltk data folder, ``<cache>/wordnet-<key>/corpora/wordnet/``,
with copies of the Debian files (35 MB, once) plus the generated ``lexnames``, in a
temporary sibling renamed into place, and ``load_wordnet`` adds
``<cache>/wordnet-<key>`` to ``nltk.data.path`` (in this process only).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

from training.evaluation_errors import WordNetUnavailableError

__all__ = [
    "DEBIAN_WORDNET",
    "INSTALL_HINT",
    "LEXNAMES",
    "WordNetUnavailableError",
    "load_wordnet",
    "missing_wordnet_files",
    "wordnet_root",
]

DEBIAN_WORDNET = Path("/usr/share/wordnet")
INSTALL_HINT = (
    "install Debian's WordNet: `sudo apt-get install wordnet-base wordnet-sense-index` "
    "(or run `bash scripts/ensure-wordnet.sh` as root), or skip METEOR "
    "(MetricConfig(meteor=False))"
)

#: WordNet 3.0's lexicographer files in file-number order, with their syntactic category
#: (1 noun, 2 verb, 3 adjective, 4 adverb), as listed in lexnames(5WN).
LEXNAMES: tuple[tuple[str, int], ...] = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1),
    ("noun.animal", 1), ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1),
    ("noun.cognition", 1), ("noun.communication", 1), ("noun.event", 1),
    ("noun.feeling", 1), ("noun.food", 1), ("noun.group", 1), ("noun.location", 1),
    ("noun.motive", 1), ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1),
    ("noun.plant", 1), ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1),
    ("noun.relation", 1), ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1),
    ("noun.time", 1), ("verb.body", 2), ("verb.change", 2), ("verb.cognition", 2),
    ("verb.communication", 2), ("verb.competition", 2), ("verb.consumption", 2),
    ("verb.contact", 2), ("verb.creation", 2), ("verb.emotion", 2), ("verb.motion", 2),
    ("verb.perception", 2), ("verb.possession", 2), ("verb.social", 2), ("verb.stative", 2),
    ("verb.weather", 2), ("adj.ppl", 3),
)  # fmt: skip

#: The files nltk's reader opens, all shipped by the two Debian packages.
REQUIRED_FILES = (
    "cntlist.rev", "index.sense", "index.adj", "index.adv", "index.noun", "index.verb",
    "data.adj", "data.adv", "data.noun", "data.verb", "adj.exc", "adv.exc", "noun.exc",
    "verb.exc",
)  # fmt: skip
_CATEGORY_OF_FILE = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def missing_wordnet_files(source: Path = DEBIAN_WORDNET) -> list[str]:
    """The required database files absent from ``source`` (empty when complete)."""
    return [name for name in REQUIRED_FILES if not (source / name).is_file()]


def lexnames_text() -> str:
    """The ``lexnames`` file: ``NN<TAB>name<TAB>category`` per line."""
    return "".join(f"{i:02d}\t{name}\t{cat}\n" for i, (name, cat) in enumerate(LEXNAMES))


def check_lexnames(source: Path) -> None:
    """Every lexicographer file number used by ``source``'s data files fits ``LEXNAMES``.

    A data line is ``offset lex_filenum ss_type ...`` (wndb(5WN)); licence lines start
    with two spaces.
    """
    for pos, category in _CATEGORY_OF_FILE.items():
        used: set[int] = set()
        with (source / f"data.{pos}").open("rb") as handle:
            for line in handle:
                if not line.startswith(b"  "):
                    used.add(int(line[9:11]))
        wrong = sorted(n for n in used if n >= len(LEXNAMES) or LEXNAMES[n][1] != category)
        if wrong:
            raise WordNetUnavailableError(
                f"{source} is not WordNet 3.0: data.{pos} uses lexicographer files "
                f"{wrong} that are not {pos} files in WordNet 3.0's lexnames"
            )


def wordnet_root(source: Path = DEBIAN_WORDNET, cache_dir: Path | None = None) -> Path:
    """A folder nltk's WordNet reader can open: links to ``source`` plus ``lexnames``."""
    missing = missing_wordnet_files(source)
    if missing:
        raise WordNetUnavailableError(
            f"METEOR needs WordNet, and {source} lacks {', '.join(missing)}: {INSTALL_HINT}"
        )
    source = source.resolve()
    if cache_dir is None:
        from skinspector.core.settings import default_cache_dir

        cache_dir = default_cache_dir()
    key = hashlib.sha256(str(source).encode()).hexdigest()[:16]
    data_dir = cache_dir / f"wordnet-{key}"
    root = data_dir / "corpora" / "wordnet"
    if _complete(root):
        return root
    check_lexnames(source)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".wordnet.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        for name in REQUIRED_FILES:
            shutil.copyfile(source / name, tmp / name)
        (tmp / "lexnames").write_text(lexnames_text(), encoding="ascii")
        if root.exists():  # an incomplete folder left by an older run
            shutil.rmtree(root)
        try:
            os.replace(tmp, root)
        except OSError:
            if not _complete(root):  # not a concurrent builder's finished folder
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root


def _complete(root: Path) -> bool:
    return (root / "lexnames").is_file() and not missing_wordnet_files(root)


def load_wordnet(source: Path = DEBIAN_WORDNET, cache_dir: Path | None = None) -> Any:
    """nltk's ``WordNetCorpusReader`` over Debian's WordNet 3.0 (a few seconds to load)."""
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    root = wordnet_root(source, cache_dir).resolve()
    data_dir = str(root.parents[1])
    if data_dir not in nltk.data.path:
        nltk.data.path.append(data_dir)
    with warnings.catch_warnings():
        # Without the Open Multilingual WordNet (not needed for English METEOR) nltk warns
        # that its multilingual functions are unavailable.
        warnings.filterwarnings("ignore", message="The multilingual functions", module="nltk")
        return WordNetCorpusReader(str(root), None)
