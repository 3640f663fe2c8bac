# NTK/NNGP learning curves to the data's limit, under each padding (config kernel_curves;
# synsym.study.kernel_curves, docs/ntk-ordering.md). One job: it computes one kernel per
# (padding, family, transform class), checks every Theorem 4.1 reuse on a sampled block, and
# regresses every size on random training subsets (sub-matrices). Kernels already in its folder
# are kept, so a killed job resumes at the next missing kernel.
rule kernel_curves:
    input:
        split=f"{R}/data/split.npz",
    output:
        [f"{KC_DIR}/{name}" for name in KC_OUTPUTS],
    params:
        spec=lambda wc: spec_json(
            kernels={k: config["kernels"][k] for k in ("engine", "precision", "block_size", "max_memory_gb")},
            ridges=config["kernels"]["ridges"],
            kernel_curves={k: KC[k] for k in ("paddings", "sizes", "draws", "transforms")},
            device=config["device"],
        ),
        outdir=lambda wc, output: os.path.dirname(output[0]),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/kernel_curves.log",
    benchmark:
        J.benchmark(R, "kernel_curves")
    threads: 8  # scaled down to --cores by snakemake; the kernels and BLAS use them all
    resources:
        **planned("kernel_curves", 16000),
        **gpu_resources(),
    shell:
        "OMP_NUM_THREADS={threads} python -m synsym.cli kernel-curves --spec {params.spec:q} --split {input.split} "
        "--outdir {params.outdir} > {log} 2>&1"
