"""Harmonic mean of forgetting and retention, the headline GS-LoRA score."""


def h_mean(map_forget_before: float, map_forget_after: float,
           map_retain_after: float) -> float:
    """Harmonic mean of the forget-set mAP drop and the retained-set mAP.

    Follows the GS-LoRA reference::

        drop = map_forget_before - map_forget_after
        H = 2 * drop * map_retain_after / (drop + map_retain_after)

    A good unlearner both drops the forget classes (large ``drop``) and keeps
    the others (large ``map_retain_after``); the harmonic mean is high only
    when both are.

    Degenerate cases return ``0.0`` rather than raising or returning a
    negative/undefined number: a non-positive drop (the forget classes did not
    get worse, so nothing was forgotten) and a non-positive denominator
    (e.g. both terms are zero). This keeps ``H`` in ``[0, 1]`` and makes
    "no forgetting" score as badly as "no retention".

    Args:
        map_forget_before (float): mAP of the forget classes before
            forgetting, on the 0-1 scale.
        map_forget_after (float): mAP of the forget classes after forgetting,
            on the 0-1 scale.
        map_retain_after (float): mAP of the retained classes after
            forgetting, on the 0-1 scale.

    Returns:
        float: The harmonic mean, on the 0-1 scale.
    """
    drop = float(map_forget_before) - float(map_forget_after)
    retain = float(map_retain_after)
    denom = drop + retain
    if drop <= 0 or denom <= 0:
        return 0.0
    return 2.0 * drop * retain / denom
