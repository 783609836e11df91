"""A randomized fault soak with a history checker (``python -m bench.soak``, see __main__.py)."""
