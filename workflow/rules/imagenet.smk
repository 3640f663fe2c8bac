# The ImageNet half (paper Sec. 6.2, App. B.2, App. F): only when config imagenet.root is set.
# One training job per (model, transform, size index i, seed), run under torchrun across the
# job's GPUs (synsym.imagenet.training); tables and figures as in the CIFAR half.
localrules:
    imagenet,
    imagenet_tables,
    imagenet_figure,


rule imagenet:
    """The ImageNet half alone (`snakemake imagenet`): every cell (so a deleted one is rebuilt), tables, figures."""
    input:
        imagenet_targets(),


rule imagenet_index:
    """Every image of both splits with its label; a non-image file or a too-small m_i stops here."""
    output:
        f"{R}/imagenet/index.json",
    params:
        spec=lambda wc: imagenet_index_spec(),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/imagenet/index.log",
    resources:
        runtime=60,
        mem_mb=8000,
    shell:
        "python -m synsym.cli imagenet index --spec {params.spec:q} --out {output} > {log} 2>&1"


rule imagenet_shards:
    """The tree packed once into tar shards (imagenet.shards: true): few large files for a cluster file system."""
    input:
        index=f"{R}/imagenet/index.json",
    output:
        directory(f"{R}/imagenet/shards"),
    params:
        spec=lambda wc: spec_json(imagenet={"images_per_shard": INC["images_per_shard"]}),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/imagenet/shards.log",
    benchmark:
        J.benchmark(R, "imagenet_shards")
    resources:
        runtime=600,
        mem_mb=4000,
    shell:
        "python -m synsym.cli imagenet shards --spec {params.spec:q} --index {input.index} --out {output} > {log} 2>&1"


rule imagenet_train:
    """One (model, transform, m_i, seed): FLAX-recipe SGD for imagenet.epochs, resumable per epoch."""
    wildcard_constraints:
        model="[a-z0-9_]+",
        transform="|".join(IR.TRANSFORMS),
        i=r"\d+",
    input:
        index=f"{R}/imagenet/index.json",
        shards=[f"{R}/imagenet/shards"] if INC["shards"] else [],
    output:
        f"{R}/imagenet/cells/{{model}}/{{transform}}/i{{i}}/s{{seed}}.parquet",
    params:
        spec=lambda wc: imagenet_spec(),
        launch=IC.launcher(INC, CUDA),
        checkpoint=lambda wc: IC.cell_path(R, wc.model, wc.transform, wc.i, wc.seed, "ckpt.pt"),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/imagenet/{{model}}/{{transform}}/i{{i}}/s{{seed}}.log",
    benchmark:
        J.benchmark(R, "imagenet_train")
    threads: INC["workers"] + 1
    resources:
        runtime=INC["runtime_min"],
        mem_mb=INC["mem_mb"],
        nodes=INC["nodes"],
        cpus_per_task=(INC["workers"] + 1) * INC["gpus"],
        **({"gpu": INC["gpus"]} if CUDA else {}),
    shell:
        "{params.launch} -m synsym.cli imagenet train --spec {params.spec:q} --index {input.index} "
        "--model {wildcards.model} --transform {wildcards.transform} --i {wildcards.i} --seed {wildcards.seed} "
        "--checkpoint {params.checkpoint} --out {output}" + (" --shards {input.shards}" if INC["shards"] else "")
        + " >> {log} 2>&1"


rule imagenet_tables:
    """Per-epoch rows of every cell, the last epoch per cell, and the Fig. 5 two-segment fits."""
    input:
        imagenet_cells(),
    output:
        [report(f"{R}/imagenet/tables/{t}.{ext}", category="ImageNet", caption="../report/imagenet_table.rst")
         for t in IR.TABLES for ext in ("parquet", "csv")],
    params:
        spec=lambda wc: imagenet_spec(),
        out=lambda wc, output: os.path.dirname(output[0]),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/imagenet/tables.log",
    shell:
        "python -m synsym.cli imagenet tables --spec {params.spec:q} --cells {input} --out {params.out} > {log} 2>&1"


rule imagenet_figure:
    """Figs. 5 (left, right), S3 and S4 from the ImageNet tables."""
    wildcard_constraints:
        figure="|".join(IR.FIGURES),
    input:
        lambda wc: [f"{R}/imagenet/tables/{t}.parquet" for t in IR.FIGURES[wc.figure]],
    output:
        png=report(f"{R}/figures/{{figure}}.png", category="ImageNet", caption="../report/imagenet_figures.rst"),
        pdf=report(f"{R}/figures/{{figure}}.pdf", category="ImageNet", caption="../report/imagenet_figures.rst"),
    params:
        spec=lambda wc: imagenet_spec(),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/figures/{{figure}}.log",
    shell:
        "python -m synsym.cli imagenet figure --spec {params.spec:q} --name {wildcards.figure} --tables {input} "
        "--out {output.png} > {log} 2>&1"


rule imagenet_samples:
    """Figs. S7-S9: validation images O(3)^d-rotated with two seeds' elements, and clean."""
    input:
        index=f"{R}/imagenet/index.json",
    output:
        png=report(f"{R}/figures/figS7_samples.png", category="ImageNet", caption="../report/imagenet_samples.rst"),
        pdf=report(f"{R}/figures/figS7_samples.pdf", category="ImageNet", caption="../report/imagenet_samples.rst"),
    params:
        spec=lambda wc: imagenet_spec(),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/figures/figS7_samples.log",
    resources:
        mem_mb=4000,
    shell:
        "python -m synsym.cli imagenet samples --spec {params.spec:q} --index {input.index} --out {output.png} "
        "> {log} 2>&1"
