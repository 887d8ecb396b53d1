"""Pseudo-queries: short, query-like texts cut from a corpus with no model at all, for the teacher to label.

Retrieval research makes pseudo-queries without a generator: a sentence stands in for its passage (the Inverse Cloze
Task) or a random crop does (Contriever). Here the teacher supplies the label of each text, so any query-like text
works, and a 5,000-document corpus yields hundreds of thousands of them. The kinds:

- `span`: a run of 2-12 consecutive words of a sentence, trimmed of stop words at both ends;
- `clause`: the first clause of a sentence (up to the first comma, semicolon or relative pronoun), 3-16 words;
- `keywords`: a noun-phrase-like run of 2-6 content words between stop words or punctuation;
- `title`: a document title of 2-20 words;
- `question`: a clause turned into a yes/no question by fronting its auxiliary ("X can affect Y" -> "can X affect
  Y?"), or a keyword run in a wh-template ("what is X?").

`pseudo_queries` draws them seeded, in the proportions of a `PseudoQueryMix`, deduplicated (case- and
space-insensitively) and never equal to a held-out (test) query of the dataset.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields

from search.data.records import Dataset, Document
from search.data.training_texts import check_no_test_queries, held_out_query_texts, normalise_text, split_sentences

logger = logging.getLogger(__name__)

PSEUDO_KINDS = ("span", "clause", "keywords", "title", "question")
SPAN_WORDS = (2, 12)
CLAUSE_WORDS = (3, 16)
KEYWORD_WORDS = (2, 6)
TITLE_WORDS = (2, 20)
# function words: a query rarely starts or ends with one, and a run of content words between them is a keyword run
STOP_WORDS = frozenset(
    """a an the and or but nor of in on at to for from by with without within into onto over under than then as
    is are was were be been being am do does did doing has have had having can could may might must shall should
    will would this that these those which who whom whose what when where why how it its it's they them their there
    here we our us you your he his him she her i me my not no so such very also both each either neither more most
    less least other another any some all only same via per between among through during after before about against
    upon whether while although though because if however thus therefore whereas yet""".split()
)
AUXILIARIES = ("is", "are", "was", "were", "can", "could", "may", "might", "does", "do", "did", "has", "have", "had",
               "will", "would", "should", "must")  # fmt: skip
WH_TEMPLATES = ("what is {}?", "what causes {}?", "how does {} work?", "{} definition", "effect of {}",
                "role of {}")  # fmt: skip
# structured abstracts open sections with a label ("BACKGROUND", "MAIN OUTCOME MEASURES"): no query starts that way
_SECTION_LABEL = re.compile(
    r"^(?:(?:BACKGROUND|OBJECTIVES?|METHODS?|RESULTS?|CONCLUSIONS?|CONTEXT|DESIGN|SETTINGS?|PARTICIPANTS|PATIENTS"
    r"|INTERVENTIONS?|MEASUREMENTS|FINDINGS|INTERPRETATION|PURPOSE|AIMS?|INTRODUCTION|IMPORTANCE|EXPOSURES?|SUMMARY"
    r"|ABSTRACT|MAIN|OUTCOMES?|MEASURES|AND|STUDY|SIGNIFICANCE|RATIONALE|DATA|SOURCES|SELECTION|EXTRACTION|SYNTHESIS)"
    r"[:.]?\s+)+"
)
_CLAUSE_END = re.compile(r"[,;:]| (?:which|that|who|whereas|while|but|although|because) ", re.IGNORECASE)
_WORD = re.compile(r"[\w][\w\-'/.%+]*[\w%]|\w")
_EDGE_PUNCTUATION = ".,;:!?()[]{}\"'"


@dataclass(frozen=True)
class PseudoQueryMix:
    """The share of each kind of pseudo-query (normalised to sum to 1); a kind that runs out is filled with spans."""

    span: float = 0.4
    clause: float = 0.15
    keywords: float = 0.25
    title: float = 0.05
    question: float = 0.15

    def __post_init__(self) -> None:
        weights = self.weights()
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"mix weights must be >= 0 with a positive sum, got {weights}")

    def weights(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> PseudoQueryMix:
        """`span=0.4,keywords=0.3,...` (kinds left out get 0); raise ValueError naming the allowed kinds."""
        values: dict[str, float] = dict.fromkeys(PSEUDO_KINDS, 0.0)
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, weight = part.partition("=")
            if name.strip() not in values:
                raise ValueError(f"unknown pseudo-query kind {name.strip()!r}: use {', '.join(PSEUDO_KINDS)}")
            try:
                values[name.strip()] = float(weight)
            except ValueError as err:
                raise ValueError(f"bad weight in {part!r}: write KIND=NUMBER, e.g. span=0.4") from err
        return cls(**values)


def corpus_sentences(text: str) -> list[str]:
    """The sentences of a passage with any leading section label of a structured abstract removed."""
    return [rest for rest in (_SECTION_LABEL.sub("", sentence) for sentence in split_sentences(text)) if rest]


def _words(text: str) -> list[str]:
    return [w.strip(_EDGE_PUNCTUATION) for w in text.split() if w.strip(_EDGE_PUNCTUATION)]


def _is_content(word: str) -> bool:
    return word.lower() not in STOP_WORDS and any(ch.isalnum() for ch in word)


def _trim(words: Sequence[str]) -> list[str]:
    """`words` without stop words at either end."""
    start, end = 0, len(words)
    while start < end and not _is_content(words[start]):
        start += 1
    while end > start and not _is_content(words[end - 1]):
        end -= 1
    return list(words[start:end])


def _within(words: Sequence[str], bounds: tuple[int, int]) -> bool:
    return bounds[0] <= len(words) <= bounds[1]


def sentence_spans(sentence: str, rng: random.Random, tries: int = 4) -> Iterator[str]:
    """Up to `tries` random spans of SPAN_WORDS words of `sentence`, trimmed of edge stop words."""
    words = _words(sentence)
    if len(words) < SPAN_WORDS[0]:
        return
    for _ in range(tries):
        length = rng.randint(SPAN_WORDS[0], min(SPAN_WORDS[1], len(words)))
        start = rng.randint(0, len(words) - length)
        span = _trim(words[start : start + length])
        if _within(span, SPAN_WORDS):
            yield " ".join(span)


def first_clause(sentence: str) -> str | None:
    """The sentence up to its first clause boundary, when that is CLAUSE_WORDS long; else None."""
    head = _CLAUSE_END.split(sentence, maxsplit=1)[0]
    words = _words(head)
    return " ".join(words) if _within(words, CLAUSE_WORDS) else None


def keyword_runs(sentence: str) -> list[str]:
    """Maximal runs of content words (no stop word, no punctuation break inside) of at least KEYWORD_WORDS[0] words,
    cut to their last KEYWORD_WORDS[1]."""
    runs: list[list[str]] = [[]]
    for raw in sentence.split():
        word = raw.strip(_EDGE_PUNCTUATION)
        if word and _is_content(word):
            runs[-1].append(word)
            if raw[-1] in ",;:.!?)":  # punctuation after a word ends the run
                runs.append([])
        elif runs[-1]:
            runs.append([])
    # a longer run keeps its last words: English noun phrases end in their head
    return [" ".join(run[-KEYWORD_WORDS[1] :]) for run in runs if len(run) >= KEYWORD_WORDS[0]]


def to_question(clause: str, keywords: Sequence[str], rng: random.Random) -> str | None:
    """A yes/no question from `clause` by fronting its first auxiliary verb (not its first word), else a wh-template
    around one of `keywords`; None when neither applies."""
    words = clause.split()
    for i, word in enumerate(words[1:-1], start=1):
        if word.lower() in AUXILIARIES:
            rest = [words[0] if words[0].isupper() and len(words[0]) > 1 else words[0].lower(), *words[1:i],
                    *words[i + 1 :]]  # fmt: skip
            return f"{word.lower()} {' '.join(rest)}?"
    if keywords:
        return rng.choice(WH_TEMPLATES).format(rng.choice(list(keywords)))
    return None


def document_pseudo_queries(doc: Document, kind: str, rng: random.Random,
                            sentences: Sequence[str] | None = None) -> list[str]:  # fmt: skip
    """Candidates of one `kind` from one document (seeded by `rng`; `sentences`: its text already split): a few
    spans per sentence, every clause, keyword run and question, the title."""
    if kind not in PSEUDO_KINDS:
        raise ValueError(f"unknown pseudo-query kind {kind!r}: use {', '.join(PSEUDO_KINDS)}")
    if kind == "title":
        words = _words(doc.title or "")
        return [" ".join(words)] if _within(words, TITLE_WORDS) else []
    out: list[str] = []
    for sentence in corpus_sentences(doc.text) if sentences is None else sentences:
        if kind == "span":
            out += sentence_spans(sentence, rng)
        elif kind == "clause":
            clause = first_clause(sentence)
            out += [clause] if clause else []
        elif kind == "keywords":
            out += keyword_runs(sentence)
        else:
            clause = first_clause(sentence)
            question = to_question(clause or "", keyword_runs(sentence), rng)
            out += [question] if question else []
    return out


def quotas(count: int, mix: PseudoQueryMix) -> dict[str, int]:
    """`count` split over the kinds in proportion to `mix` (largest remainders get the rounding)."""
    weights = mix.weights()
    total = sum(weights.values())
    exact = {kind: count * weights[kind] / total for kind in PSEUDO_KINDS}
    shares = {kind: int(value) for kind, value in exact.items()}
    for kind in sorted(PSEUDO_KINDS, key=lambda k: -(exact[k] - shares[k]))[: count - sum(shares.values())]:
        shares[kind] += 1
    return shares


def pseudo_queries(
    dataset: Dataset,
    count: int,
    seed: int = 0,
    mix: PseudoQueryMix | None = None,
    exclude: Sequence[str] = (),
    max_rounds: int = 256,
) -> list[str]:
    """Up to `count` distinct pseudo-queries from `dataset`'s corpus in the proportions of `mix`, seed-shuffled.

    Deterministic for a seed. Never returns a held-out (non-train) query of the dataset, nor a text of `exclude`
    (compared with `normalise_text`). Each kind is drawn document by document in a seeded order, round after round
    (spans are re-drawn each round), until its quota is met or it runs dry; the shortfall goes to spans, and the
    result is shorter than `count` only when the corpus cannot give more.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    mix = mix or PseudoQueryMix()
    rng = random.Random(seed)
    seen = held_out_query_texts(dataset) | {normalise_text(text) for text in exclude}
    forbidden = len(seen)
    sentences = [corpus_sentences(doc.text) for doc in dataset.corpus]
    wanted = quotas(count, mix)
    chosen: dict[str, list[str]] = {kind: [] for kind in PSEUDO_KINDS}
    # spans last: they absorb what the other kinds could not give
    for kind in sorted(PSEUDO_KINDS, key=lambda k: k == "span"):
        if kind == "span":
            wanted["span"] = count - sum(len(chosen[k]) for k in PSEUDO_KINDS if k != "span")
        if wanted[kind] <= 0:
            continue
        fixed: dict[int, list[str]] = {}  # the kinds without randomness give the same candidates every round
        for _ in range(max_rounds):
            before = len(chosen[kind])
            for row in rng.sample(range(len(dataset.corpus)), len(dataset.corpus)):
                if kind in ("span", "question"):  # drawn anew each round, from one random sentence
                    picked = [rng.choice(sentences[row])] if sentences[row] else []
                    candidates = document_pseudo_queries(dataset.corpus[row], kind, rng, picked)
                else:
                    if row not in fixed:
                        fixed[row] = document_pseudo_queries(dataset.corpus[row], kind, rng, sentences[row])
                    candidates = fixed[row]
                for text in candidates:  # one new text per document per round spreads a kind over the corpus
                    key = normalise_text(text)
                    if key and key not in seen:
                        seen.add(key)
                        chosen[kind].append(text)
                        break
                if len(chosen[kind]) >= wanted[kind]:
                    break
            if len(chosen[kind]) >= wanted[kind] or len(chosen[kind]) == before:
                break
    texts = [text for kind in PSEUDO_KINDS for text in chosen[kind]]
    rng.shuffle(texts)
    check_no_test_queries(texts, dataset)
    logger.info("%d pseudo-queries from %s (%s; %d texts excluded)", len(texts), dataset.name,
                ", ".join(f"{kind} {len(chosen[kind])}" for kind in PSEUDO_KINDS), forbidden)  # fmt: skip
    return texts


def length_histogram(texts: Sequence[str], max_words: int = 40) -> dict[int, float]:
    """Share of `texts` by word count (counts above `max_words` pooled at `max_words`)."""
    counts: dict[int, int] = {}
    for text in texts:
        n = min(len(text.split()), max_words)
        counts[n] = counts.get(n, 0) + 1
    total = max(1, len(texts))
    return {n: c / total for n, c in sorted(counts.items())}


def length_distance(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """Total variation distance between two length histograms: 0 identical, 1 disjoint."""
    return 0.5 * sum(abs(a.get(n, 0.0) - b.get(n, 0.0)) for n in set(a) | set(b))
