rule prepare:
    output:
        f"{R}/data/split.npz",
    params:
        spec=lambda wc: spec_json(data=config["data"]),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/prepare.log",
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "python -m synsym.cli prepare --spec {params.spec:q} --out {output} > {log} 2>&1"
