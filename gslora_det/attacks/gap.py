"""The recovery gap: how much more an attack brings back than it would
from a model that never learnt the classes.

A retrained model (trained without the forgotten classes) is what perfect
forgetting looks like. An attack that fine-tunes it on ``k`` images of a
class teaches the class from scratch; the same attack on the merged
(forgotten) model may *recover* it faster if the knowledge is only
dormant. The gap is, per attack and ``k``::

    gap = mAP_forget(attack(merged)) - mAP_forget(attack(retrained))

0 (or below): the attack finds nothing to recover beyond what ``k`` images
teach anyone; > 0: the merged model still holds the class.
"""
import math
from typing import Dict, Mapping, Optional


def run_key(attack: str, k: Optional[int] = None) -> str:
    """The key of one (attack, k) setting: ``'k_shot k=5'``, ``'none'``."""
    return attack if k is None else f'{attack} k={int(k)}'


def _valid(value) -> bool:
    """A usable mAP: a finite number >= 0 (COCO reports -1 without GT)."""
    return value is not None and math.isfinite(float(value)) \
        and float(value) >= 0


def recovery_gap(merged: Mapping[str, Optional[float]],
                 retrained: Mapping[str, Optional[float]]
                 ) -> Dict[str, Optional[float]]:
    """``merged[key] - retrained[key]`` for every key of ``merged``.

    Args:
        merged (Mapping[str, float | None]): Forgotten-class mAP (0-1) of
            the attacked merged model, by :func:`run_key`.
        retrained (Mapping[str, float | None]): The same for the attacked
            retrained model.

    Returns:
        dict[str, float | None]: The gap per key, in the order of
        ``merged``; None where either side is missing, None or negative.
    """
    return {key: (float(value) - float(retrained[key])
                  if _valid(value) and _valid(retrained.get(key)) else None)
            for key, value in merged.items()}


def recovered(after: Mapping[str, Optional[float]],
              start: Optional[float]) -> Dict[str, Optional[float]]:
    """How far each attack moved one model: ``after[key] - start``.

    Args:
        after (Mapping[str, float | None]): mAP after each attack.
        start (float, optional): mAP of the unattacked model.

    Returns:
        dict[str, float | None]: Per key; None where a value is unusable.
    """
    return {key: (float(value) - float(start)
                  if _valid(value) and _valid(start) else None)
            for key, value in after.items()}
