"""TabularResNet and its self-supervised training.

The network (Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular Data"):
per-field categorical embeddings and the numeric columns → Linear to ``d_model`` → ``n_blocks``
pre-norm residual blocks (LayerNorm → Linear → ReLU → Dropout → Linear → Dropout, added to the
input) → LayerNorm → Linear to a ``d_out``-dim embedding.

Training needs no labels. SCARF (Bahri et al. 2022): a random subset of each row's fields is
replaced by values drawn from that field's empirical distribution (another row's value), and
InfoNCE pulls a row and its corrupted view together through a projection head that is dropped
after training. Invariance to single-field corruption alone teaches the network to ignore exactly
the single-field deviations many attacks are (QUALITY.md), so a denoising-reconstruction loss from
the embedding back to the clean fields is added: the embedding must keep what each field says.

Only training imports torch: a bundle keeps the weights as arrays (:func:`weights_of`), and scoring
runs the same network in numpy (scorer.network).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from scorer.features.encoder import EncodedBatch
from scorer.io import on_terminal
from scorer.network import ModelConfig
from scorer.threads import chosen

_THREADS = chosen()
if _THREADS is not None:  # an entry point set the threads before training imported torch
    torch.set_num_threads(_THREADS)


@dataclass(frozen=True)
class TrainConfig:
    """Self-supervised training. Defaults chosen by measurement (BENCHMARKS.md, "Training")."""

    epochs: int = 3
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 1e-5
    corruption_low: float = 0.3
    corruption_high: float = 0.6
    temperature: float = 0.2
    reconstruction_weight: float = 1.0
    validation_fraction: float = 0.1
    patience: int = 2
    max_rows: int = 100_000
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainReport:
    epochs_run: int = 0
    best_epoch: int = 0
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ResidualBlock(nn.Module):
    def __init__(self, d_model: int, d_hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_hidden)
        self.linear2 = nn.Linear(d_hidden, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.relu(self.linear1(self.norm(x))))
        out: torch.Tensor = x + self.dropout(self.linear2(h))
        return out


class TabularResNet(nn.Module):
    """Encoded OCSF rows → ``d_out``-dim embeddings."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.category_widths()
        self.embeddings = nn.ModuleList(
            nn.Embedding(card, width) for card, width in zip(config.cardinalities, widths, strict=True)
        )
        self.input = nn.Linear(max(config.n_numeric + sum(widths), 1), config.d_model)
        self.blocks = nn.Sequential(
            *[ResidualBlock(config.d_model, config.d_hidden, config.dropout) for _ in range(config.n_blocks)]
        )
        self.norm = nn.LayerNorm(config.d_model)
        self.output = nn.Linear(config.d_model, config.d_out)

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        parts = [emb(cat[:, j]) for j, emb in enumerate(self.embeddings)]
        parts.append(num)
        x = torch.cat(parts, dim=1)
        if x.shape[1] == 0:
            x = torch.zeros((cat.shape[0], 1), dtype=num.dtype)
        out: torch.Tensor = self.output(self.norm(self.blocks(self.input(x))))
        return out


class _Heads(nn.Module):
    """Training-only heads: projection for InfoNCE, reconstruction of clean fields."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.d_out
        self.projection = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.numeric = nn.Linear(d, config.n_numeric) if config.n_numeric else None
        self.categorical = nn.ModuleList(nn.Linear(d, card) for card in config.cardinalities)


def weights_of(model: TabularResNet) -> dict[str, npt.NDArray[np.float32]]:
    """The network's weights as float32 arrays, named as in its state dict: what a bundle keeps and
    :class:`scorer.network.InferenceNet` runs."""
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}


def _corrupt(
    cat: torch.Tensor,
    num: torch.Tensor,
    pool_cat: torch.Tensor,
    pool_num: torch.Tensor,
    rate: torch.Tensor,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace a random subset of fields by the same field of random rows of the pool (its marginal)."""
    n = cat.shape[0]
    fields_cat, fields_num = cat.shape[1], num.shape[1]
    mask = torch.rand((n, fields_cat + fields_num), generator=generator) < rate[:, None]
    donors = torch.randint(0, pool_cat.shape[0], (n,), generator=generator)
    cat = torch.where(mask[:, :fields_cat], pool_cat[donors], cat)
    num = torch.where(mask[:, fields_cat:], pool_num[donors], num)
    return cat, num


