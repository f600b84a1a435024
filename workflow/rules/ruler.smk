# RULER beyond the paper (the ruler tables, pi_repro.ruler): every checkpoint a ruler table lists, at the prompt
# lengths it lists, through lm-evaluation-harness's synthetic RULER tasks; the prompts are generated, so the
# record's dataset is "synthetic". A long job (ruler.shards, ruler.shard_hours) runs as shards merged exactly.


rule ruler:
    """Per length each RULER task's score and their mean, and every sample (prompt, target, greedy output, score)
    of one checkpoint; seeded prompts (a rerun asks the same). A job split into shards is merged here from its
    shards' records, on a CPU: the record the whole job writes (its samples and scores, exactly)."""
    input:
        unpack(ruler_inputs),
    output:
        eval_record("ruler", dataset=RULER_DATASET),
    params:
        # from the wildcards alone: Snakemake compares no param that is a function of the job's input
        args=ruler_args,
    log:
        f"{R}/logs/ruler/{{size}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/ruler/{{size}}/{{model}}.tsv"
    resources:
        **ruler_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/ruler.py {params.args} --out {output} > {log} 2>&1"


rule ruler_shard:
    """One shard of a long RULER job: the shard-th of `shards` contiguous shares of every task's prompts at every
    length (rule ruler merges them)."""
    input:
        unpack(ruler_eval_inputs),
    output:
        f"{R}/eval/ruler/{RULER_DATASET}/{{size}}/{{model}}/shards/{{shard}}-of-{{shards}}.json",
    params:
        args=ruler_eval_args,
    log:
        f"{R}/logs/ruler/{{size}}/{{model}}/{{shard}}-of-{{shards}}.log",
    benchmark:
        f"{R}/benchmarks/ruler/{{size}}/{{model}}/{{shard}}-of-{{shards}}.tsv"
    resources:
        **eval_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/ruler.py {params.args} --shard {wildcards.shard} {wildcards.shards}"
        " --out {output} > {log} 2>&1"


rule ruler_data:
    """One download RULER's essay and QA tasks read (pi_repro.ruler.SOURCES: Paul Graham's essays, NLTK's
    punkt_tab, SQuAD, HotpotQA), from its pinned URL, checked against its sha256 (a job that needs internet:
    `snakemake downloads` where there is some); the evaluation jobs hand it to the harness from disk."""
    output:
        data=f"{RULER_DATA}/{{rfile}}",
        provenance=f"{RULER_DATA}/{{rfile}}.fetch.json",
    params:
        spec=lambda w: as_json(next(s for s in RULER_SOURCES.values() if s["file"] == w.rfile)),
    log:
        f"{R}/logs/ruler_data/{{rfile}}.log",
    benchmark:
        f"{R}/benchmarks/ruler_data/{{rfile}}.tsv"
    resources:
        runtime=60,
        mem_mb=4000,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/fetch_ruler_data.py --spec {params.spec} --out {output.data}"
        " --provenance {output.provenance} > {log} 2>&1"


rule figure_ruler:
    """RULER's mean score against prompt length, one line per model, each model's effective length marked."""
    input:
        figure_inputs("ruler"),
    output:
        report(f"{R}/figures/ruler.png", caption="../report/ruler.rst", category="RULER"),
    params:
        L=L,
        threshold=ruler_figure_threshold(),
    log:
        f"{R}/logs/figures/ruler.log",
    benchmark:
        f"{R}/benchmarks/figures/ruler.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/plot_ruler.py --base-window {params.L} {params.threshold} --out {output} {input}"
        " > {log} 2>&1"
