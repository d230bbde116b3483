"""Keras' optimizers with each variable's update as one fused TensorFlow training op.

Keras 3 writes every optimizer's update step in ``keras.ops``: Adam is about twenty small ops per
model variable (casts, powers, the two moments, the update), each built into the traced training
step one by one and run one by one at every step. TensorFlow's own training kernels
(``ResourceApplyAdam``, ``ResourceApplyKerasMomentum``, ``ResourceApplyRMSProp``,
``ResourceApplyGradientDescent``) compute the same update, by the same formula, in one op. On
digits the optimizer was about half of what tracing a trial's training step cost (0.32 of 0.61 s
under a profiler, for the recipe's 28 variables); fused, a trial's first-epoch extra is ~0.18 s
shorter (BENCHMARKS.md §10), and tracing is most of a trial's fixed cost (issue 21.4).

The subclasses keep Keras' variables, configs and ``apply`` (gradient filtering, the iteration
count): only ``update_step`` (and AdamW's weight decay) changes, and the step's scalars (the learning
rate, the bias corrections) are computed once per step instead of once per variable. The results
equal Keras' to float32 rounding (the kernels order the same arithmetic differently; a run is as
reproducible for a seed as before, with other last digits). What the kernels do not cover falls
back to Keras' own step: Adam with ``amsgrad``, centered RMSprop, other backends.
"""

from __future__ import annotations

from typing import Any

import keras

PACKAGE = "pipeline"  # registered: a file that stores one of these optimizers loads with this module imported


def _handle(variable: Any) -> Any:
    """The resource handle a training kernel updates: of a Keras variable or a ``tf.Variable``."""
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


