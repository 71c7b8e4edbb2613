"""The network: the numpy forward pass that scoring runs computes what the trained torch model computes."""

from __future__ import annotations

import io
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

from scorer.detector import Detector
from scorer.model import TabularResNet, TrainConfig, train_model, weights_of
from scorer.network import InferenceNet, ModelConfig, embed


def _inference_net(model: TabularResNet) -> InferenceNet:
    return InferenceNet(model.config, weights_of(model))


def _torch_embed(model: TabularResNet, cat: np.ndarray, num: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.inference_mode():
        return model(torch.from_numpy(cat), torch.from_numpy(num)).numpy()


def test_inference_net_equals_the_trained_torch_model(
    fitted_detector: Detector, held_out_events: list[Any]
) -> None:
    encoded = fitted_detector.encoder.encode(held_out_events[:500])
    model = TabularResNet(fitted_detector.net.config)  # the trained network, back in torch
    model.load_state_dict({k: torch.from_numpy(v) for k, v in fitted_detector.net.weights.items()})
    expected = _torch_embed(model, encoded.cat, encoded.num)
    np.testing.assert_allclose(embed(fitted_detector.net, encoded), expected, atol=1e-5)
    one = encoded.take(np.array([7]))  # the single-event path the service takes most
    np.testing.assert_allclose(embed(fitted_detector.net, one), expected[7:8], atol=1e-5)


def test_inference_net_of_random_weights_and_shapes() -> None:
    torch.manual_seed(3)
    model = TabularResNet(
        ModelConfig(cardinalities=(5, 300, 2), n_numeric=7, d_model=32, n_blocks=3, d_out=16)
    )
    rng = np.random.default_rng(0)
    cat = np.stack([rng.integers(0, c, 64) for c in (5, 300, 2)], axis=1).astype(np.int64)
    num = rng.standard_normal((64, 7)).astype(np.float32)
    assert {k: v.shape for k, v in weights_of(model).items()} == model.config.weight_shapes()
    got = _inference_net(model)(cat, num)
    assert got.dtype == np.float32
    assert got.shape == (64, 16)
    np.testing.assert_allclose(got, _torch_embed(model, cat, num), atol=1e-5)


def test_a_model_without_inputs_still_embeds() -> None:
    model = TabularResNet(ModelConfig(cardinalities=(), n_numeric=0, d_out=8))
    cat = np.zeros((3, 0), dtype=np.int64)
    num = np.zeros((3, 0), dtype=np.float32)
    np.testing.assert_allclose(_inference_net(model)(cat, num), _torch_embed(model, cat, num), atol=1e-6)


def test_training_imported_after_the_threads_were_set_keeps_their_count() -> None:
    """Entry points set the threads before anything imports torch (scoring never does); training,
    imported later, must not run torch on every core while faiss and BLAS keep to the count."""
    code = (
        "import sys\n"
        "from scorer.threads import set_threads\n"
        "set_threads(1)\n"
        "assert 'torch' not in sys.modules\n"
        "import scorer.model, torch\n"
        "print(torch.get_num_threads())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["1"]


def test_training_draws_its_progress_bar_only_on_a_terminal(
    fitted_detector: Detector, held_out_events: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train ... 2>train.log` filled the log with a bar redrawn with \\r (`score` was mended first)."""
    encoded = fitted_detector.encoder.encode(held_out_events[:200])
    architecture = fitted_detector.net.config

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stderr, progress, drawn in [
        (io.StringIO(), True, False),
        (Terminal(), True, True),
        (Terminal(), False, False),  # --quiet
    ]:
        monkeypatch.setattr(sys, "stderr", stderr)
        train_model(encoded, architecture, TrainConfig(epochs=1, batch_size=64), progress=progress)
        monkeypatch.undo()
        assert ("training" in stderr.getvalue()) is drawn, stderr.getvalue()
