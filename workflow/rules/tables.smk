localrules:
    merge,
    figure,
    fits,
    ridge_wins,
    sdist_table,
    finite_vs_kernel,


rule merge:
    """All cells of a study in one Parquet table (schema-checked) plus a CSV summary."""
    wildcard_constraints:
        study="|".join(STUDIES),
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
        "python -m synsym.cli merge --study {wildcards.study} --out {output.table} --csv {output.csv} --cells {input} "
        "> {log} 2>&1"


rule figure:
    """One of the paper's figures, from the merged tables it needs."""
    wildcard_constraints:
        figure="|".join(FIGURES),
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


rule fits:
    """Power-law exponents over training-set size and the DIDE half-range slopes (Figs. 4 and S6)."""
    wildcard_constraints:
        study="curves|scaling",
    input:
        f"{R}/tables/{{study}}.parquet",
    output:
        table=report(f"{R}/tables/{{study}}_fits.parquet", category="Tables", caption="../report/table.rst"),
        csv=report(f"{R}/tables/{{study}}_fits.csv", category="Tables", caption="../report/table.rst"),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/fits/{{study}}.log",
    shell:
        "python -m synsym.cli fits --tables {input} --out {output.table} --csv {output.csv} > {log} 2>&1"


rule ridge_wins:
    """How often each ridge (the configured grid, or the ridgeless limit) wins validation."""
    input:
        [f"{R}/tables/{s}.parquet" for s in ("grid", "curves", "scaling") if s in STUDIES],
    output:
        table=report(f"{R}/tables/ridge_wins.parquet", category="Tables", caption="../report/table.rst"),
        csv=report(f"{R}/tables/ridge_wins.csv", category="Tables", caption="../report/table.rst"),
    params:
        ridges=" ".join(f"{r!r}" for r in config["kernels"]["ridges"]),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/ridge_wins.log",
    shell:
        "python -m synsym.cli ridges --tables {input} --ridges {params.ridges} --out {output.table} --csv {output.csv} "
        "> {log} 2>&1"


rule sdist_table:
    """Ensemble accuracy and S-Dist to GAP_n and VEC_inf along the SO(3)^d path (App. E)."""
    input:
        split=f"{R}/data/split.npz",
        preds=lambda wc: [pred_path(p) for p in study_cells("sdist") if "/nngp/" not in p],
        cells=lambda wc: [p for p in study_cells("sdist") if "/nngp/" not in p],  # which runs were accepted
    output:
        table=report(f"{R}/tables/sdist_distances.parquet", category="Tables", caption="../report/table.rst"),
        csv=report(f"{R}/tables/sdist_distances.csv", category="Tables", caption="../report/table.rst"),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/sdist.log",
    shell:
        "python -m synsym.cli sdist --split {input.split} --preds {input.preds} --out {output.table} "
        "--csv {output.csv} > {log} 2>&1"


rule finite_vs_kernel:
    """Fig. 2's finite nets against their NTK and NNGP: accepted runs' accuracy and each difference with its
    noise, paired per test image (the grid's stored predictions)."""
    input:
        grid=f"{R}/tables/grid.parquet",
        split=f"{R}/data/split.npz",
        preds=lambda wc: [pred_path(p) for p in study_cells("grid")],
    output:
        table=report(f"{R}/tables/finite_vs_kernel.parquet", category="Tables", caption="../report/table.rst"),
        csv=report(f"{R}/tables/finite_vs_kernel.csv", category="Tables", caption="../report/table.rst"),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/finite_vs_kernel.log",
    shell:
        "python -m synsym.cli finite-vs-kernel --grid {input.grid} --split {input.split} --preds {input.preds} "
        "--out {output.table} --csv {output.csv} > {log} 2>&1"


rule symmetry_report:
    """Theorem 4.1 prediction vs measurement for every (architecture, inference, transform); a kernel
    served by another transform's job (kernels.reuse_invariant) is checked on a block of images."""
    input:
        grid=f"{R}/tables/grid.parquet",
        split=f"{R}/data/split.npz",
        kernels=lambda wc: list(
            dict.fromkeys(
                d
                for fam in A.KERNEL_FAMILIES
                for t in config["grid"]["transforms"]
                for d in J.serving_shards(config, fam, t, config["kernel_seeds"][:1])
            )
        ),
    output:
        table=report(f"{R}/tables/symmetry_report.parquet", category="Tables", caption="../report/table.rst"),
        csv=report(f"{R}/tables/symmetry_report.csv", category="Tables", caption="../report/table.rst"),
    params:
        archs=" ".join(config["grid"]["architectures"]),
        reused=" ".join(J.reused_kernels(config)),
        spec=lambda wc: spec_json(
            kernels={k: config["kernels"][k] for k in ("engine", "precision")},
            device=config["device"],
            seed=config["kernel_seeds"][0],
        ),
    conda:
        "../../envs/study.yaml"
    log:
        f"{R}/logs/symmetry_report.log",
    resources:
        mem_mb=8000,
    shell:
        "python -m synsym.cli symmetry --grid {input.grid} --kernels {input.kernels} --archs {params.archs} "
        "--reused {params.reused} --split {input.split} --spec {params.spec:q} "
        "--out {output.table} --csv {output.csv} > {log} 2>&1"
