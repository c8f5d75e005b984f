"""Training and its use: a training-run partition per (settings file, prompt) → training set →
trained model → evaluation → exports, and per annotation kind the deployed model's predictions
over acquisitions, with the training settings and predictions sensors and the ``train`` and
``predict`` jobs (``assets`` lists them; the other modules hold the steps)."""
