"""A tabular MLP for `veil enclave`: rows are float32 features followed by the label.

Single data set: ``train(data) -> model``. Several sites: ``load_shard`` and ``local`` (one
local epoch per round from the global parameters). Serving: ``load`` and ``predict``
(float32 scores). Settings are the module constants (the scenario step rewrites them).
"""

import numpy as np
import torch

FEATURES = 30
CLASSES = 2
HIDDEN = 32
EPOCHS = 30
LR = 0.01


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES)
    )


def _rows(data):
    rows = np.frombuffer(data, dtype=np.float32).reshape(-1, FEATURES + 1)
    x = torch.from_numpy(rows[:, :FEATURES].copy())
    return x, torch.from_numpy(rows[:, FEATURES].copy()).long()


def _epochs(net, x, y, epochs):
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = order[i : i + 32]
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def _flat(net):
    return torch.cat([p.detach().flatten() for p in net.parameters()]).numpy().tobytes()


def _set(net, blob):
    torch.nn.utils.vector_to_parameters(torch.from_numpy(np.frombuffer(blob, np.float32).copy()),
                                        net.parameters())  # fmt: skip


def train(data):
    net = _net()
    _epochs(net, *_rows(data), EPOCHS)
    return _flat(net)


def load_shard(shard):
    return {"net": _net(), "rows": _rows(shard)}


def local(state, params):
    if not params:
        return _flat(state["net"])
    _set(state["net"], params)
    _epochs(state["net"], *state["rows"], 1)
    return _flat(state["net"])


def load(model):
    net = _net()
    _set(net, model)
    return net.eval()


def predict(net, request):
    x = torch.from_numpy(np.frombuffer(request, dtype=np.float32).reshape(-1, FEATURES).copy())
    with torch.no_grad():
        return net(x).numpy().astype(np.float32).tobytes()
