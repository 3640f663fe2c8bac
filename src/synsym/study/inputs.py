"""Which merged tables each figure of the CIFAR-10 half is drawn from, in the order its drawing function takes them.

One table for both readers: the workflow's figure rule (its inputs, and which figures a run draws) and
:func:`synsym.study.figures.make`. Kept apart from figures.py so the DAG build does not load matplotlib.
"""

FIGURE_TABLES: dict[str, tuple[str, ...]] = {
    "fig2_grid": ("grid",),
    "fig2_vs_kernel": ("finite_vs_kernel",),
    "fig3_width": ("width", "grid"),
    "fig4_learning_curves": ("curves", "curves_fits"),
    "figS1_sdist": ("sdist_distances",),
    "figS5_uniform_init": ("grid", "uniform_init"),
    "figS6_scaling": ("scaling", "scaling_fits"),
    "symmetry_report": ("symmetry_report",),
}