def _loss(
    model: TabularResNet,
    heads: _Heads,
    cat: torch.Tensor,
    num: torch.Tensor,
    config: TrainConfig,
    pool_cat: torch.Tensor,
    pool_num: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    n = cat.shape[0]
    rate = config.corruption_low + (config.corruption_high - config.corruption_low) * torch.rand(
        n, generator=generator
    )
    corrupt_cat, corrupt_num = _corrupt(cat, num, pool_cat, pool_num, rate, generator)
    anchor = model(cat, num)
    positive = model(corrupt_cat, corrupt_num)
    za = F.normalize(heads.projection(anchor), dim=1)
    zp = F.normalize(heads.projection(positive), dim=1)
    logits = za @ zp.T / config.temperature
    targets = torch.arange(n)
    contrastive = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
    if config.reconstruction_weight <= 0:
        return contrastive
    recon = torch.zeros(())
    terms = 0
    if heads.numeric is not None:
        recon = recon + F.mse_loss(heads.numeric(positive), num)
        terms += 1
    for j, head in enumerate(heads.categorical):
        recon = recon + F.cross_entropy(head(positive), cat[:, j])
        terms += 1
    return contrastive + config.reconstruction_weight * recon / max(terms, 1)


def train_model(
    batch: EncodedBatch, model_config: ModelConfig, config: TrainConfig, *, progress: bool = True
) -> tuple[TabularResNet, TrainReport]:
    """Train a TabularResNet on encoded rows without labels; keeps the best epoch on validation loss."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    rows = rng.permutation(len(batch))[: config.max_rows]
    n_val = max(1, int(len(rows) * config.validation_fraction)) if len(rows) >= 20 else 0
    val_rows, train_rows = rows[:n_val], rows[n_val:]
    cat = torch.from_numpy(batch.cat[train_rows])
    num = torch.from_numpy(batch.num[train_rows])
    val_cat = torch.from_numpy(batch.cat[val_rows])
    val_num = torch.from_numpy(batch.num[val_rows])

    model = TabularResNet(model_config)
    heads = _Heads(model_config)
    params = list(model.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batch_size = max(2, min(config.batch_size, len(train_rows)))
    steps_per_epoch = max(1, len(train_rows) // batch_size)
    total_steps = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    generator = torch.Generator().manual_seed(config.seed)
    report = TrainReport(rows=len(rows))
    best_state: dict[str, torch.Tensor] | None = None
    best_loss = math.inf
    bar = tqdm(  # not into a log of `train ... 2>file`
        total=total_steps,
        desc="training",
        unit="step",
        disable=not (progress and on_terminal(sys.stderr)),
        leave=False,
    )
    for epoch in range(config.epochs):
        model.train()
        heads.train()
        order = torch.randperm(len(train_rows), generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            loss = _loss(model, heads, cat[idx], num[idx], config, cat, num, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            scheduler.step()
            running += loss.item()
            bar.update(1)
        report.train_loss.append(running / steps_per_epoch)
        val_loss = _validation_loss(model, heads, val_cat, val_num, config, cat, num) if n_val else running
        report.validation_loss.append(val_loss)
        report.epochs_run = epoch + 1
        bar.set_postfix(epoch=epoch + 1, val_loss=f"{val_loss:.3f}")
        if val_loss < best_loss - 1e-4:
            best_loss, report.best_epoch = val_loss, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch + 1 - report.best_epoch >= config.patience:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    report.seconds = time.perf_counter() - started
    return model, report


def _validation_loss(
    model: TabularResNet,
    heads: _Heads,
    cat: torch.Tensor,
    num: torch.Tensor,
    config: TrainConfig,
    pool_cat: torch.Tensor,
    pool_num: torch.Tensor,
) -> float:
    model.eval()
    heads.eval()
    generator = torch.Generator().manual_seed(config.seed + 1)  # same corruption every epoch
    total, batches = 0.0, 0
    with torch.no_grad():
        for start in range(0, cat.shape[0], config.batch_size):
            end = start + config.batch_size
            total += float(
                _loss(model, heads, cat[start:end], num[start:end], config, pool_cat, pool_num, generator)
            )
            batches += 1
    return total / max(batches, 1)
