"""The data and its symmetries: ids of architectures and inferences, the five transforms,
seeding, metrics, atomic I/O, the CIFAR-10 archive and the device rule.

Uses nothing else of synsym; torch only inside the functions that need it, so the DAG
build (which reads these ids) stays torch-free."""
