rule kernel:
    """One shard (a run of row blocks) of the NNGP and NTK of one kernel family (fcn, or the
    whole conv family at once): a folder of memory-mappable .npy files, one per readout and kind."""
    input:
        split=f"{R}/data/split.npz",
    output:
        directory(J.KERNEL_SHARD.format(run_dir=R, family="{family}", transform="{transform}", seed="{seed}", shard="{shard}")),
    params:
        # the kernel itself: engine, blocking and sharding, not the regression's ridges (kernel_cell uses those)
        spec=lambda wc: spec_json(
            kernels={k: config["kernels"][k] for k in ("engine", "block_size", "max_memory_gb", "shards", "precision")},
            device=config["device"],
        ),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/kernel/{{family}}/{{transform}}/s{{seed}}/shard{{shard}}.log",
    benchmark:
        J.benchmark(R, "kernel")
    threads: 1
    resources:
        **planned("kernel", int(config["kernels"]["max_memory_gb"] * 1536) + 2000),
        cpus_per_task=1,
        **gpu_resources(),
    shell:
        "OMP_NUM_THREADS={threads} python -m synsym.cli "
        + J.cli_line("kernel", spec="{params.spec:q}", family="{wildcards.family}", transform="{wildcards.transform}",
                     seed="{wildcards.seed}", shard="{wildcards.shard}", split="{input.split}", out="{output}")
        + " > {log} 2>&1"


rule kernel_cell:
    """NTK and NNGP regression (t = infinity) of one architecture, for every kernel seed."""
    wildcard_constraints:
        study="grid|width|curves|sdist",
    input:
        split=f"{R}/data/split.npz",
        kernels=kernel_inputs,
        held=held_ridge_cells,
    output:
        ntk=J.cell_file(R, J.CELL_TABLE, inference="ntk", width="inf"),
        nngp=J.cell_file(R, J.CELL_TABLE, inference="nngp", width="inf"),
        ntk_pred=J.cell_file(R, J.CELL_PREDS, inference="ntk", width="inf"),
        nngp_pred=J.cell_file(R, J.CELL_PREDS, inference="nngp", width="inf"),
    params:
        spec=lambda wc: spec_json(ridges=config["kernels"]["ridges"], seeds=config["kernel_seeds"], device=config["device"]),
    conda:
        "../../envs/study.yaml"
    log:
        J.cell_file(R, ".log", inference="ntk", width="inf"),
    benchmark:
        J.benchmark(R, "kernel_cell")
    group:
        "regress"
    resources:
        **planned("kernel_cell", 4000),
        **gpu_resources(),
    shell:
        "python -m synsym.cli "
        + J.cli_line("kernel_cell", spec="{params.spec:q}", study="{wildcards.study}", arch="{wildcards.arch}",
                     transform="{wildcards.transform}", m="{wildcards.m}", split="{input.split}",
                     kernels="{input.kernels}", out_ntk="{output.ntk}", out_nngp="{output.nngp}")
        + " --hold-ridge-from {input.held} > {log} 2>&1"


rule scaling_cells:
    """Fig. S6: NTK/NNGP regression of one architecture and transform at every curve size, in one job."""
    input:
        split=f"{R}/data/split.npz",
        kernels=kernel_inputs,
    output:
        ntk=J.scaling_files(R, "ntk", config["curves"]["sizes"], J.CELL_TABLE),
        nngp=J.scaling_files(R, "nngp", config["curves"]["sizes"], J.CELL_TABLE),
        preds=[f for kind in ("ntk", "nngp") for f in J.scaling_files(R, kind, config["curves"]["sizes"], J.CELL_PREDS)],
    params:
        spec=lambda wc: spec_json(ridges=config["kernels"]["ridges"], seeds=config["kernel_seeds"], device=config["device"]),
        sizes=" ".join(map(str, config["curves"]["sizes"])),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/cells/scaling/{{arch}}/{{transform}}.log",
    benchmark:
        J.benchmark(R, "scaling_cells")
    group:
        "regress"
    resources:
        **planned("scaling_cells", 4000),
        **gpu_resources(),
    shell:
        "python -m synsym.cli "
        + J.cli_line("kernel_cell", spec="{params.spec:q}", study="scaling", arch="{wildcards.arch}",
                     transform="{wildcards.transform}", m="{params.sizes}", split="{input.split}",
                     kernels="{input.kernels}", out_ntk="{output.ntk}", out_nngp="{output.nngp}")
        + " > {log} 2>&1"
