rule train_cell:
    """SGD (NN) or SGD +LR +L2 (NN+) of one cell, all seeds trained together."""
    input:
        split=f"{R}/data/split.npz",
    output:
        cell=J.cell_file(R, J.CELL_TABLE, inference="{finite}"),
        pred=J.cell_file(R, J.CELL_PREDS, inference="{finite}"),
    params:
        spec=lambda wc: spec_json(seeds=train_seeds(wc.study), device=config["device"], training=config["training"]),
        first_layer=lambda wc: "uniform" if wc.study == "uniform_init" else "gaussian",
    conda:
        "../../envs/study.yaml"
    log:
        J.cell_file(R, ".log", inference="{finite}"),
    benchmark:
        J.benchmark(R, "train_cell")
    threads: 1
    resources:
        **planned("train_cell", 8000),
        cpus_per_task=1,
        **gpu_resources(),
    shell:
        "OMP_NUM_THREADS={threads} python -m synsym.cli "
        + J.cli_line("train_cell", spec="{params.spec:q}", study="{wildcards.study}", inference="{wildcards.finite}",
                     arch="{wildcards.arch}", transform="{wildcards.transform}", width="{wildcards.width}",
                     m="{wildcards.m}", split="{input.split}", first_layer="{params.first_layer}", out="{output.cell}")
        + " > {log} 2>&1"
