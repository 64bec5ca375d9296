"""veil's Flower ClientApp: one participant, whose private state lives in the node process.

DSSGD needs each participant's local model to persist between exchanges, so the ClientApp
runs inside a long-lived veil node process (:mod:`veil.collab.flower.node`) that keeps the
:class:`~veil.collab.participant.Participant` between messages. Message types:

- ``query.setup``: the run's config (JSON); the node builds its participant from its own
  shard (``partition-id`` in the SuperNode's node config) and answers with its size;
- ``train.dssgd``: a download; answers with the sparse update (and its local test accuracy);
- ``train.fedavg``: the global model; answers with the dense Δw;
- ``train`` (Flower's legacy fit message, under the SecAgg+ mod): FedAvg with secure
  aggregation; answers with the masked, quantized local model.
"""

from __future__ import annotations

import json

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from veil.collab.flower.messages import read_download, update_content
from veil.core.errors import VeilError

app = ClientApp()
_node: dict = {}  # this process's participant, set by query.setup


@app.query("setup")
def setup(msg: Message, context: Context) -> Message:
    from veil.collab.participant import flat
    from veil.collab.runner import CollabConfig, participants_for, prepared_for

    meta = msg.content["meta"]
    cfg = CollabConfig.from_dict(json.loads(str(meta["config"])))
    pid = int(context.node_config["partition-id"])
    prepared = prepared_for(cfg)
    (participant,) = participants_for(cfg, prepared, [pid])
    eps_u = float(meta["eps_u"]) if "eps_u" in meta else None
    _node.clear()
    size = flat(participant.model).size
    _node.update(cfg=cfg, participant=participant, test=prepared.test, eps_u=eps_u, size=size)
    reply = ConfigRecord({"pid": pid, "n_samples": len(participant.data)})
    return Message(RecordDict({"meta": reply}), reply_to=msg)


def _participant():
    if "participant" not in _node:
        raise VeilError("this node has not been set up for the run (no query.setup yet)")
    return _node["participant"]


@app.train("dssgd")
def dssgd_exchange(msg: Message, context: Context) -> Message:
    from veil.collab import dssgd
    from veil.collab.server import Download
    from veil.core.train import evaluate

    p = _participant()
    indices, values, version, _ = read_download(msg.content)
    download = Download(indices, values, version, _node["size"])
    update = dssgd.exchange(p, download, _node["cfg"].dssgd, _node["eps_u"])
    accuracy = evaluate(p.model, _node["test"], device="cpu")["accuracy"]
    content = update_content(update, _node["size"], accuracy=accuracy, steps=p.steps_taken)
    return Message(content, reply_to=msg)


@app.train("fedavg")
def fedavg_exchange(msg: Message, context: Context) -> Message:
    from veil.collab.participant import set_flat
    from veil.collab.updates import SparseUpdate

    p = _participant()
    _, values, version, _ = read_download(msg.content)
    set_flat(p.model, values)
    update = SparseUpdate.dense(p.pid, p.train(), version, len(p.data))
    content = update_content(update, values.size, steps=p.steps_taken)
    return Message(content, reply_to=msg)


def _secure_mods():
    from flwr.client.mod import secaggplus_mod

    return [secaggplus_mod]


@app.train(mods=_secure_mods())
def secure_fedavg_exchange(msg: Message, context: Context) -> Message:
    """FedAvg under Flower's SecAgg+ (legacy fit messages): the mod masks what this returns,
    so the server only ever sees the sum over clients."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.compat.common import recorddict_compat as compat

    from veil.collab.participant import flat, set_flat

    p = _participant()
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    (params,) = parameters_to_ndarrays(fitins.parameters)
    set_flat(p.model, params)
    p.train()
    fitres = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([flat(p.model)]), len(p.data), {})
    return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=msg)
