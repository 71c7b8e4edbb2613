"""The trained network's forward pass in numpy: what scoring runs, without torch.

Training (scorer.model) builds a TabularResNet in torch; a bundle keeps its architecture
(``ModelConfig``) and its weights as plain arrays. Scoring computes the same function as
``TabularResNet.eval()`` (tests hold them equal to 1e-5) in numpy: four times faster than torch on
one event and as fast on large batches (BENCHMARKS.md), and a process that only scores never
imports torch, which costs 1.2 s and about 200 MB at start-up (every file-scoring worker, every
serving process).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from scorer.features.encoder import EncodedBatch


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. Defaults chosen by measurement (BENCHMARKS.md, "Model size")."""

    cardinalities: tuple[int, ...]
    n_numeric: int
    d_model: int = 64
    n_blocks: int = 2
    d_hidden_factor: float = 2.0
    d_category: int = 16
    d_out: int = 64
    dropout: float = 0.1

    @property
    def d_hidden(self) -> int:
        return int(self.d_model * self.d_hidden_factor)

    def category_widths(self) -> list[int]:
        return [min(self.d_category, card) for card in self.cardinalities]

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """The name and shape of every weight of a network of this architecture (its torch state dict)."""
        d_in = self.n_numeric + sum(self.category_widths())
        shapes: dict[str, tuple[int, ...]] = {
            f"embeddings.{j}.weight": (card, width)
            for j, (card, width) in enumerate(zip(self.cardinalities, self.category_widths(), strict=True))
        }
        shapes |= {"input.weight": (self.d_model, max(d_in, 1)), "input.bias": (self.d_model,)}
        for i in range(self.n_blocks):
            shapes |= {
                f"blocks.{i}.norm.weight": (self.d_model,),
                f"blocks.{i}.norm.bias": (self.d_model,),
                f"blocks.{i}.linear1.weight": (self.d_hidden, self.d_model),
                f"blocks.{i}.linear1.bias": (self.d_hidden,),
                f"blocks.{i}.linear2.weight": (self.d_model, self.d_hidden),
                f"blocks.{i}.linear2.bias": (self.d_model,),
            }
        shapes |= {
            "norm.weight": (self.d_model,),
            "norm.bias": (self.d_model,),
            "output.weight": (self.d_out, self.d_model),
            "output.bias": (self.d_out,),
        }
        return shapes

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cardinalities"] = list(self.cardinalities)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        values = dict(data)
        values["cardinalities"] = tuple(int(c) for c in values["cardinalities"])
        return cls(**values)


class InferenceNet:
    """A trained TabularResNet's forward pass, from its architecture and weights (float32 arrays
    named as in its state dict; ``weights`` keeps them as given, for saving)."""

    def __init__(self, config: ModelConfig, weights: Mapping[str, npt.NDArray[np.floating]]) -> None:
        if len(config.cardinalities) + 6 * config.n_blocks + 6 != len(weights):  # before listing them:
            raise ValueError(  # n_blocks 3,000,000 took 100 s and 4.8 GB to list
                f"the network's {len(weights)} weights do not match its architecture ({config.n_blocks} blocks)"
            )
        expected = config.weight_shapes()
        if set(weights) != set(expected):
            missing, extra = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
            raise ValueError(
                f"the network's weights do not match its architecture (missing {missing[:3]}, unexpected {extra[:3]})"
            )
        for name, shape in expected.items():
            if weights[name].shape != shape:
                raise ValueError(
                    f"weight {name} has shape {weights[name].shape}, the architecture says {shape}"
                )
            if not np.isfinite(weights[name]).all():  # one NaN made every score NaN, nothing flagged
                raise ValueError(f"weight {name} holds a value that is not a finite number")
        self.config = config
        self.weights = {name: np.asarray(weights[name], dtype=np.float32) for name in expected}
        self.d_out = config.d_out
        state = self.weights
        # The input layer applied to a concatenation of per-field embeddings is a sum of per-field
        # products: each field's table is multiplied by its slice of the input weights once, here,
        # and a row's input is one gather and a sum over its fields.
        tables = [state[f"embeddings.{j}.weight"] for j in range(len(config.cardinalities))]
        weight = state["input.weight"].T  # (embedding widths + numeric columns, d_model)
        projected, rows, start = [], [0], 0
        for table in tables:
            projected.append(table @ weight[start : start + table.shape[1]])
            start += table.shape[1]
            rows.append(rows[-1] + table.shape[0])
        self.projected = (
            np.ascontiguousarray(np.concatenate(projected), dtype=np.float32) if projected else None
        )
        self.offsets = np.asarray(rows[:-1], dtype=np.int64)
        self.numeric_input = np.ascontiguousarray(weight[start:])
        self.input_bias = state["input.bias"]
        self.blocks = [
            (
                state[f"blocks.{i}.norm.weight"],
                state[f"blocks.{i}.norm.bias"],
                np.ascontiguousarray(state[f"blocks.{i}.linear1.weight"].T),
                state[f"blocks.{i}.linear1.bias"],
                np.ascontiguousarray(state[f"blocks.{i}.linear2.weight"].T),
                state[f"blocks.{i}.linear2.bias"],
            )
            for i in range(config.n_blocks)
        ]
        self.norm = (state["norm.weight"], state["norm.bias"])
        self.output = (np.ascontiguousarray(state["output.weight"].T), state["output.bias"])

    def __call__(self, cat: npt.NDArray[np.int64], num: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        x = np.broadcast_to(self.input_bias, (cat.shape[0], self.input_bias.shape[0]))
        if num.shape[1]:  # (a model without inputs has one zero input column, never fed)
            x = x + num @ self.numeric_input
        if self.projected is not None:
            x = x + self.projected[cat + self.offsets].sum(axis=1)
        for norm_w, norm_b, w1, b1, w2, b2 in self.blocks:
            hidden = np.maximum(_layer_norm(x, norm_w, norm_b) @ w1 + b1, 0.0)
            x = x + (hidden @ w2 + b2)
        out: npt.NDArray[np.float32] = _layer_norm(x, *self.norm) @ self.output[0] + self.output[1]
        return out


def _layer_norm(
    x: npt.NDArray[np.float32],
    weight: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    eps: float = 1e-5,
) -> npt.NDArray[np.float32]:
    width = x.shape[1]  # sums over it, not .mean(): the same values without numpy's wrapper (~7 µs a call)
    centred = x - x.sum(axis=1, keepdims=True) / width
    variance = (centred * centred).sum(axis=1, keepdims=True) / width
    out: npt.NDArray[np.float32] = centred / np.sqrt(variance + eps) * weight + bias
    return out


def embed(net: InferenceNet, batch: EncodedBatch, *, chunk: int = 4096) -> npt.NDArray[np.float32]:
    """Embeddings of a batch as float32, in chunks."""
    out = np.empty((len(batch), net.d_out), dtype=np.float32)
    for start in range(0, len(batch), chunk):
        out[start : start + chunk] = net(batch.cat[start : start + chunk], batch.num[start : start + chunk])
    return out
