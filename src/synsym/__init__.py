"""Synergy and symmetry in deep learning: a reproducible study (Xiao & Pennington, ICML 2022)."""

__version__ = "0.1.0"
