"""The default number of redundant routed experts: never silently zero.

Rule: at least one eighth of the routed experts as redundant copies, rounded up so every routed EP
rank holds the same number of slots:
``slots = ranks × ceil(E × (1 + 1/8) / ranks)``, ``redundant = slots - E``.

Source: every published DeepSeek-R1 deployment with redundancy uses 32 redundant copies for its 256
routed experts (reference §F "Redundancy used", §B.2): CloudMatrix-Infer decode EP320 (288 routed
ranks: 288 slots, 32 redundant), CloudMatrix-Infer prefill EP32 (288 slots = 9 per rank, one redundant
per rank) and DeepSeek's H800 decode EP144 (288 slots = 2 per GPU). The rule reproduces all three. It
also keeps power-of-two EP from collapsing: EP256 gets 512 slots (2 per rank, 256 redundant) rather
than 256 with none, and H800 EP128 gets 384 (3 per GPU, 128 redundant). xDeepServe EP288 (reference
§B.3) runs more than the rule (a redundant slot on every die); a plan says so explicitly.
"""

from __future__ import annotations

import math

REDUNDANT_FRACTION = 1.0 / 8.0   # 32 of 256 routed experts (reference §F, §B.2)
REDUNDANT_RULE = "rule: >= E/8 redundant, rounded up to fill every routed rank equally"


def rule_slots(experts: int, routed_ranks: int, multiple: float = 1.0) -> int:
    """Routed slots the rule gives for ``experts`` logical experts on ``routed_ranks`` EP ranks;
    ``multiple`` scales the redundant fraction (2.0: twice the rule, a search option)."""
    if experts <= 0 or routed_ranks <= 0:
        return 0
    want = experts * (1.0 + REDUNDANT_FRACTION * multiple)
    return routed_ranks * max(math.ceil(want / routed_ranks - 1e-9), 1)


def rule_redundant(experts: int, routed_ranks: int) -> int:
    """Redundant routed experts under the rule (see :func:`rule_slots`)."""
    return rule_slots(experts, routed_ranks) - experts
