"""Every TensorFlow/Keras version difference, in one place.

The lab's microscope software loads models with TF 2.10's ``keras.models.load_model(path,
compile=False)`` from ``.h5`` files, so this backend builds, saves and loads models with the
**Keras 2** API: ``tf_keras`` on TF ≥ 2.16 (where ``tf.keras`` is Keras 3, whose files TF 2.10
cannot read), ``tensorflow.keras`` before (where that is Keras 2; building, saving and loading
were also tried on TF 2.10.1). The rest of the project imports ``tf`` and ``keras`` from here,
never ``tensorflow`` or ``tf_keras`` directly.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

# Before TensorFlow is first imported, or its C++ start-up messages flood the logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with VNNI/bfloat16/AMX;
# elsewhere (AVX2/AVX-512) a training step takes about twice as long without them. Read once,
# when TensorFlow is first imported.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import tensorflow as tf
from absl import logging as _absl_logging

# absl (imported by TensorFlow) binds its handler to the sys.stderr of the moment it is first
# imported and closes that stream when logging's handlers are shut down (as
# ``logging.config.dictConfig`` does) unless it is the current sys.stderr — a temporary stream
# there (captured or redirected output) would be closed under its owner. Pin the process's own.
_absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__

__all__ = [
    "KERAS_2_MODULE",
    "keras",
    "keras_2_10_model_config",
    "keras_version",
    "load_keras_2_h5",
    "save_keras_2_h5",
    "tf",
    "tf_version",
]


def _version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


if _version_tuple(tf.__version__) >= (2, 16):
    import tf_keras as keras

    KERAS_2_MODULE = "tf_keras"
else:  # pragma: no cover - TF < 2.16 is not installed here
    from tensorflow import keras

    KERAS_2_MODULE = "tensorflow.keras"


def tf_version() -> str:
    """TensorFlow's version string."""
    return tf.__version__


def keras_version() -> str:
    """The Keras 2 implementation's version (what an ``.h5`` file records as ``keras_version``)."""
    return keras.__version__


# Keys that Keras ≥ 2.13 writes next to "class_name"/"config" in serialised objects and that
# TF 2.10 neither writes nor needs (it reads only "class_name" and "config").
_NEWER_SERIALIZATION_KEYS = ("module", "registered_name", "build_config", "compile_config")


def keras_2_10_model_config(config: dict[str, Any]) -> dict[str, Any]:
    """A model config as TF 2.10's Keras writes it: newer Keras' additions taken out.

    Removes, wherever a serialised object (``{"class_name": …, "config": …}``) appears:

    * the keys ``module``, ``registered_name``, ``build_config`` and ``compile_config``;
    * ``InputLayer``'s ``optional`` when false (its default; TF 2.10's ``InputLayer`` raises
      "Unrecognized keyword arguments" on it);
    * a functional model's ``trainable`` when true (its default; TF 2.10 does not write it).

    Parameters
    ----------
    config
        A decoded ``model_config`` (``model.get_config()`` wrapped with ``class_name``).

    Returns
    -------
    dict
        A new config; ``config`` is not changed.
    """

    def clean(node: Any) -> Any:
        if isinstance(node, list):
            return [clean(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: clean(value) for key, value in node.items()}
        if "class_name" in node and isinstance(node.get("config"), dict):
            for key in _NEWER_SERIALIZATION_KEYS:
                node.pop(key, None)
            layer_config = node["config"]
            if node["class_name"] == "InputLayer" and layer_config.get("optional") is False:
                del layer_config["optional"]
            if "layers" in layer_config and layer_config.get("trainable") is True:
                del layer_config["trainable"]
        return node

    return clean(config)


def save_keras_2_h5(model: keras.Model, path: str | os.PathLike) -> None:
    """Write ``model`` (without optimizer) as a Keras 2 HDF5 file that TF 2.10 can load.

    The model config stored in the file is rewritten by :func:`keras_2_10_model_config`.
    """
    import h5py  # a TensorFlow dependency

    tf_logger = tf.get_logger()
    level = tf_logger.level
    with warnings.catch_warnings():
        # "You are saving your model as an HDF5 file … legacy": the legacy format is the point;
        # and an uncompiled model makes Keras log that its compiled metrics are not built.
        warnings.filterwarnings("ignore", message=".*HDF5 file.*", category=UserWarning)
        tf_logger.setLevel("ERROR")
        try:
            model.save(os.fspath(path), save_format="h5", include_optimizer=False)
        finally:
            tf_logger.setLevel(level)
    with h5py.File(path, "r+") as h5:
        config = h5.attrs["model_config"]
        config = json.loads(config.decode("utf-8") if isinstance(config, bytes) else config)
        h5.attrs["model_config"] = json.dumps(keras_2_10_model_config(config)).encode("utf-8")


def load_keras_2_h5(path: str | os.PathLike) -> keras.Model:
    """Load a Keras 2 HDF5 model as the microscope does: ``load_model(path, compile=False)``."""
    return keras.models.load_model(os.fspath(path), compile=False)
