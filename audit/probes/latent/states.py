"""Hidden states at decision points, and descriptive comparisons of two representations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score
from transformers import PreTrainedModel

from audit.probes.decision import EncodedDecision
from audit.probes.propensity import pad_left


def middle_layer(model: PreTrainedModel) -> int:
    """Index into `hidden_states` of the residual stream after the middle decoder layer."""
    return (int(model.config.num_hidden_layers) + 1) // 2


@torch.inference_mode()
def decision_states(
    model: PreTrainedModel,
    decisions: Sequence[EncodedDecision],
    pad_id: int,
    batch_size: int = 16,
) -> np.ndarray:
    """Hidden states (n, L + 1, hidden) at each prompt's last token, every `hidden_states`
    entry (index 0: the embeddings; L decoder layers), in float32."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(decisions)), key=lambda i: len(decisions[i].prompt_ids))
    states: list[np.ndarray | None] = [None] * len(decisions)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        input_ids, attention_mask, position_ids = pad_left(
            [decisions[i].prompt_ids for i in rows], pad_id, device
        )
        hidden = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
            logits_to_keep=1,
        ).hidden_states
        last = torch.stack([layer[:, -1] for layer in hidden], dim=1).float().cpu().numpy()
        for offset, row in enumerate(rows):
            states[row] = last[offset]
    return np.stack(states)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two representations of the same n points: (n, p) and (n, q).

    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred Xc, Yc (Kornblith et
    al. 2019); 1 for identical representations, invariant to orthogonal maps and isotropic
    scaling; 0 when either representation is constant.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need two (n, features) arrays with the same n, got {x.shape}, {y.shape}")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    norms = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    if norms == 0.0:
        return 0.0
    return float(np.linalg.norm(y.T @ x) ** 2 / norms)


def cluster_separation(states: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(Davies-Bouldin, Calinski-Harabasz) of `states` split by binary `labels`."""
    return (
        float(davies_bouldin_score(states, labels)),
        float(calinski_harabasz_score(states, labels)),
    )
