rule prepare:
    output:
        f"{R}/data/split.npz",
    params:
        spec=lambda wc: spec_json(data=config["data"]),
    conda:
        "../envs/study.yaml"
    log:
        f"{R}/logs/prepare.log",
    benchmark:
        J.benchmark(R, "prepare")
    resources:
        **planned("prepare", 30, 4000),
    shell:
        "python -m synsym.cli prepare --spec {params.spec:q} --out {output} > {log} 2>&1"
