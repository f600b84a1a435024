# Table 5: zero-shot multiple-choice benchmarks through lm-evaluation-harness at the original window. Tasks the
# config builds from a dataset's held-out test split (the default's offline stand-ins) are made by
# benchmark_task in the harness's own format; the paper's are the harness's (and the shipped RACE-middle).


rule benchmark_task:
    """One task built from a dataset's test split (pi_repro.benchmarks): items as JSON lines and the harness's
    task definition reading them; contexts counted in the size's tokenizer, seeded."""
    input:
        corpus=lambda w: f"{R}/data/{targets.built_benchmarks(config)[w.task]['dataset']}/corpus.jsonl.gz",
        tokenizer=tokenizer_dir,
    output:
        docs=f"{R}/data/benchmarks/{{size}}/{{task}}.jsonl",
        yaml=f"{R}/data/benchmarks/{{size}}/{{task}}.yaml",
    params:
        recipe=lambda w: as_json(targets.built_benchmarks(config)[w.task]),
        seed=config["seed"],
    log:
        f"{R}/logs/benchmark_task/{{size}}/{{task}}.log",
    benchmark:
        f"{R}/benchmarks/benchmark_task/{{size}}/{{task}}.tsv"
    resources:
        runtime=lambda w: sizing.data_job(config, w.size)["runtime"],
        mem_mb=lambda w: sizing.data_job(config, w.size)["mem_mb"],
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/make_benchmark.py --task {wildcards.task} --recipe {params.recipe}"
        " --corpus {input.corpus} --tokenizer {input.tokenizer} --seed {params.seed} --items {output.docs}"
        " --yaml {output.yaml} > {log} 2>&1"


rule fetch_benchmarks:
    """The hub datasets of the harness's tasks (the paper's Table 5), downloaded once into the run's cache where
    there is internet (`snakemake downloads`); the benchmark jobs then read that cache offline."""
    output:
        f"{R}/data/benchmarks/fetch.json",
    params:
        tasks=",".join(targets.harness_benchmarks(config)),
        include=config.get("benchmarks", {}).get("include", ""),
        cache=BENCH_CACHE,
    log:
        f"{R}/logs/fetch_benchmarks/fetch.log",
    benchmark:
        f"{R}/benchmarks/fetch_benchmarks/fetch.tsv"
    resources:
        runtime=240,
        mem_mb=16000,
    conda:
        "../envs/pi.yaml"
    shell:
        "HF_DATASETS_CACHE={params.cache} python -u workflow/scripts/fetch_benchmarks.py --tasks {params.tasks}"
        " --include '{params.include}' --out {output} > {log} 2>&1"


rule benchmark:
    """Every benchmark task of one checkpoint through the harness, inputs limited to the original window, the
    checkpoint's position scaling checked before scoring; the harness's per-sample log kept."""
    input:
        model=model_input,
        tasks=benchmark_task_files,
        fetched=lambda w: [f"{R}/data/benchmarks/fetch.json"] if targets.harness_benchmarks(config) else [],
    output:
        eval_record("bench", dataset=BENCH_DATASET),
    params:
        ckpt=lambda w: f"{R}/models/{w.size}/{w.model}",
        # a set of tasks (in name order): the order the config lists them in is Table 5's layout (rule table), not
        # this job's result
        tasks=as_json(sorted([n, t["label"]] for n, t in config.get("benchmarks", {}).get("tasks", {}).items())),
        include=lambda w: ",".join(benchmark_includes(w)),
        cache=BENCH_CACHE,
        window=targets.benchmark_window(config),
        batch=config.get("benchmarks", {}).get("batch_size", 8),
        data=lambda w: ",".join(targets.model_finetune_data(config, w.size, w.model)),
        coords=lambda w: eval_params(w, "bench", BENCH_DATASET),
        seed=config["seed"],
        L=L,
    log:
        f"{R}/logs/benchmark/{{size}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/benchmark/{{size}}/{{model}}.tsv"
    resources:
        **eval_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "HF_DATASETS_CACHE={params.cache} HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1"
        " python -u workflow/scripts/benchmark.py --model {params.ckpt} --tasks {params.tasks}"
        " --include '{params.include}' --window {params.window} --base-window {params.L}"
        " --batch-size {params.batch} --finetune-data '{params.data}' --seed {params.seed} --coords {params.coords}"
        " --out {output} > {log} 2>&1"
