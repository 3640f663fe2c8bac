"""The ImageNet half (Sec. 6.2, App. F): a torch-free ``registry`` of ids, the folder tree,
subsets and augmentation (``data``), the ``models``, DDP ``training`` and the study
``tables``.

Uses synsym.core only; torch is imported by ``models`` and ``training`` alone."""
