"""The recipes that produce the shipped weights (run from the repository root, e.g.
``python -m training.train_default``). Not part of the installed SDK: they need the ``[train]`` extra."""
