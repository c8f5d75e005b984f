"""The TensorFlow/Keras backend: the Keras twin of the torch networks, weight transfer, ``.h5``,
and the Keras trainer.

Modules: :mod:`.compat` (the one module that knows TF/Keras versions), :mod:`.models`,
:mod:`.losses`, :mod:`.convert` (weights to and from torch, ``.h5``), :mod:`.devices` (device
names, threads, precision policies), :mod:`.checkpoints` (``keras.weights.h5``),
:mod:`.predictor` (probabilities, the backend's predictor), :mod:`.optim` (torch's Adam and
schedules), :mod:`.metrics` (pixel counts), :mod:`.board` (TensorBoard) and :mod:`.train` (the
trainer and ``python -m``).

Importing a module of this package imports tensorflow (through :mod:`.compat`); nothing outside
``ml/tensorflow`` imports it at module level.
"""
