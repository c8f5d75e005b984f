"""The PyTorch backend: models, losses, the training loop and its command-line entry point.

Modules: :mod:`.models` (the networks), :mod:`.losses`, :mod:`.data` (augmented samples),
:mod:`.devices` (device names, autocast), :mod:`.checkpoints` (``model.pt``),
:mod:`.predictor` (probabilities, the backend's predictor), :mod:`.metrics` (pixel counts),
:mod:`.board` (TensorBoard), :mod:`.session` (one training's model, optimiser, steps and data
path), :mod:`.train` (the trainer and ``python -m``) and :mod:`.export` (ONNX, TorchScript).

Importing a module of this package imports torch; nothing outside ``ml/torch`` imports it at
module level.
"""