class _StepScalars:
    """Mixin: the step's scalars, computed once in ``_backend_update_step`` and shared by every variable."""

    _scalars: dict[Any, dict[str, Any]] | None = None

    def _backend_update_step(self, grads: list[Any], trainable_variables: list[Any], learning_rate: Any) -> None:
        self._scalars = {}
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)  # type: ignore[misc]
        finally:
            self._scalars = None

    def _scalars_for(self, dtype: Any, learning_rate: Any) -> dict[str, Any]:
        """This step's scalars in ``dtype``; outside ``_backend_update_step`` (no cache) computed afresh."""
        cache = self._scalars if self._scalars is not None else {}
        if dtype not in cache:
            cache[dtype] = self._step_scalars(dtype, learning_rate)  # each optimizer's own
        return cache[dtype]


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedAdam(_StepScalars, keras.optimizers.Adam):
    """``keras.optimizers.Adam``, each variable updated by ``ResourceApplyAdam`` (same formula)."""

    def _step_scalars(self, dtype: Any, learning_rate: Any) -> dict[str, Any]:
        import tensorflow as tf

        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        return {"lr": tf.cast(learning_rate, dtype), "beta_1": beta_1, "beta_2": beta_2,
                "beta_1_power": tf.pow(beta_1, step), "beta_2_power": tf.pow(beta_2, step),
                "epsilon": tf.cast(self.epsilon, dtype)}

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.amsgrad:  # (Adam's own step: this method is AdamW's too)
            return keras.optimizers.Adam.update_step(self, gradient, variable, learning_rate)
        import tensorflow as tf

        s = self._scalars_for(variable.dtype, learning_rate)
        index = self._get_variable_index(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            beta1_power=s["beta_1_power"], beta2_power=s["beta_2_power"], lr=s["lr"], beta1=s["beta_1"],
            beta2=s["beta_2"], epsilon=s["epsilon"], grad=tf.cast(gradient, variable.dtype))
        return None


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedAdamW(_StepScalars, keras.optimizers.AdamW):
    """``keras.optimizers.AdamW``: Keras' decoupled weight decay (``var -= lr * weight_decay * var``, one
    ``ResourceApplyGradientDescent`` per decayed variable), then ``FusedAdam``'s step."""

    _step_scalars = FusedAdam._step_scalars
    update_step = FusedAdam.update_step

    def _apply_weight_decay(self, variables: list[Any]) -> None:
        if self.weight_decay is None:
            return
        import tensorflow as tf

        decay: dict[Any, Any] = {}
        for variable in variables:
            if not self._use_weight_decay(variable):
                continue
            variable = variable.value if isinstance(variable, keras.Variable) else variable
            if variable.dtype not in decay:
                decay[variable.dtype] = tf.cast(self.learning_rate, variable.dtype) * tf.cast(
                    self.weight_decay, variable.dtype)
            tf.raw_ops.ResourceApplyGradientDescent(var=variable.handle, alpha=decay[variable.dtype], delta=variable)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedSGD(_StepScalars, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` (plain, momentum, Nesterov): ``ResourceApplyKerasMomentum`` is Keras'
    momentum formula (``m = momentum * m - lr * g``; ``var += m``, or the Nesterov step)."""

    def _step_scalars(self, dtype: Any, learning_rate: Any) -> dict[str, Any]:
        import tensorflow as tf

        return {"lr": tf.cast(learning_rate, dtype), "momentum": tf.cast(self.momentum, dtype)}

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        import tensorflow as tf

        s = self._scalars_for(variable.dtype, learning_rate)
        gradient = tf.cast(gradient, variable.dtype)
        if self.momentum != 0:
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=_handle(variable), accum=_handle(self.momentums[self._get_variable_index(variable)]),
                lr=s["lr"], grad=gradient, momentum=s["momentum"], use_nesterov=bool(self.nesterov))
        else:
            tf.raw_ops.ResourceApplyGradientDescent(var=_handle(variable), alpha=s["lr"], delta=gradient)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedRMSprop(_StepScalars, keras.optimizers.RMSprop):
    """``keras.optimizers.RMSprop`` (not centered), each variable updated by ``ResourceApplyRMSProp``.

    The kernel always keeps a momentum slot (``mom = momentum * mom + increment``; ``var -= mom``).
    With Keras' default momentum 0 that slot only holds the last increment: a scratch variable per
    model variable, kept out of the optimizer's variables, so saved training states have exactly
    Keras' variables (a state saved before this class existed loads, and one saved now loads into
    Keras' own RMSprop). Nothing resets a scratch variable with the optimizer's own (the ablation puts a
    traced model back to a fresh one's variables), and ``0 * nan`` is nan: each step zeroes it before the
    kernel reads it, so a diverged run cannot leak into the next.
    """

    def build(self, var_list: list[Any]) -> None:
        if self.built:
            return
        super().build(var_list)
        self._increments = self._momentums
        if not self.centered and self.momentum <= 0:
            import tensorflow as tf

            with tf.init_scope():  # eager variables even when Keras builds inside a traced step
                self._increments = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False) for v in var_list]

    def _step_scalars(self, dtype: Any, learning_rate: Any) -> dict[str, Any]:
        import tensorflow as tf

        return {"lr": tf.cast(learning_rate, dtype), "rho": tf.cast(self.rho, dtype),
                "momentum": tf.cast(max(self.momentum, 0.0), dtype), "epsilon": tf.cast(self.epsilon, dtype)}

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        if self.centered:
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        s = self._scalars_for(variable.dtype, learning_rate)
        index = self._get_variable_index(variable)
        if self._increments is not self._momentums:  # the scratch slot: what it held must not matter
            self._increments[index].assign(tf.zeros(variable.shape, variable.dtype))
        tf.raw_ops.ResourceApplyRMSProp(
            var=_handle(variable), ms=_handle(self._velocities[index]), mom=_handle(self._increments[index]),
            lr=s["lr"], rho=s["rho"], momentum=s["momentum"], epsilon=s["epsilon"],
            grad=tf.cast(gradient, variable.dtype))
        return None


# Keras' optimizer -> its fused version, which build_optimizer makes on TensorFlow.
FUSED: dict[type, type] = {keras.optimizers.Adam: FusedAdam, keras.optimizers.AdamW: FusedAdamW,
                           keras.optimizers.SGD: FusedSGD, keras.optimizers.RMSprop: FusedRMSprop}


def fused_class(kind: type) -> type:
    """The fused version of Keras' optimizer class ``kind`` on the TensorFlow backend; otherwise ``kind``."""
    return FUSED.get(kind, kind) if keras.backend.backend() == "tensorflow" else kind
