"""Reference-model inference without a second model.

The reference is the policy's own module with a snapshot's trainable tensors
swapped in through ``torch.func.functional_call``: the frozen weights (the
bulk of a UNet) exist once, the module's own parameters are never touched,
and autograd is off. The accelerator holds one copy of the chosen
snapshot's trainable tensors (not of the frozen weights) while it is in use.
A reference always runs in eval mode (deterministic), whatever mode the
policy trains in.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call


class SwappedModule:
    """Calls ``module`` as if its parameters named in ``tensors`` had those values."""

    def __init__(self, module: nn.Module, tensors: dict[str, torch.Tensor]):
        params = dict(module.named_parameters())
        unknown = sorted(set(tensors) - set(params))
        if unknown:
            raise KeyError(f"snapshot has tensors the module does not: {unknown[:3]}...")
        self.module = module
        # One copy on the module's device and dtype per reference choice, reused for every call.
        self.tensors = {
            name: tensor.to(device=params[name].device, dtype=params[name].dtype, non_blocking=True)
            for name, tensor in tensors.items()
        }

    def __call__(self, *args, **kwargs):
        with eval_mode(self.module):  # a reference is a fixed function: no dropout, whatever the policy's mode
            return functional_call(self.module, self.tensors, args, kwargs, strict=False)


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """``module`` in eval mode inside the block; every submodule's own mode is restored after."""
    modes = [(child, child.training) for child in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for child, training in modes:
            child.training = training


@contextlib.contextmanager
def inference_mode(autocast_dtype: torch.dtype | None, device: torch.device):
    """No autograd, and autocast to the inference dtype when mixed precision is on."""
    with torch.no_grad():
        if autocast_dtype is None:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                yield

