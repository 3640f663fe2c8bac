"""The pipeline: the validated ``config``, the ``jobs`` a config implies (cells, benchmark
paths) and the cost ``plan`` that sizes them for Slurm.

Uses every layer below it; reading a config or building the DAG imports no torch."""
