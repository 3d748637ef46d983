"""The seed project's two networks, rebuilt with random weights for speed comparisons.

The seed (a Kaggle notebook on the same LGG data) used an ImageNet ResNet50 with
a dense head and a 16-to-256-filter ResUNet. ImageNet weights cannot be
downloaded here and do not change the cost of a forward pass, so both are
built with ``weights=None``. Only :mod:`benchmarks.bench_pipeline` uses them.
"""

from __future__ import annotations

import keras
from keras import layers


def build_seed_classifier(input_size: int = 256) -> keras.Model:
    """ResNet50 + AveragePooling(4) + Dense(256)/Dropout twice + softmax(2), as in the seed."""
    inputs = keras.Input((input_size, input_size, 3))
    backbone = keras.applications.ResNet50(weights=None, include_top=False, input_tensor=inputs)
    x = layers.AveragePooling2D(pool_size=(4, 4))(backbone.output)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="seed_resnet50")


def _seed_resblock(x, filters: int):
    shortcut = layers.Conv2D(filters, 1, kernel_initializer="he_normal")(x)
    shortcut = layers.BatchNormalization()(shortcut)
    y = layers.Conv2D(filters, 1, kernel_initializer="he_normal")(x)
    y = layers.BatchNormalization()(y)
    y = layers.Activation("relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", kernel_initializer="he_normal")(y)
    y = layers.BatchNormalization()(y)
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


def build_seed_resunet(input_size: int = 256) -> keras.Model:
    """The seed's ResUNet: 16-filter stem, residual levels 32-64-128, 256 bottleneck."""
    inputs = keras.Input((input_size, input_size, 3))
    x = layers.Conv2D(16, 3, activation="relu", padding="same", kernel_initializer="he_normal")(
        inputs
    )
    x = layers.BatchNormalization()(x)
    x = layers.Conv2D(16, 3, activation="relu", padding="same", kernel_initializer="he_normal")(x)
    level1 = layers.BatchNormalization()(x)
    level2 = _seed_resblock(layers.MaxPooling2D(2)(level1), 32)
    level3 = _seed_resblock(layers.MaxPooling2D(2)(level2), 64)
    level4 = _seed_resblock(layers.MaxPooling2D(2)(level3), 128)
    bottom = _seed_resblock(layers.MaxPooling2D(2)(level4), 256)
    x = bottom
    for skip, filters in ((level4, 128), (level3, 64), (level2, 32), (level1, 16)):
        x = layers.Concatenate()([layers.UpSampling2D(2)(x), skip])
        x = _seed_resblock(x, filters)
    outputs = layers.Conv2D(1, 1, padding="same", activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="seed_resunet")
