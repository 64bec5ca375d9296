import itertools

import torch

from veil.deid.crf import CRF


def _crf(k: int, seed: int = 0) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(k)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def _path_score(crf, em, path):
    s = crf.start[path[0]] + crf.end[path[-1]] + sum(em[t, p] for t, p in enumerate(path))
    return s + sum(crf.trans[a, b] for a, b in zip(path, path[1:], strict=False))


def test_nll_and_viterbi_match_brute_force_with_padding():
    k, t = 3, 4
    crf = _crf(k)
    em = torch.randn(2, t, k)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    tags = torch.tensor([[0, 2, 1, 1], [2, 0, 0, 0]])
    for b, n in enumerate((4, 2)):
        paths = list(itertools.product(range(k), repeat=n))
        scores = torch.stack([_path_score(crf, em[b], p) for p in paths])
        log_z = torch.logsumexp(scores, 0)
        want = log_z - _path_score(crf, em[b], tags[b, :n].tolist())
        got = crf.nll(em[b : b + 1], tags[b : b + 1], mask[b : b + 1])
        assert torch.allclose(got, want, atol=1e-5)
        best = list(paths[int(scores.argmax())])
        assert crf.decode(em[b : b + 1], mask[b : b + 1])[0] == best
    assert [len(p) for p in crf.decode(em, mask)] == [4, 2]


def test_softmax_margin_adds_each_paths_cost_inside_the_partition_only():
    k, t = 3, 4
    crf = _crf(k, seed=1)
    em = torch.randn(2, t, k)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    tags = torch.tensor([[1, 0, 2, 2], [0, 1, 0, 0]])
    cost = torch.rand(k, k) * 3
    cost.fill_diagonal_(0)  # the gold path costs nothing
    for b, n in enumerate((4, 3)):
        gold = tags[b, :n].tolist()
        paths = list(itertools.product(range(k), repeat=n))
        scores = torch.stack(
            [
                _path_score(crf, em[b], p) + sum(cost[g, c] for g, c in zip(gold, p, strict=True))
                for p in paths
            ]
        )
        want = torch.logsumexp(scores, 0) - _path_score(crf, em[b], gold)
        got = crf.nll(em[b : b + 1], tags[b : b + 1], mask[b : b + 1], cost)
        assert torch.allclose(got, want, atol=1e-5)
        assert got > crf.nll(em[b : b + 1], tags[b : b + 1], mask[b : b + 1])
    zero = crf.nll(em, tags, mask, torch.zeros(k, k))
    assert torch.allclose(zero, crf.nll(em, tags, mask))


def test_nll_is_positive_and_trains_towards_the_gold_path():
    crf = _crf(4, seed=1)
    em = torch.zeros(1, 5, 4, requires_grad=True)
    tags = torch.tensor([[1, 2, 2, 0, 3]])
    mask = torch.ones(1, 5, dtype=torch.bool)
    opt = torch.optim.SGD([em, *crf.parameters()], lr=0.5)
    first = float(crf.nll(em, tags, mask))
    for _ in range(50):
        opt.zero_grad()
        loss = crf.nll(em, tags, mask)
        loss.backward()
        opt.step()
    assert first > 0 and float(loss) < 0.1 * first
    assert crf.decode(em.detach(), mask)[0] == tags[0].tolist()
