"""The SGD optimizer of the training loop: `torch.optim.SGD` (fused), stepped without the import of
torch._dynamo that its method wrappers would otherwise make on their first call."""

from __future__ import annotations

import sys

import torch

from pipeline.config import RunConfig
from pipeline.training.schedule import BASE_LR


def unwrapped(function):
    while hasattr(function, "__wrapped__"):
        function = function.__wrapped__
    return function


SGD_UPDATE = unwrapped(torch.optim.SGD.step)  # SGD's own update, under the wrappers described below


def skip_dynamo_import() -> None:
    """torch.optim wraps its methods so that torch.compile does not trace them, and each wrapper imports
    torch._dynamo on its first call: that import takes about as long as `import torch` itself (measured
    side by side: 10-12 s against 12-15 s on this busy machine), a large share of a small table's run.
    Training never compiles the optimizer, so the wrappers are told their functions are hidden already
    (what their first call would record), and `sgd_step` calls SGD's update the way `step` does (no
    gradients recorded). A process that has imported dynamo anyway keeps torch's own path."""
    if "torch._dynamo" in sys.modules:
        return
    for cls in (torch.optim.Optimizer, torch.optim.SGD):
        for value in vars(cls).values():
            code = getattr(value, "__code__", None)
            if hasattr(value, "__wrapped__") and code is not None and "disable_fn" in code.co_varnames:
                value.__wrapped__.__dynamo_disable = value.__wrapped__


def sgd_step(optimizer: torch.optim.SGD) -> None:
    """`optimizer.step()`: the same update (the fused kernel), without the torch._dynamo import."""
    with torch.no_grad():
        SGD_UPDATE(optimizer)


def make_optimizer(parameters, config: RunConfig, lr: float | None = None) -> torch.optim.SGD:
    """SGD with the config's momentum and L2; `lr` the plan's peak (the schedule sets each
    step's). The fused kernel updates every parameter in one call (measured faster per step than the
    foreach and per-parameter forms on these sizes)."""
    skip_dynamo_import()
    return torch.optim.SGD(
        parameters,
        lr=lr or config.lr or BASE_LR,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        fused=True,
    )
