"""Fine-tuning the top of a frozen backbone, and independent copies of a model (moved out of
:mod:`hm_utils.model.training`, which re-exports both, unchanged)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402


def _all_layers(model: keras.Model):
    """Every layer of ``model`` in order, nested models first as themselves, then their layers."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def set_trainable_top(backbone_model: keras.Model, n_layers: int) -> list[str]:
    """Fine-tune the top of a backbone: make its last ``n_layers`` layers that hold
    weights trainable, not counting BatchNormalization layers, which all stay frozen
    (they then normalise with their ImageNet statistics, as in inference; training
    them on small batches would spoil those). Everything else is frozen. Changes
    ``backbone_model`` in place; returns the names of the layers made trainable
    (``[]`` for ``n_layers`` 0, which freezes the whole backbone)."""
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    leaves = [layer for layer in _all_layers(backbone_model) if not isinstance(layer, keras.Model)]
    backbone_model.trainable = n_layers > 0
    for layer in leaves:
        layer.trainable = False
    weighted = [layer for layer in leaves
                if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)]
    top = weighted[len(weighted) - min(n_layers, len(weighted)):] if n_layers else []
    for layer in top:
        layer.trainable = True
    return [layer.name for layer in top]


def copy_model(model: keras.Model) -> keras.Model:
    """An independent copy of ``model`` (same architecture, same current weights, own
    variables, the same ``trainable`` flag on every layer, nested ones included)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.trainable = model.trainable
    for src, dst in zip(_all_layers(model), _all_layers(copy)):
        dst.trainable = src.trainable  # parents come before their layers: theirs is set last
    return copy
