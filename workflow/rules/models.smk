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


rule base_model:
    """The base model of a size: shipped weights (checksums verified), hub weights (pinned revision), or
    pretrained here at the base window L."""
    input:
        unpack(base_model_inputs),
    output:
        directory(f"{R}/models/{{size}}/base"),
    params:
        spec=lambda w: as_json(size_cfg(w)["base"]),
        window=L,
        seed=config["seed"],
    log:
        f"{R}/logs/base_model/{{size}}.log",
    benchmark:
        f"{R}/benchmarks/base_model/{{size}}.tsv"
    threads: 2
    resources:
        runtime=lambda w: res(w, "train_runtime", 60),
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/base_model.py --spec {params.spec} --window {params.window} --seed {params.seed} --out {output}"
        " {input} > {log} 2>&1"


rule init_extension:
    """Step 0 of an extension: the base weights under the extended config (PI: rope_parameters linear, factor s)."""
    input:
        base=lambda w: base_dir(w.size),
    output:
        directory(f"{R}/models/{{size}}/{{ext}}/step0"),
    params:
        L=L,
        method=lambda w: ext_cfg(w)["method"],
        ctx=lambda w: ext_cfg(w)["ctx"],
    log:
        f"{R}/logs/init_extension/{{size}}/{{ext}}.log",
    benchmark:
        f"{R}/benchmarks/init_extension/{{size}}/{{ext}}.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/init_extension.py --base {input.base} --method {params.method} --ctx {params.ctx}"
        " --base-window {params.L} --out {output} > {log} 2>&1"


rule finetune:
    """One fine-tuning run: exports step{N} checkpoints beside finetune.json (written last, with checksums and
    the logit-probe check of every export). Resumes from the Trainer state in _trainer/ when rerun after an
    interruption. Ranks: train_nodes x train_gpus_per_node (torchrun; srun + torchrun across nodes), DeepSpeed
    ZeRO-3 when train.deepspeed names a config."""
    input:
        init=f"{R}/models/{{size}}/{{ext}}/step0",
        data=finetune_data,
    output:
        f"{R}/models/{{size}}/{{ext}}/finetune.json",
    params:
        hp=lambda w: as_json(pcfg.train_hparams(config, ext_cfg(w))),
        method=lambda w: ext_cfg(w)["method"],
        ctx=lambda w: ext_cfg(w)["ctx"],
        checkpoints=lambda w: ",".join(str(c) for c in ext_cfg(w)["checkpoints"]),
        L=L,
        outdir=lambda w: f"{R}/models/{w.size}/{w.ext}",
        launch=lambda w: f"--nodes {train_nodes(w)} --gpus-per-node {train_gpus(w)} --procs-per-node {train_procs(w)}"
        + (f" --cpus-per-node {res(w, 'train_cpus_per_node', 0)}" if res(w, "train_cpus_per_node", 0) else ""),
    log:
        f"{R}/logs/finetune/{{size}}/{{ext}}.log",
    benchmark:
        f"{R}/benchmarks/finetune/{{size}}/{{ext}}.tsv"
    threads: 2
    resources:
        runtime=lambda w: res(w, "train_runtime", 60),
        nodes=train_nodes,
        cpus_per_task=lambda w, threads: res(w, "train_cpus_per_node", threads),
        mem_mb=lambda w: res(w, "train_mem_mb", 16000),
        gpu=lambda w: None if multi_node(w) else (train_gpus(w) or None),
        mpi=lambda w: "srun" if multi_node(w) else None,
        tasks=lambda w: train_nodes(w) if multi_node(w) else None,
        slurm_extra=lambda w: f"--gpus-per-node={train_gpus(w)}" if multi_node(w) and train_gpus(w) else None,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/launch.py {params.launch} -- workflow/scripts/finetune.py --init {input.init}"
        " --method {params.method} --ctx {params.ctx} --base-window {params.L} --hp {params.hp}"
        " --checkpoints {params.checkpoints} --outdir {params.outdir} --manifest {output} {input.data} > {log} 2>&1"


rule base_models:
    """Target: the base model of every size (e.g. to regenerate the shipped one with config/pretrain.yaml)."""
    input:
        [base_dir(size) for size in SIZES],
