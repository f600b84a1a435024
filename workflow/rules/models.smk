# Models: the base model per size, then PI / FT / CT extensions (step 0 = base weights under the extended
# config, no training; later steps from one fine-tuning run per extension).


rule train_tokenizer:
    """Byte-level BPE (digits split) on the training splits, for a base model pretrained here."""
    input:
        expand(f"{R}/data/{{dataset}}/corpus.jsonl.gz", dataset=config["finetune_data"]),
    output:
        directory(f"{R}/models/{{size}}/tokenizer"),
    params:
        vocab=lambda w: size_cfg(w)["base"]["vocab_size"],
    log:
        f"{R}/logs/train_tokenizer/{{size}}.log",
    benchmark:
        f"{R}/benchmarks/train_tokenizer/{{size}}.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/train_tokenizer.py --vocab-size {params.vocab} --out {output} {input} > {log} 2>&1"


rule download_model:
    """Hub weights at their pinned revision (a job that needs internet: transfer partition, or run `snakemake
    downloads` on a machine that has it)."""
    output:
        directory(f"{R}/models/{{size}}/download"),
    params:
        spec=lambda w: as_json(size_cfg(w)["base"]),
    log:
        f"{R}/logs/download_model/{{size}}.log",
    benchmark:
        f"{R}/benchmarks/download_model/{{size}}.tsv"
    resources:
        runtime=lambda w: sizing.data_job(config, w.size)["runtime"],
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/base_model.py --download-only --spec {params.spec} --window 0 --seed 0"
        " --out {output} > {log} 2>&1"


rule base_model:
    """The base model of a size: shipped weights (checksums verified), hub weights (pinned revision), or
    pretrained here at the base window L. Sealed (checkpoint.json: sha256 and a logit probe, recorded as the
    size's evaluations load the model: on their GPUs in bf16 where they have any, pi_repro.sizing.seal_job)."""
    input:
        unpack(base_model_inputs),
    output:
        directory(f"{R}/models/{{size}}/base"),
    params:
        spec=lambda w: as_json(targets.base_spec(config, w.size)),  # shipped weights: their SHA256SUMS, not their path
        path=untracked(lambda w: shlex.quote(size_cfg(w)["base"].get("path", ""))),
        window=L,
        seed=config["seed"],
    log:
        f"{R}/logs/base_model/{{size}}.log",
    benchmark:
        f"{R}/benchmarks/base_model/{{size}}.tsv"
    threads: 2
    resources:
        **seal_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/base_model.py --spec {params.spec} --path {params.path} --window {params.window}"
        " --seed {params.seed} --out {output}"
        " {input} > {log} 2>&1"


rule init_extension:
    """Step 0 of an extension: the base weights under the extended config (PI: rope_parameters linear, factor s),
    sealed like the base model (checkpoint.json, probe)."""
    input:
        base=lambda w: base_dir(w.size),
    output:
        directory(f"{R}/models/{{size}}/{{ext}}/step0"),
    params:
        L=L,
        method=lambda w: ext_cfg(w)["method"],
        ctx=lambda w: ext_cfg(w)["ctx"],
    priority: 10  # the fine-tunes wait on it
    log:
        f"{R}/logs/init_extension/{{size}}/{{ext}}.log",
    benchmark:
        f"{R}/benchmarks/init_extension/{{size}}/{{ext}}.tsv"
    resources:  # sealing loads the model once, as its evaluations will
        **seal_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/init_extension.py --base {input.base} --method {params.method} --ctx {params.ctx}"
        " --base-window {params.L} --out {output} > {log} 2>&1"


rule finetune:
    """One fine-tuning run: exports step{N} checkpoints beside finetune.json (written last, with checksums and
    the logit-probe check of every export). Resumes from the Trainer state in _trainer/ when rerun after an
    interruption. Ranks: train_nodes x train_gpus_per_node (torchrun; srun + torchrun across nodes), DeepSpeed
    ZeRO-3 when train.deepspeed names a config. A run longer than cluster.time_limit_min saves its state and
    exits (status 75) cluster.stop_margin_min before each job's limit; the rule's retries resubmit it."""
    input:
        init=f"{R}/models/{{size}}/{{ext}}/step0",
        data=finetune_data,
        index=finetune_index,
    output:
        f"{R}/models/{{size}}/{{ext}}/finetune.json",
    params:
        hp=lambda w: as_json(targets.train_hparams(config, ext_cfg(w))),
        method=lambda w: ext_cfg(w)["method"],
        ctx=lambda w: ext_cfg(w)["ctx"],
        checkpoints=lambda w: ",".join(str(c) for c in ext_cfg(w)["checkpoints"]),
        L=L,
        outdir=lambda w: f"{R}/models/{w.size}/{w.ext}",
        history=f"{R}/logs/finetune/{{size}}/{{ext}}.attempts.log",
        launch=untracked(train_launch_args),  # where and how it runs (ranks, CPUs, options), not what it computes
    log:
        f"{R}/logs/finetune/{{size}}/{{ext}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{size}}/{{ext}}.tsv"
    threads: train_threads
    priority: 10  # most jobs wait on a fine-tune: start each as soon as its step 0 exists (the critical path)
    # resubmissions by the main Snakemake process only: a job step must not retry inside its own (ending) allocation
    retries: None if workflow.remote_exec else sizing.finetune_retries(config)
    resources:
        **train_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        # the log holds this attempt (Snakemake clears it before a job runs); the history beside it keeps every
        # attempt of a resubmitted fine-tune, each under its own header
        "(echo \"=== $(date -Is) SLURM job ${{SLURM_JOB_ID:-none}} on $(hostname)\";"
        " python -u workflow/scripts/launch.py {params.launch} -- workflow/scripts/finetune.py --init {input.init}"
        " --method {params.method} --ctx {params.ctx} --base-window {params.L} --hp {params.hp}"
        " --checkpoints {params.checkpoints} --outdir {params.outdir} --manifest {output} {input.data})"
        " 2>&1 | tee -a {params.history} > {log}"


rule base_models:
    """Target: the base model of every size (e.g. to regenerate the shipped one with config/pretrain.yaml)."""
    input:
        [base_dir(size) for size in SIZES],


rule downloads:
    """Target: everything this configuration fetches from the Hugging Face hub (datasets, base weights), for a
    machine with internet when the cluster's compute nodes have none."""
    input:
        downloads(),


rule cluster_plan:
    """What every SLURM job of this configuration asks (nodes, GPUs, CPUs, memory, time, submissions):
    `snakemake cluster_plan --configfile config/paper.yaml` before submitting the paper."""
    output:
        f"{R}/cluster-plan.md",
    params:
        cfg=as_json(config),
    log:
        f"{R}/logs/cluster_plan.log",
    benchmark:
        f"{R}/benchmarks/cluster_plan.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/cluster_plan.py --config {params.cfg} --out {output} > {log} 2>&1; cat {output}"


rule plan:
    """What this configuration costs before it is launched: per target (all, each table), per rule and per job, the
    GPUs asked and the estimated GPU-hours (`snakemake plan --configfile config/paper.yaml`; assumptions: `cost`)."""
    output:
        f"{R}/plan.md",
    params:
        cfg=as_json(config),
    log:
        f"{R}/logs/plan.log",
    benchmark:
        f"{R}/benchmarks/plan.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/plan.py --config {params.cfg} --out {output} > {log} 2>&1; cat {output}"
