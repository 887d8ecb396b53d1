"""The distillation objectives: small pure torch functions on batches of vectors.

They take every setting explicitly (no defaults): the one set of defaults is `DistillConfig`'s.
torch is imported lazily, inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compression.distill.config import LOSS_NAMES, LossName

if TYPE_CHECKING:  # pragma: no cover
    import torch


def mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over texts of the squared Euclidean distance between student and teacher vectors.

    For unit vectors this is 2 - 2 cos. It is `dim` times torch's element-wise MSE, which keeps it on the scale of
    the KL term whatever the embedding dimension (the element-wise mean of 768 dims is ~1e-4 and would need a tiny
    kl_weight). Pass normalised vectors; `distillation_loss` does.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student vectors {tuple(student.shape)} and teacher vectors {tuple(teacher.shape)} differ")
    return (student - teacher).pow(2).sum(dim=-1).mean()


def similarity_kl_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) between in-batch similarity distributions, averaged over the texts of the batch.

    For each text i, p_i = softmax_j(cos(t_i, t_j) / temperature) over the other texts j != i of the batch (the
    diagonal is left out: every text is most similar to itself), likewise q_i from the student's vectors; the loss is
    mean_i KL(p_i || q_i). It is 0 whenever the student's similarity structure equals the teacher's (any rotation of
    the teacher's vectors, for instance), and the student's dim need not equal the teacher's. Batches of fewer than 2
    texts have no other texts to compare with and give 0.
    """
    import torch
    import torch.nn.functional as F

    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student has {student.shape[0]} vectors, teacher {teacher.shape[0]}: they must match")
    n = student.shape[0]
    if n < 2:
        return student.sum() * 0.0
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=student.device)

    def log_probs(vectors: torch.Tensor) -> torch.Tensor:
        unit = F.normalize(vectors, p=2, dim=-1)
        similarities = (unit @ unit.T)[off_diagonal].view(n, n - 1) / temperature
        return F.log_softmax(similarities, dim=-1)

    return F.kl_div(log_probs(student), log_probs(teacher.to(student.dtype)), log_target=True, reduction="batchmean")


def ranking_kl_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_documents: torch.Tensor,
    teacher_documents: torch.Tensor,
    temperature: float,
    teacher_boost: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher || student) between each text's similarity distributions over a fixed set of documents.

    p_i = softmax_d(cos(t_i, T_d) / temperature) over the teacher's document vectors T, q_i likewise from the
    student's vector s_i against `student_documents` S (the teacher's own vectors in the asymmetric mode, or a frozen
    student document tower). Unlike the in-batch `similarity_kl_loss`, every text is ranked against the whole corpus,
    which is the distribution search actually samples from: the student learns which documents the teacher puts on
    top for that text, and in which order. `teacher_boost` (texts x documents) is added to the teacher's logits:
    judged-relevant documents of train queries get `label_boost` there, mixing hard labels into the soft ones
    (Hinton et al.'s distillation with true labels). Pass unit vectors.
    """
    import torch.nn.functional as F

    if student_documents.shape[0] != teacher_documents.shape[0]:
        raise ValueError(
            f"{student_documents.shape[0]} student documents but {teacher_documents.shape[0]} teacher documents"
        )
    teacher_logits = teacher.to(teacher_documents.dtype) @ teacher_documents.T / temperature
    if teacher_boost is not None:
        teacher_logits = teacher_logits + teacher_boost.to(teacher_logits.dtype)
    student_logits = student @ student_documents.to(student.dtype).T / temperature
    return F.kl_div(
        F.log_softmax(student_logits, dim=-1),
        F.log_softmax(teacher_logits.to(student.dtype), dim=-1),
        log_target=True,
        reduction="batchmean",
    )


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    loss: LossName,
    kl_weight: float,
    temperature: float,
    documents: tuple[torch.Tensor, torch.Tensor] | None = None,
    teacher_boost: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training objective on L2-normalised vectors: `mse`, `kl`, `mse+kl` = mse + kl_weight * kl, `rank`, or
    `mse+rank` = mse + kl_weight * rank; the rank terms need `documents` = (student's, teacher's) document vectors."""
    import torch.nn.functional as F

    if loss not in LOSS_NAMES:
        raise ValueError(f"unknown loss {loss!r}: use one of {', '.join(LOSS_NAMES)}")
    student = F.normalize(student, p=2, dim=-1)
    teacher = F.normalize(teacher.to(student.dtype), p=2, dim=-1)
    if loss == "mse":
        return mse_loss(student, teacher)
    if loss == "kl":
        return similarity_kl_loss(student, teacher, temperature)
    if loss == "mse+kl":
        return mse_loss(student, teacher) + kl_weight * similarity_kl_loss(student, teacher, temperature)
    if documents is None:
        raise ValueError(f"the {loss!r} loss ranks against a document set: pass documents=(student's, teacher's)")
    rank = ranking_kl_loss(student, teacher, documents[0], documents[1], temperature, teacher_boost)
    return rank if loss == "rank" else mse_loss(student, teacher) + kl_weight * rank
