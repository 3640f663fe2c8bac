localrules:
    merge,
    figure,


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


rule figure:
    """One of the paper's figures, from the merged tables it needs."""
    input:
        lambda wc: [f"{R}/tables/{t}.parquet" for t in FIGURE_TABLES[wc.figure]],
    output:
        png=report(f"{R}/figures/{{figure}}.png", category="Figures", caption="../report/figures.rst"),
        pdf=report(f"{R}/figures/{{figure}}.pdf", category="Figures", caption="../report/figures.rst"),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/figures/{{figure}}.log",
    shell:
        "python -m synsym.cli figure --name {wildcards.figure} --tables {input} --out {output.png} > {log} 2>&1"
