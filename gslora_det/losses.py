"""The forgetting losses of GS-LoRA for DETR-style detectors.

``L_forget = ReLU(BND − L_cls(forget)) + L_bbox(forget) + L_iou(forget)``:
only the classification term is negated, and it is bounded: once the
forgotten objects' classification loss exceeds BND there is no gradient
left to push it further, which keeps the rest of the model from being
dragged along (an unbounded negated loss diverges). The box terms stay
positive: the model keeps localising objects; it just must not call them
by the forgotten class. The reference's weights (w_cls = 2, w_l1 = 5,
w_giou = 2) are the detection head's own ``loss_weight``s, so the head's
loss values already carry them.
"""
import torch
import torch.nn.functional as F


def bounded_forget_cls_loss(loss_cls: torch.Tensor,
                            bound: float) -> torch.Tensor:
    """``ReLU(bound − loss_cls)``: falls as ``loss_cls`` rises, 0 past the
    bound.

    Args:
        loss_cls (Tensor): Weighted classification loss on forget data.
        bound (float): BND. The reference uses 15.

    Returns:
        Tensor: A non-negative scalar.
    """
    return F.relu(bound - loss_cls)


def prototype_kl(prototypes: torch.Tensor,
                 features: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(p) ‖ softmax(f))`` per matched query (GS-LoRA++).

    Args:
        prototypes (Tensor): (N, D) the class prototype of each query's
            matched ground truth: rows of the frozen class-head weight.
        features (Tensor): (N, D) the final-decoder embedding of each
            matched query.

    Returns:
        Tensor: (N,) KL divergences.
    """
    log_p = F.log_softmax(prototypes, dim=-1)
    log_f = F.log_softmax(features, dim=-1)
    return (log_p.exp() * (log_p - log_f)).sum(-1)


def prototype_loss(kl_forget: torch.Tensor, kl_retain: torch.Tensor,
                   bound: float, weight_forget: float,
                   weight_retain: float) -> torch.Tensor:
    """``w_f · ReLU(BND_pro − mean KL_forget) + w_r · mean KL_retain``.

    As the reference does it (``engine.py`` of the GS-LoRA ``object-det``
    branch, ``train_one_epoch_forget_cls``: ``relu(18 - loss_embedding)``,
    where ``loss_embedding`` is ``F.kl_div(..., reduction='batchmean')``
    over the batch's matched queries): the bound applies to the *batch
    mean* of the forget queries' KL, not to each query. Once the mean
    passes the bound the term is 0 for every query, even if some of them
    are still close to their prototype; below it, every forget query's KL
    gets the same weight, w_f / N, however far it already is. Forgotten
    queries are pushed away from their class prototype; retained ones are
    (optionally) pulled towards theirs.

    Args:
        kl_forget (Tensor): (N,) KL of each matched query of the forget
            images (:func:`prototype_kl`); may be empty.
        kl_retain (Tensor): (M,) the same for the retain images.
        bound (float): BND_pro (the reference: 18).
        weight_forget (float): w_f (the reference: 0.005).
        weight_retain (float): w_r (the reference: 0).

    Returns:
        Tensor: A scalar; 0 when both inputs are empty.
    """
    loss = kl_forget.new_zeros(())
    if kl_forget.numel():
        loss = loss + weight_forget * F.relu(bound - kl_forget.mean())
    if kl_retain.numel() and weight_retain:
        loss = loss + weight_retain * kl_retain.mean()
    return loss
