"""Infinite width: the NNGP/NTK recursion in its implementations side by side (``eager``
reference, ``fused_cpu`` C++, ``fused_triton``; ``engine`` picks one), the neural-tangents
``reference``, the ``kernels`` of a whole split and kernel ``regression``.

Uses synsym.core only."""
