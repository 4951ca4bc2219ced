"""Follow-up questions without a language model: when a question leans on the conversation, and what to search.

"and in the UK?" after "does PostHog match 401k contributions in the US?"
cannot be answered alone: retrieval finds nothing about pensions in it. In
``llm`` mode the chat model rewrites such a question (prompt ``rewrite-*.md``);
offline there is no model, so this module decides from the question's own
words whether it leans on the previous one, and if so searches with both
(the previous question's content words, then the new question). The question
is kept as typed for display and storage; only the search and the sentence
choice see the combined text.

A question leans on the conversation when (:func:`leans_on`):

- it opens with a connective that continues the previous one ("and ...",
  "what about ...", "how about ...", "what if ...", "also ...");
- it refers back with a pronoun or demonstrative that nothing in it names
  ("is it confidential?", "does that also apply to my kids?", "how do I reach
  them?"), the impersonal "it" ("is it possible to ...") and the existential
  "there" ("is there a gym?") excepted;
- it is short and has no verb ("any discount in the US?", "sick leave?").

A question with none of these cues is standalone and is left alone, except
when alone it finds nothing to answer from (:func:`rescues`): "do I need a
doctor's note?" after "what do I do if I'm sick?" has no cue, yet the
combined search answers it. The combined result is taken only if it can
answer and its passages mention most of the new question's own content words,
so a new unanswerable question ("is there a gym budget?") is not answered
from the previous topic.

Measured on ``eval/followups_18f.jsonl`` and ``eval/followups_posthog.jsonl`` (see the user guide and the commit
messages for the figures); the cues are word lists, not thresholds fitted to
either handbook.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from assistant.answerability import question_terms
from assistant.keyword import tokenize
from assistant.prompting import normalise_history

#: Openings that continue the previous question.
_CONTINUES = re.compile(
    r"^\W*(?:and|or|but|so|also|plus|then|same|what about|how about|what if|what else|and what|else)\b",
    re.IGNORECASE,
)
#: Words that point back to something the question itself does not name.
_REFERS = re.compile(r"\b(?:[iI]t|[iI]ts|that|this|these|those|they|them|their|there|one|ones|same|else)\b",
                     re.IGNORECASE)  # (not "IT", the department)
#: A question ending on a word that needs something before it ("... come back to work after?", "... too?").
_DANGLING = re.compile(r"\b(?:after|afterwards|before|too|as well|instead|then|either|also)\W*$", re.IGNORECASE)
#: ... and the uses of them that do not: "is it possible to", "is there a", "that" opening a clause.
_NOT_REFERRING = re.compile(
    r"\bit(?:'s| is| was)?\s+(?:\w+\s+){0,2}?(?:to|that|if|when)\b"  # is it ok to ..., is it true that ...
    r"|\b(?:is|are|was|were|isn't|aren't)\s+there\b|\bthere\s+(?:is|are|was|were|a|an|any)\b"  # is there a ...
    r"|\b(?:this|that|these|those)\s+(?:week|month|year|morning|afternoon|evening|quarter|time)\b"
    r"|\b(?:so|such|sure|know|say|says|mean|means|think|check|ensure|make sure)\s+that\b"
    r"|\b\w+s?\s+that\s+(?:i|you|we|they|he|she|is|are|was|were|has|have|can|will|need|needs)\b"  # a form that I ...
    r"|\bone\s+of\b|\bno one\b|\beveryone\b|\bsomeone\b|\bany ?one\b",
    re.IGNORECASE,
)
#: Verbs and auxiliaries that make a question a clause of its own (anything else short is an ellipsis).
_VERB = re.compile(
    r"\b(?:am|is|are|was|were|be|been|being|do|does|did|done|have|has|had|can|could|should|would|will|shall|may"
    r"|might|must|need|needs|get|gets|got|take|takes|make|makes|go|goes|work|works|pay|pays|use|uses|apply|find"
    r"|know|ask|book|bill|submit|request|join|reach|call|contact|change|cover|covers|include|includes|count"
    r"|counts|happen|happens|want|set|sign|tell|help|start|i'm|it's|what's|who's|how's|where's|there's"
    r"|can't|don't|doesn't|isn't|aren't|won't)\b"
    r"|\w+(?:ed|ing)\b",
    re.IGNORECASE,
)
#: A pronoun points back only in a question with at most this many content words: a longer one names its
#: own antecedent ("My MacBook keeps nagging me about a macOS update. Should I just install it?").
REFERENCE_WORDS = 3
#: Words that say little about the topic, left out of that count.
_WEAK = frozenset(
    ["much", "many", "need", "needs", "also", "get", "go", "come", "back", "really", "just", "actually", "like",
     "still", "even"]
)
#: A question with no verb and at most this many words is an ellipsis ("and for contractors?").
ELLIPSIS_WORDS = 6
#: A rescue needs this share of the new question's content words in the passages the combined search found.
RESCUE_COVERAGE = 0.5


def leans_on(question: str) -> str | None:
    """Why ``question`` leans on the conversation ("opens with 'and'"), or ``None`` if it stands alone."""
    text = question.strip()
    opener = _CONTINUES.match(text)
    if opener:
        return f"opens with {opener.group(0).strip(' ,')!r}"
    dangling = _DANGLING.search(text)
    if dangling:
        return f"ends with {dangling.group(0).strip(' ?.!')!r}"
    kept = _NOT_REFERRING.sub(" ", re.sub(r"\bIT\b", " ", text))
    reference = _REFERS.search(kept)
    if reference and len(_own_words(text)) <= REFERENCE_WORDS:
        return f"refers back with {reference.group(0)!r}"
    words = re.findall(r"[\w'’]+", text)
    if words and len(words) <= ELLIPSIS_WORDS and not _VERB.search(text):
        return "has no verb of its own"
    return None


def _own_words(question: str) -> list[str]:
    return [t for t in question_terms(question) if t.lower() not in _WEAK]


def previous_question(history: Sequence[tuple[str, str]]) -> str | None:
    """The last question the person asked before this one, if any."""
    for role, text in reversed(normalise_history(history)):
        if role == "user" and text.strip():
            return text.strip()
    return None


def combined_query(question: str, previous: str) -> str:
    """What to search for a follow-up: the previous question, then the question as typed.

    The whole previous question, not only its content words: the embedding
    reads a sentence better than a bag of words (the follow-ups of
    ``eval/followups_18f.jsonl`` and ``eval/followups_posthog.jsonl`` whose search can answer: 18F 11 to 15 of 15,
    PostHog 10 to 11 of 12).
    """
    return f"{previous.strip()} {question.strip()}"


def coverage(question: str, unmatched_terms: Sequence[str]) -> float:
    """Share of ``question``'s own content words that the passages mention (from the verdict's unmatched terms)."""
    terms = [t for t in question_terms(question) if tokenize(t)]
    if not terms:
        return 1.0
    missing = {t.lower() for t in unmatched_terms}
    return sum(t.lower() not in missing for t in terms) / len(terms)


def rescues(question: str, *, answerable: bool, unmatched_terms: Sequence[str]) -> bool:
    """Whether a combined search may stand in for a standalone-looking question that alone found no answer."""
    return answerable and coverage(question, unmatched_terms) >= RESCUE_COVERAGE
