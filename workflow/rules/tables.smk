localrules:
    merge,
    figures,


rule merge:
    """All cells of a study in one Parquet table (schema-checked) plus a CSV summary."""
    input:
        lambda wc: study_cells(wc.study),
    output:
        table=report(f"{R}/tables/{{study}}.parquet", category="Tables", caption="../report/table.rst"),
        csv=report(f"{R}/tables/{{study}}.csv", category="Tables", caption="../report/table.rst"),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/merge/{{study}}.log",
    shell:
        "python -m synsym.cli merge --out {output.table} --csv {output.csv} --cells {input} > {log} 2>&1"


rule figures:
    """The paper's figures, from the merged tables."""
    input:
        expand(f"{R}/tables/{{study}}.parquet", study=STUDIES),
    output:
        [
            report(f"{R}/figures/{f}.{ext}", category="Figures", caption=f"../report/{f}.rst")
            for f in FIGURES
            for ext in ("png", "pdf")
        ],
    params:
        outdir=lambda wc, output: os.path.dirname(output[0]),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/figures.log",
    shell:
        "python -m synsym.cli figures --tables {input} --outdir {params.outdir} > {log} 2>&1"
