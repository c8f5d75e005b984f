"""Helpers that build realistic data for tests, benchmarks and the demo (no Dagster).

Importing this package imports none of its modules; import the one you need:

- :mod:`.ome_tiff`: OME-XML and OME-TIFF movie writer.
- :mod:`.ome_zarr`: OME-Zarr movie writer.
- :mod:`.movies`: the synthetic image model (mitochondria-like movies with events,
  :func:`~.movies.synthesize_movie`), rendered frame by frame.
- :mod:`.event_plans`: where and when the events of a synthetic movie happen.
- :mod:`.benchmark_movies`: big OME-TIFFs for benchmarks, written frame by frame.
- :mod:`.annotations`: napari points and shapes (lines) CSV writers.
- :mod:`.trees`: trees of synthetic acquisition folders and their truth
  (:func:`~.trees.generate_tree`, :func:`~.trees.synth_main`).
- :mod:`.learning`: a learning problem from synthetic acquisitions, whole acquisitions held out.
"""
