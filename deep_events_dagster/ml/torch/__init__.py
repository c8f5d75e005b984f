"""The PyTorch backend: models, losses, the training loop and its command-line entry point.

Importing a module of this package imports torch; nothing outside ``ml/torch`` imports it at
module level.
"""
