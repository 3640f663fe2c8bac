localrules:
    transform_figures,


rule prepare:
    output:
        f"{R}/data/split.npz",
    params:
        spec=lambda wc: spec_json(data=config["data"]),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/prepare.log",
    benchmark:
        J.benchmark(R, "prepare")
    resources:
        **planned("prepare", 4000),
    shell:
        "python -m synsym.cli prepare --spec {params.spec:q} --out {output} > {log} 2>&1"


rule transform_figures:
    """Fig. 1 and Fig. S2: one CIFAR-10 image under an element of each transform, and along the SO(3)^d path."""
    input:
        f"{R}/data/split.npz",  # the archive is downloaded and verified by then
    output:
        **{
            f"{name}_{ext}": report(f"{R}/figures/{name}.{ext}", category="Figures", caption=f"../report/{name}.rst")
            for name in TRANSFORM_FIGURES
            for ext in ("png", "pdf")
        },
    params:
        spec=lambda wc: spec_json(data=config["data"], seed=config["seeds"][0], ts=config["sdist"]["ts"]),
        outdir=lambda wc, output: os.path.dirname(output[0]),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/figures/transform_figures.log",
    shell:
        "python -m synsym.cli transform-figures --spec {params.spec:q} --outdir {params.outdir} > {log} 2>&1"
