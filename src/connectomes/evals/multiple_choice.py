"""Multiple-choice scoring shared by HellaSwag and MMLU: every choice is a continuation of the context.

Three rules pick the answer from the choices' summed log-probabilities:
- ``acc``            the highest sum;
- ``acc_norm_token`` the highest mean per continuation token (the paper's code, llm.c/nanoGPT style);
- ``acc_norm_char``  the highest sum divided by the number of characters of the choice text
                     (lm-evaluation-harness ``acc_norm``: ``len(choice)`` of the choice *without* the
                     space placed before it, ``api/task.py`` ``completion_len``).
Ties go to the first choice (numpy's argmax rule). Each accuracy carries its standard error
sqrt(p(1-p)/(n-1)), the harness's ``mean_stderr`` (sample standard deviation of the 0/1 outcomes over
sqrt(n)); it is None below two items.
"""

from __future__ import annotations

import math

RULES = ("acc", "acc_norm_token", "acc_norm_char")
DELIMITER = " "


def first_argmax(scores: list[float]) -> int:
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best]:
            best = i
    return best


def accuracy(correct: list[bool]) -> dict:
    n = len(correct)
    p = sum(correct) / n if n else None
    se = math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else None
    return {"value": p, "stderr": se, "n": n}


def score_choices(lm, questions: list[tuple[str, list[str]]], desc: str | None = None) -> list[dict]:
    """For each (context, choices): tokens(context) then tokens(" " + choice) per choice, as the
    paper's code builds them (separately, not jointly encoded). Returns per question the summed
    log-probs, scored token counts, choice character counts and the context's token count."""
    tok = lm.tokenizer
    requests, sizes, context_tokens = [], [], []
    for context, options in questions:
        c = tok.encode(context)
        requests += [(c, tok.encode(DELIMITER + o)) for o in options]
        sizes.append(len(options))
        context_tokens.append(len(c))
    scored = lm.loglikelihood(requests, desc=desc)
    out, k = [], 0
    for (_, options), m, nc in zip(questions, sizes, context_tokens):
        rows = scored[k:k + m]
        k += m
        out.append({"logprob": [r[0] for r in rows], "tokens": [r[1] for r in rows],
                    "chars": [len(o) for o in options], "context_tokens": nc})
    return out


def predictions(s: dict) -> dict[str, int]:
    """The index each rule picks for one question's scores."""
    lp = s["logprob"]
    return {
        "acc": first_argmax(lp),
        "acc_norm_token": first_argmax([v / n for v, n in zip(lp, s["tokens"])]),
        # an empty choice has no characters; harness would divide by zero, we score it as its sum
        "acc_norm_char": first_argmax([v / max(c, 1) for v, c in zip(lp, s["chars"])]),
    }


def rule_outcomes(scored: list[dict], labels: list[int]) -> dict[str, list[bool]]:
    """Per rule, whether each question was answered correctly."""
    out: dict[str, list[bool]] = {r: [] for r in RULES}
    for s, label in zip(scored, labels):
        for rule, pick in predictions(s).items():
            out[rule].append(pick == label)
    return out


def truncated_count(scored: list[dict], max_length: int) -> int:
    """Questions whose context lost tokens to fit the model's window (for at least one choice)."""
    return sum(s["context_tokens"] + max(s["tokens"]) > max_length + 1 for s in scored)
