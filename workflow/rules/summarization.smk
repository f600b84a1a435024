# Table 6: long-document summarization (the paper's Section 3.4, GovReport). Each checkpoint a summarization table
# lists is fine-tuned to summarize the dataset's train split at its own window (PI keeps its position scaling; the
# base model and CT at L with the document cut to fit), then summarizes the test split (sampled, seeded), scored
# by ROUGE-1/2/L with rouge-score; the LEAD baseline is scored the same way (pi_repro.summarization).


rule summarize_finetune:
    """Fine-tune one checkpoint to summarize for the configured epochs (loss on the summary tokens only), export
    its last step and write finetune.json last (checksums, the logit-probe check of the export). Resources and
    launch (torchrun, srun across nodes, ZeRO-3) as the checkpoint's own fine-tune; resumes after an interruption."""
    input:
        model=model_input,
        corpus=f"{R}/data/{{dataset}}/corpus.jsonl.gz",
    output:
        f"{R}/models/{{size}}/summarize-{{dataset}}/{{model}}/finetune.json",
    params:
        init=lambda w: f"{R}/models/{w.size}/{w.model}",
        hp=lambda w: as_json(summarization.hparams(config, w.size, w.model)),
        spec=as_json(summarization_slice(SUMMARIZATION, "finetune")),
        method=lambda w: targets.model_coords(config, w.size, w.model)["method"],
        ctx=lambda w: targets.model_coords(config, w.size, w.model)["ctx"],
        L=L,
        outdir=lambda w: targets.summarizer_dir(R, w.dataset, w.size, w.model),
        history=f"{R}/logs/summarize_finetune/{{dataset}}/{{size}}/{{model}}.attempts.log",
        launch=untracked(train_launch_args),  # where it runs, not what it computes
    log:
        f"{R}/logs/summarize_finetune/{{dataset}}/{{size}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/summarize_finetune/{{dataset}}/{{size}}/{{model}}.tsv"
    threads: train_threads
    priority: 5  # Table 6 waits on a fine-tune, a generation and the scoring after it
    retries: None if workflow.remote_exec else sizing.finetune_retries(config)
    resources:
        **train_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "(echo \"=== $(date -Is) SLURM job ${{SLURM_JOB_ID:-none}} on $(hostname)\";"
        " python -u workflow/scripts/launch.py {params.launch} -- workflow/scripts/summarize_finetune.py"
        " --init {params.init} --method {params.method} --ctx {params.ctx} --base-window {params.L} --hp {params.hp}"
        " --spec {params.spec} --corpus {input.corpus} --outdir {params.outdir} --manifest {output})"
        " 2>&1 | tee -a {params.history} > {log}"


rule summarize:
    """The test split's summaries by one summarization fine-tune: the paper's prompt, the document cut to the
    model's window, sampled (temperature, top-p) and seeded, batched; kept as JSON lines (id, summary, reference)."""
    input:
        finetune=f"{R}/models/{{size}}/summarize-{{dataset}}/{{model}}/finetune.json",
        corpus=f"{R}/data/{{dataset}}/corpus.jsonl.gz",
    output:
        f"{R}/eval/summaries/{{dataset}}/{{size}}/{{model}}/summaries.jsonl",
    params:
        spec=as_json(summarization_slice(SUMMARIZATION, "generate")),
        seed=config["seed"],
    log:
        f"{R}/logs/summarize/{{dataset}}/{{size}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/summarize/{{dataset}}/{{size}}/{{model}}.tsv"
    resources:
        **eval_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/summarize.py --manifest {input.finetune} --spec {params.spec}"
        " --corpus {input.corpus} --seed {params.seed} --out {output} > {log} 2>&1"


rule rouge:
    """ROUGE-1/2/L F1 of one model's summaries (rouge-score, stemming): per document and the corpus mean."""
    input:
        summaries=f"{R}/eval/summaries/{{dataset}}/{{size}}/{{model}}/summaries.jsonl",
        finetune=f"{R}/models/{{size}}/summarize-{{dataset}}/{{model}}/finetune.json",
    output:
        eval_record("rouge"),
    params:
        spec=as_json(summarization_slice(SUMMARIZATION, "score")),
        coords=lambda w: eval_params(w, "rouge"),
    log:
        f"{R}/logs/rouge/{{dataset}}/{{size}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/rouge/{{dataset}}/{{size}}/{{model}}.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/rouge.py --summaries {input.summaries} --finetune {input.finetune}"
        " --spec {params.spec} --coords {params.coords} --out {output} > {log} 2>&1"


rule rouge_lead:
    """The LEAD baseline (the first sentence of the lead section) on the same test documents, scored the same way."""
    input:
        corpus=f"{R}/data/{{dataset}}/corpus.jsonl.gz",
    output:
        f"{R}/eval/rouge/{{dataset}}/lead/rouge.json",
    params:
        spec=as_json(summarization_slice(SUMMARIZATION, "lead")),
        seed=config["seed"],
        coords=lambda w: as_json({"task": "rouge", "dataset": w.dataset, "method": "LEAD"}),
    log:
        f"{R}/logs/rouge/{{dataset}}/lead.log",
    benchmark:
        f"{R}/benchmarks/rouge/{{dataset}}/lead.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/rouge.py --lead --corpus {input.corpus} --spec {params.spec} --seed {params.seed}"
        " --coords {params.coords} --out {output} > {log} 2>&1"
