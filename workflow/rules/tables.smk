# The tables (Markdown, CSV, LaTeX), one wildcard rule for every entry of the config's `tables:` (its kind, in
# pi_repro.kinds, says which records it reads and how it is laid out), a target rule named after each table
# (`snakemake table3`), the perplexity-vs-window figure, and the findings check.


rule table:
    """One table of the config (`tables.<name>`), laid out by its kind from the evaluation records it needs."""
    input:
        records=lambda w: table_inputs(w.table),
        quoted=lambda w: quoted_input(w.table),
    output:
        md=f"{R}/tables/{{table}}.md",
        csv=f"{R}/tables/{{table}}.csv",
        tex=f"{R}/tables/{{table}}.tex",
        html=report(f"{R}/tables/{{table}}.html", category="Tables", labels=lambda w: {"table": w.table}),
    params:
        kind=lambda w: config["tables"][w.table]["kind"],
        title=lambda w: shlex.quote(targets.table_title(w.table, config["tables"][w.table])),
        layout=lambda w: as_json(table_layout(w.table)),
        plugins=PLUGINS,
    log:
        f"{R}/logs/tables/{{table}}.log",
    benchmark:
        f"{R}/benchmarks/tables/{{table}}.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/make_table.py --kind {params.kind} --title {params.title} --md {output.md}"
        " --csv {output.csv} --tex {output.tex} --html {output.html} --table {wildcards.table} --quoted '{input.quoted}'"
        " --layout {params.layout} --plugins '{params.plugins}'"
        " {input.records} > {log} 2>&1"


for _table in TABLES:  # target rules named after the paper's artefacts: snakemake table1 ... table6

    rule:
        name:
            _table
        input:
            **table_outputs(_table),
        localrule: True
        default_target: False


rule figure_ppl_vs_window:
    """Perplexity against evaluation window, one line per model, one panel per dataset (windows tables)."""
    input:
        figure_inputs("ppl_vs_window"),
    output:
        report(f"{R}/figures/ppl_vs_window.png", caption="../report/ppl_vs_window.rst", category="Perplexity"),
    log:
        f"{R}/logs/figures/ppl_vs_window.log",
    benchmark:
        f"{R}/benchmarks/figures/ppl_vs_window.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/plot_ppl.py --out {output} {input} > {log} 2>&1"


rule findings:
    """The paper's findings checked on this run's tables: each printed with its numbers, pass, fail or n/a (with
    the reason: e.g. the config has no table of the kind it reads)."""
    input:
        tables=[table_outputs(t)["csv"] for t in TABLES],
        theory=f"{R}/theory/figure2.json",
    output:
        md=f"{R}/findings.md",
        json=f"{R}/findings.json",
        html=report(f"{R}/findings.html", category="Findings", labels={"page": "the paper's claims on this run"}),
    params:
        L=L,
        tables=as_json({targets.table_title(t, s): {"kind": s["kind"], "dataset": s.get("dataset"),
                                                  "csv": table_outputs(t)["csv"]} for t, s in config["tables"].items()}),
        hub=",".join(s for s, c in config["sizes"].items() if c["base"]["source"] == "hub"),
        # PI extensions without fine-tuning: finding 3 (about fine-tuned PI) is n/a for them
        untrained=",".join(f"{e['size']}:{e['ctx']}" for e in config["extensions"]
                           if e["steps"] == 0 and e["method"] == "PI"),
        plugins=PLUGINS,
    log:
        f"{R}/logs/findings/findings.log",
    benchmark:
        f"{R}/benchmarks/findings/findings.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/findings.py --base-window {params.L} --tables {params.tables}"
        " --hub-sizes '{params.hub}' --untrained '{params.untrained}' --theory {input.theory} --plugins '{params.plugins}' --out-md {output.md} --out-json {output.json} --out-html {output.html} > {log} 2>&1; cat {output.md}"
