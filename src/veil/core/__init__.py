"""The shared vocabulary every veil package imports: data, models, training, ledger, files, errors.

Submodules are imported on demand (``from veil.core import data``) so that light tools such
as ``veil --help`` never pay for torch.
"""
