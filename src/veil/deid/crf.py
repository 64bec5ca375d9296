"""A linear-chain conditional random field: negative log-likelihood and Viterbi decoding.

Emissions ``(B, T, K)`` come from the network; the CRF adds learned start, end and
tag-to-tag transition scores. Sequences are left-aligned; ``mask`` marks real tokens.
"""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    def __init__(self, n_tags: int):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(n_tags))
        self.end = nn.Parameter(torch.zeros(n_tags))
        self.trans = nn.Parameter(torch.zeros(n_tags, n_tags))  # trans[i, j]: tag i -> tag j

    def nll(
        self,
        em: torch.Tensor,
        tags: torch.Tensor,
        mask: torch.Tensor,
        cost: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean over the batch of -log p(tags | emissions).

        With ``cost`` (K, K), the softmax-margin loss (Gimpel & Smith 2010): every candidate
        tag's emission is raised by ``cost[gold, candidate]`` inside the partition function
        only, so a sequence is pushed to beat each wrong one by a margin that grows with the
        cost of that mistake (for recall: missing PHI costs more than a false alarm).
        """
        augmented = em if cost is None else em + cost[tags]
        return (self._log_partition(augmented, mask) - self._score(em, tags, mask)).mean()

    def _score(self, em, tags, mask) -> torch.Tensor:
        m = mask.float()
        emit = em.gather(2, tags.unsqueeze(2)).squeeze(2)
        score = self.start[tags[:, 0]] + (emit * m).sum(1)
        score = score + (self.trans[tags[:, :-1], tags[:, 1:]] * m[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1).clamp(min=0)).squeeze(1)
        return score + self.end[last]

    def _log_partition(self, em, mask) -> torch.Tensor:
        alpha = self.start + em[:, 0]
        for t in range(1, em.shape[1]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + self.trans + em[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t : t + 1], nxt, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    @torch.no_grad()
    def decode(self, em: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The most likely tag sequence of each sequence (its real tokens only)."""
        score = self.start + em[:, 0]
        back = []
        # into[j, i]: tag i -> tag j, so that the max over i runs along memory (faster)
        into = self.trans.T.contiguous()
        for t in range(1, em.shape[1]):
            best, idx = (score.unsqueeze(1) + into).max(dim=2)
            nxt = best + em[:, t]
            keep = mask[:, t : t + 1]
            score = torch.where(keep, nxt, score)
            back.append(torch.where(keep, idx, torch.arange(em.shape[2]).expand_as(idx)))
        score = score + self.end
        last = score.argmax(1)
        paths = [last]
        for idx in reversed(back):
            last = idx.gather(1, last.unsqueeze(1)).squeeze(1)
            paths.append(last)
        full = torch.stack(paths[::-1], dim=1).tolist()
        lengths = mask.sum(1).tolist()
        return [row[:n] for row, n in zip(full, lengths, strict=True)]
