# Tables 1-3 in the paper's layout (Markdown, CSV, LaTeX), the perplexity-vs-window figure, and the findings
# check that reads the tables and prints each of the paper's claims with the numbers it used.


rule table1:
    """Table 1: PG19(-style) perplexity of every model at every evaluation window up to its own."""
    input:
        table_inputs("table1"),
    output:
        **table_outputs("table1"),
    params:
        title="Table 1",
    log:
        f"{R}/logs/tables/table1.log",
    benchmark:
        f"{R}/benchmarks/tables/table1.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/make_table.py --kind windows --title '{params.title}' --md {output.md} --csv {output.csv} --tex {output.tex} {input} > {log} 2>&1"


rule table2:
    """Table 2: proof-pile(-style) perplexity, same layout as Table 1."""
    input:
        table_inputs("table2"),
    output:
        **table_outputs("table2"),
    params:
        title="Table 2",
    log:
        f"{R}/logs/tables/table2.log",
    benchmark:
        f"{R}/benchmarks/tables/table2.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/make_table.py --kind windows --title '{params.title}' --md {output.md} --csv {output.csv} --tex {output.tex} {input} > {log} 2>&1"


rule table3:
    """Table 3: PI perplexity at the extended window after 0, ..., N fine-tuning steps."""
    input:
        table_inputs("table3"),
    output:
        **table_outputs("table3"),
    params:
        title="Table 3",
    log:
        f"{R}/logs/tables/table3.log",
    benchmark:
        f"{R}/benchmarks/tables/table3.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/make_table.py --kind steps --title '{params.title}' --md {output.md} --csv {output.csv} --tex {output.tex} {input} > {log} 2>&1"


rule figure_ppl_vs_window:
    """Perplexity against evaluation window, one line per model, one panel per dataset."""
    input:
        t1=table_inputs("table1"),
        t2=table_inputs("table2"),
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
    """The paper's perplexity findings checked on this run's tables: each printed with its numbers, pass or fail."""
    input:
        t1=f"{R}/tables/table1.csv",
        t2=f"{R}/tables/table2.csv",
        t3=f"{R}/tables/table3.csv",
    output:
        md=f"{R}/findings.md",
        json=f"{R}/findings.json",
    params:
        L=L,
    log:
        f"{R}/logs/findings/findings.log",
    benchmark:
        f"{R}/benchmarks/findings/findings.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/findings.py --base-window {params.L} --table1 {input.t1} --table2 {input.t2} --table3 {input.t3}"
        " --out-md {output.md} --out-json {output.json} > {log} 2>&1; cat {output.md}"
