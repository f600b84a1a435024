# Tables 1-3: sliding-window perplexity (stride S) of every checkpoint the tables need.


rule perplexity:
    """Perplexity of one checkpoint on one dataset at every window the tables need of it, with per-document
    values and a bootstrap CI over documents for each window. An evaluation split into shards (perplexity.shards,
    perplexity.shard_hours) is merged here from its shards' records, on a CPU: the same record, exactly."""
    input:
        unpack(perplexity_inputs),
    output:
        eval_record("ppl"),
    params:
        # from the wildcards alone: Snakemake compares no param that is a function of the job's input
        args=perplexity_args,
        boot=config["perplexity"].get("bootstrap", 1000),
        seed=config["seed"],
    log:
        f"{R}/logs/perplexity/{{dataset}}/{{size}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/perplexity/{{dataset}}/{{size}}/{{model}}.tsv"
    resources:
        **perplexity_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/perplexity.py {params.args} --bootstrap {params.boot} --seed {params.seed}"
        " --out {output} > {log} 2>&1"


rule perplexity_shard:
    """One shard of a long perplexity evaluation: the documents of the shard-th of `shards` contiguous,
    token-balanced document ranges, at every window; per-document sums only (rule perplexity merges them)."""
    input:
        model=model_input,
        docs=lambda w: tokenized(w.dataset, w.size, "eval.npz"),
    output:
        f"{R}/eval/ppl/{{dataset}}/{{size}}/{{model}}/shards/{{shard}}-of-{{shards}}.json",
    params:
        args=ppl_eval_args,
    log:
        f"{R}/logs/perplexity/{{dataset}}/{{size}}/{{model}}/{{shard}}-of-{{shards}}.log",
    benchmark:
        f"{R}/benchmarks/perplexity/{{dataset}}/{{size}}/{{model}}/{{shard}}-of-{{shards}}.tsv"
    resources:
        **eval_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/perplexity.py {params.args} --shard {wildcards.shard} {wildcards.shards}"
        " --out {output} > {log} 2>&1"
