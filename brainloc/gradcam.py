"""Grad-CAM heatmaps of the classifier (Selvaraju et al., ICCV 2017).

The heatmap shows which parts of a slice pushed the classifier towards
"tumor": the feature maps of one late convolutional layer, weighted by the
spatially averaged gradient of the tumor score, rectified and scaled to [0, 1].

The layer is the one named by the classifier metadata (``gradcam_layer``), else
a layer called ``gradcam_target`` (what :mod:`brainloc.modeling` builds), else
the last layer with a 4-D output that is not a pooling layer. The score is the
tumor logit when the model ends in a sigmoid/softmax Dense layer (a saturated
probability has no gradient), otherwise the tumor probability itself.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

DEFAULT_LAYER_NAME = "gradcam_target"


def find_gradcam_layer(model: keras.Model, preferred: str | None = None) -> str:
    """Name of the layer whose feature maps Grad-CAM weighs.

    Raises:
        ValueError: ``preferred`` is not a layer of the model, or no layer has a
            4-D (N, h, w, c) output.
    """
    names = {layer.name for layer in model.layers}
    if preferred:
        if preferred not in names:
            raise ValueError(f"gradcam layer {preferred!r} is not in model {model.name!r}")
        return preferred
    if DEFAULT_LAYER_NAME in names:
        return DEFAULT_LAYER_NAME
    for layer in reversed(model.layers):
        if "Pooling" in type(layer).__name__ or isinstance(layer, keras.layers.InputLayer):
            continue
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is not None and len(shape) == 4:
            return layer.name
    raise ValueError(f"model {model.name!r} has no layer with 4-D feature maps for Grad-CAM")


class GradCam:
    """Grad-CAM for one classifier; build once, then call per slice batch.

    Args:
        model: a Keras classifier mapping (N, S, S, 3) to (N, 1) sigmoid or
            (N, 2) softmax (class 1 = tumor).
        layer_name: see :func:`find_gradcam_layer`.
    """

    def __init__(self, model: keras.Model, layer_name: str | None = None):
        self.layer_name = find_gradcam_layer(model, layer_name)
        head = model.layers[-1]
        activation = getattr(getattr(head, "activation", None), "__name__", "")
        # Reading the last Dense layer's input lets us recompute its logits.
        self._dense_head = isinstance(head, keras.layers.Dense) and activation in (
            "sigmoid",
            "softmax",
        )
        outputs = [model.get_layer(self.layer_name).output]
        outputs.append(head.input if self._dense_head else model.output)
        self._model = keras.Model(model.inputs, outputs)
        self._head = head

    def _score(self, last):
        if not self._dense_head:
            return last[:, -1]
        logits = tf.matmul(last, self._head.kernel)
        if self._head.use_bias:
            logits = logits + self._head.bias
        return logits[:, -1]

    def __call__(self, batch: np.ndarray, output_shape: tuple[int, int]) -> np.ndarray:
        """Heatmaps for a prepared batch.

        Args:
            batch: float32 (N, S, S, 3), already through
                :func:`brainloc.preprocessing.prepare_images`.
            output_shape: (H, W) of the original slices.

        Returns:
            float32 (N, H, W) in [0, 1]; all zeros where nothing pointed to tumor.
        """
        inputs = tf.convert_to_tensor(batch, dtype=tf.float32)
        with tf.GradientTape() as tape:
            features, last = self._model(inputs, training=False)
            score = self._score(last)
        gradients = tape.gradient(score, features)
        weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(features * weights, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, output_shape, method="bilinear")[..., 0].numpy()
        peaks = cam.reshape(cam.shape[0], -1).max(axis=1)
        scale = np.where(peaks > 0, peaks, 1.0)[:, None, None]
        return np.clip(cam / scale, 0.0, 1.0).astype(np.float32)
