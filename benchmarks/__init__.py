"""Speed and memory benchmarks of deep-events-dagster (``make bench``).

Every benchmark measures our code and a reference side by side in the same run and prints the
ratio next to its goal; nothing is hard-coded. See :mod:`benchmarks.run` for what each one
compares and how to run them.
"""
