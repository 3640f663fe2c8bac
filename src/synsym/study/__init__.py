"""The study: one ``cells`` job (a kernel or a training cell), the derived ``tables``
(fits, S-Dist, the symmetry report) and the ``figures``.

Uses synsym.ntk, synsym.finite, synsym.imagenet and synsym.core."""
