"""Encrypted inference with CKKS: the server computes on ciphertexts it cannot read.

The client makes keys sized for the model (:meth:`Context.for_model`), encrypts, and is the
only one who can decrypt; the server holds a :class:`PublicContext` and the compiled model.
"""

from veil.encrypted.he.ckks import (
    Context,
    HEError,
    Params,
    PublicContext,
    choose_params,
    ciphertexts_bytes,
)
from veil.encrypted.he.compiler import Compiled, Quadratic2, compile_model, torch_logits
from veil.encrypted.he.inference import Client, EncryptedModel, choose_packing
from veil.encrypted.he.packing import VectorEvaluator, VectorPlan, evaluate_batch, layout_vectors

__all__ = [
    "Client",
    "EncryptedModel",
    "choose_packing",
    "layout_vectors",
    "Compiled",
    "Context",
    "HEError",
    "Params",
    "PublicContext",
    "Quadratic2",
    "VectorEvaluator",
    "VectorPlan",
    "choose_params",
    "ciphertexts_bytes",
    "compile_model",
    "evaluate_batch",
    "torch_logits",
]
