"""ROUGE-L (longest common subsequence) F-measure, our own implementation (no new dependency).

Tokenisation follows the ``rouge_score`` package's default: lower-case, every run of characters other than
``a-z0-9`` is a separator, no stemming. F-measure is the balanced F1 of LCS precision and recall.
"""
import re
from typing import List, Sequence

_NON_ALNUM = re.compile(r'[^a-z0-9]+')


def tokenize(text: str) -> List[str]:
    return [t for t in _NON_ALNUM.split(text.lower()) if t]


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, O(len(a) * len(b)) time, O(len(b)) memory."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 in [0, 1] between a generated text and its reference."""
    pred, ref = tokenize(prediction), tokenize(reference)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)
