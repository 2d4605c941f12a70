"""The deployable module: preprocessing → MLP → task head, and the spec that rebuilds it.

Raw features go in (numbers with NaN for missing values, category codes); the graph imputes, standardizes
and one-hot encodes them with training statistics, so an exported model needs no preprocessing code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from contract.features import Feature
from pipeline.tasks import TASKS
from pipeline.training.dates import DateFeatures

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "none": None}


@dataclass(kw_only=True)
class ModelSpec:
    task: str  # a key of pipeline.tasks.TASKS
    features: list[Feature]  # raw input columns, in input order
    hidden: list[int]  # hidden layer sizes
    activation: str  # key of ACTIVATIONS
    dropout: float  # after each hidden activation
    n_outputs: int  # width of the last Linear layer
    threshold: float = 0.5  # binary decision threshold on the probability
    target_mean: list[float] = field(default_factory=list)  # regression: de-standardization
    target_std: list[float] = field(default_factory=list)
    clip: float = 0.0  # standardized numbers are soft-clipped to about ±clip (0: not clipped)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelSpec:
        features = [Feature.from_dict(f) for f in values["features"]]
        return cls(**{**values, "features": features})


class Preprocess(nn.Module):
    """(batch, n_features) raw → (batch, n_encoded): standardized numerics (booleans are 0/1 numbers),
    then one-hot categories, then each date's derived columns (`pipeline.training.dates`)."""

    def __init__(self, features: list[Feature], clip: float = 0.0):
        super().__init__()
        self.clip = clip
        numeric = [j for j, f in enumerate(features) if f.kind in ("numeric", "boolean")]
        # One slot per (categorical column, category): the column is compared with the slot's code.
        slots = [(j, c) for j, f in enumerate(features) if f.kind == "categorical" for c in f.categories]
        self.has_numeric, self.has_categorical = bool(numeric), bool(slots)
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long))
        self.register_buffer("mean", torch.tensor([features[j].mean for j in numeric], dtype=torch.float32))
        self.register_buffer("std", torch.tensor([features[j].std for j in numeric], dtype=torch.float32))
        self.register_buffer("slot_index", torch.tensor([j for j, _ in slots], dtype=torch.long))
        self.register_buffer("slot_code", torch.tensor([c for _, c in slots], dtype=torch.float32))
        self.dates = DateFeatures(features)
        self.n_encoded = len(numeric) + len(slots) + self.dates.width

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.has_numeric:
            numeric = features[:, self.numeric_index]
            numeric = torch.where(torch.isnan(numeric), self.mean, numeric)
            z = (numeric - self.mean) / self.std
            if self.clip:  # smooth: about z near 0, tends to ±clip far out (one outlier cannot dominate)
                z = z / torch.sqrt(1 + (z / self.clip) ** 2)
            parts.append(z)
        if self.has_categorical:
            # NaN and unseen codes match no slot, so they encode as all zeros.
            parts.append((features[:, self.slot_index] == self.slot_code).to(features.dtype))
        if self.dates.width:
            parts.append(self.dates(features))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def build_mlp(n_in: int, hidden: list[int], activation: str, dropout: float, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers.append(nn.Linear(n_in, width))
        if ACTIVATIONS[activation] is not None:
            layers.append(ACTIVATIONS[activation]())
        if dropout:
            layers.append(nn.Dropout(dropout))
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class Head(nn.Module):
    """Logits → the task's graph outputs (see `pipeline.tasks`)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.task = TASKS[spec.task]
        self.threshold = spec.threshold
        n = spec.n_outputs
        self.register_buffer("target_mean", torch.tensor(spec.target_mean or [0.0] * n, dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor(spec.target_std or [1.0] * n, dtype=torch.float32))

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.task.outputs(logits, self.threshold, self.target_mean, self.target_std)


class TabularModel(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.preprocess = Preprocess(spec.features, spec.clip)
        self.mlp = build_mlp(
            self.preprocess.n_encoded, spec.hidden, spec.activation, spec.dropout, spec.n_outputs
        )
        self.head = Head(spec)

    @property
    def output_names(self) -> tuple[str, ...]:
        return TASKS[self.spec.task].output_names

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.head(self.mlp(self.preprocess(features)))
