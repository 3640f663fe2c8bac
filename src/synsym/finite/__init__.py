"""Finite width: the networks as stacked-seed tensors (``models``), the paper's SGD
``recipe`` (torch-free), ``training`` and the exact ``embeddings`` of Theorem 3.1.

Uses synsym.core only."""
