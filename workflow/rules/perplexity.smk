# Tables 1-3: sliding-window perplexity (stride S) of every checkpoint the tables need.


rule perplexity:
    """Perplexity of one checkpoint on one dataset at every window the tables need of it, with per-document
    values and a bootstrap CI over documents for each window."""
    input:
        model=model_input,
        docs=lambda w: tokenized(w.dataset, w.size, "eval.npz"),
    output:
        eval_record("ppl"),
    params:
        stride=config["perplexity"]["stride"],
        batch=config["perplexity"].get("batch_size", 8),
        boot=config["perplexity"].get("bootstrap", 1000),
        seed=config["seed"],
        ckpt=lambda w: f"{R}/models/{w.size}/{w.model}",
        windows=lambda w: ",".join(map(str, pcfg.eval_windows(config, "ppl", w.dataset, w.size, w.model))),
        coords=lambda w: eval_params(w, "ppl"),
    log:
        f"{R}/logs/perplexity/{{dataset}}/{{size}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/perplexity/{{dataset}}/{{size}}/{{model}}.tsv"
    resources:
        **eval_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/perplexity.py --model {params.ckpt} --docs {input.docs} --windows {params.windows}"
        " --stride {params.stride} --batch-size {params.batch} --bootstrap {params.boot} --seed {params.seed}"
        " --coords {params.coords}"
        " --out {output} > {log} 2>&1"
