"""The TensorFlow/Keras backend: the Keras twin of the torch networks, weight transfer, ``.h5``.

Importing a module of this package imports tensorflow (through :mod:`.compat`, the one module
that knows TF/Keras versions); nothing outside ``ml/tensorflow`` imports it at module level.
"""
