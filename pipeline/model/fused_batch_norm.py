"""Keras' ``BatchNormalization`` as TensorFlow's one fused op per call (issue 21.4).

Keras 3 writes batch normalization in ``keras.ops``: the batch moments, the moving-average updates
and the normalization are about 88 small ops per layer in a traced training step and its gradient
(the recipe's four layers: 352 of its training step's 685 ops). Tracing those ops is most of what a
trial pays before its first epoch runs, and each is run one by one at every step. TensorFlow's
``FusedBatchNormV3`` computes the same normalization in one op, and its gradient in one more (the
recipe's training step: 445 ops in all).

The subclass keeps Keras' variables, config and defaults; only ``call`` changes, and only where the
fused kernel computes what Keras computes: 4-D channels-last inputs under the TensorFlow backend,
without a mask, renorm, synchronized statistics or a distribution strategy (anything else runs
Keras' own ``call``). The kernel returns the batch variance with Bessel's correction, n/(n-1); the
moving variance is updated with the uncorrected variance, as Keras does. Results equal Keras' to
float32 rounding.

A file holding this layer needs the class registered to load (``pipeline.model`` imported); the
model users get is exported with Keras' own layer (``with_keras_batch_norm``), so ``mlflow models
serve`` loads it without this package.
"""

from __future__ import annotations

from typing import Any

import keras

PACKAGE = "pipeline"
MIN_EPSILON = 1.001e-5  # the fused kernel's floor (cuDNN's); below it Keras' own call runs


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` computed by ``FusedBatchNormV3`` where it applies."""

    def _fusable(self, inputs: Any, training: Any, mask: Any) -> bool:
        if keras.backend.backend() != "tensorflow":
            return False
        import tensorflow as tf

        # Under a distribution strategy the statistics' variables are per replica: Keras' own updates.
        return (not tf.distribute.has_strategy() and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4 and self.axis in (-1, 3)
                and inputs.shape[-1] is not None and isinstance(training, (bool, type(None)))
                and self.epsilon >= MIN_EPSILON
                and keras.backend.standardize_dtype(inputs.dtype) in ("float16", "bfloat16", "float32"))

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> Any:
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        # The kernel takes float32 scale, offset and statistics beside float16/bfloat16 inputs.
        gamma = tf.cast(self.gamma.value, tf.float32) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.cast(self.beta.value, tf.float32) if self.center else tf.zeros([channels], tf.float32)
        moving_mean = tf.cast(self.moving_mean.value, tf.float32)
        moving_variance = tf.cast(self.moving_variance.value, tf.float32)
        if training and self.trainable:
            empty = tf.constant([], tf.float32)
            outputs, mean, corrected_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=float(self.epsilon),
                exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
            # Written for few ops (each costs tracing time): var = corrected - corrected / n (n = 1: 0 - 0),
            # and moving -= (moving - batch) * (1 - momentum), Keras' moving * momentum + batch * (1 - momentum).
            count = tf.cast(tf.size(inputs, out_type=tf.int64), tf.float32) / channels
            variance = corrected_variance - corrected_variance / count
            # One AssignSubVariableOp each (Keras' assign_sub reads the variable again and assigns).
            update = tf.raw_ops.AssignSubVariableOp
            update(resource=self.moving_mean.value.handle, value=(moving_mean - mean) * (1.0 - self.momentum))
            update(resource=self.moving_variance.value.handle,
                   value=(moving_variance - variance) * (1.0 - self.momentum))
        else:
            outputs, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=inputs, scale=gamma, offset=beta, mean=moving_mean, variance=moving_variance,
                epsilon=float(self.epsilon), exponential_avg_factor=1.0, data_format="NHWC", is_training=False)
        return tf.cast(outputs, self.compute_dtype)


def with_keras_batch_norm(model: keras.Model) -> keras.Model:
    """``model`` with each ``FusedBatchNormalization`` replaced by Keras' own layer, same config and weights.

    The model a user gets (``models/model.keras``, the registered and served one) then holds only
    built-in layers and loads where this package is not installed. Every other layer is shared with
    ``model``, not copied; a model without the fused layer comes back as it is.
    """
    if not any(isinstance(layer, FusedBatchNormalization) for layer in _all_layers(model)):
        return model
    replaced: list[tuple[FusedBatchNormalization, keras.layers.BatchNormalization]] = []

    def keras_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if not isinstance(layer, FusedBatchNormalization):
            return layer
        plain = keras.layers.BatchNormalization.from_config(layer.get_config())
        replaced.append((layer, plain))
        return plain

    clone = keras.models.clone_model(model, clone_function=keras_layer, recursive=True)
    for fused, plain in replaced:  # built by the clone's call; the variables keep their order
        plain.set_weights(fused.get_weights())
    return clone


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of ``model``, nested models' included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
    return found
