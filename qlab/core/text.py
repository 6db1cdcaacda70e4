"""Evaluation text: the WikiText-2 test split shipped in ``data/`` and sentences cut from it.

WikiText-2 (Merity et al., 2016, arXiv:1609.07843; CC BY-SA 3.0, see ``data/README.md``) in its
*raw* form: one paragraph per line, headings written `` = Title = ``, tokens separated by spaces
(``actor . He``), and number separators escaped as `` @-@ ``, `` @,@ ``, `` @.@ ``.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..models.paths import data_dir

WIKITEXT2_TEST = "wikitext-2-raw-test.txt"

# a sentence ends with " ." / " !" / " ?" followed by a space and a capital letter or a quote
_SENTENCE_END = re.compile(r"(?<= [.!?]) (?=[A-Z\"'])")
_DETOK = [
    (re.compile(r" @([-,.])@ "), r"\1"),  # 1 @,@ 000 -> 1,000 ; state @-@ of -> state-of
    (re.compile(r" ([.,;:!?%)])"), r"\1"),  # word . -> word.
    (re.compile(r"([($]) "), r"\1"),  # ( word -> (word
    (re.compile(r" ('s|'re|'ve|'m|'ll|'d|n't)\b"), r"\1"),  # it 's -> it's
]


@lru_cache(maxsize=1)
def wikitext2_test() -> str:
    """The raw WikiText-2 test split as one string (1,296,370 bytes; cached per process)."""
    path = data_dir() / WIKITEXT2_TEST
    if not path.is_file():
        raise FileNotFoundError(f"WikiText-2 test text not found at {path} (set $QLAB_DATA to the data/ directory)")
    return path.read_text(encoding="utf-8")


def detokenize(s: str) -> str:
    """Undo WikiText's tokenization spaces (``actor 's role , 1 @,@ 000`` -> ``actor's role, 1,000``)."""
    for pattern, repl in _DETOK:
        s = pattern.sub(repl, s)
    return s


def sentences(text: str, min_words: int = 6, max_words: int = 48) -> list[str]:
    """Sentences of a raw WikiText text, in document order, de-duplicated and detokenized.

    Paragraph lines are split at sentence ends; headings (`` = ... = ``) and blank lines are
    skipped; sentences outside ``[min_words, max_words]`` words (after detokenizing) are dropped.
    """
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("="):
            continue
        for raw in _SENTENCE_END.split(line):
            s = detokenize(raw)
            if not min_words <= len(s.split()) <= max_words:
                continue
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def wikitext_sentences(n: int = 1000, min_words: int = 6, max_words: int = 48) -> list[str]:
    """The first ``n`` sentences of the WikiText-2 test split (see :func:`sentences`)."""
    found = _wikitext_sentences(min_words, max_words)
    if n > len(found):
        raise ValueError(f"WikiText-2 test has {len(found)} sentences of {min_words}-{max_words} words, {n} asked")
    return list(found[:n])


@lru_cache(maxsize=4)
def _wikitext_sentences(min_words: int, max_words: int) -> tuple[str, ...]:
    return tuple(sentences(wikitext2_test(), min_words, max_words))




def calibration_text(chars: int = 200_000) -> str:
    """Text for calibrating LLM methods that is *not* the evaluation text: ``chars`` characters of
    the second half of WikiText-2 test, starting at an article heading.

    :func:`qlab.eval.perplexity` scores the first ``windows * window`` tokens (16 x 512 = 8,192 tokens,
    about 36 k characters); calibration starts at character 650,597 (the first article heading
    after the middle), far beyond anything the protocol reads. WikiText-2 train is not shipped, so
    this is the standard held-out choice when only the test split is available.
    """
    if chars <= 0:
        raise ValueError(f"chars must be positive, got {chars!r}")
    text = wikitext2_test()
    match = re.compile(r"\n = [^=]").search(text, len(text) // 2)  # a top-level `` = Title = `` line
    if match is None:
        raise ValueError("WikiText-2 test text has no article heading in its second half")
    start = match.start() + 1
    return text[start : start + chars]
__all__ = ["WIKITEXT2_TEST", "calibration_text", "detokenize", "sentences", "wikitext2_test", "wikitext_sentences"]
