# RULER beyond the paper (the ruler tables, pi_repro.ruler): every checkpoint a ruler table lists, at the prompt
# lengths it lists, through lm-evaluation-harness's synthetic RULER tasks; the prompts are generated, so the
# record's dataset is "synthetic".


rule ruler:
    """Per length each RULER task's score and their mean, and every sample (prompt, target, greedy output, score)
    of one checkpoint; seeded prompts (a rerun asks the same)."""
    input:
        model=model_input,
    output:
        eval_record("ruler", dataset=RULER_DATASET),
    params:
        ckpt=lambda w: f"{R}/models/{w.size}/{w.model}",
        lengths=lambda w: ",".join(map(str, kinds.eval_windows(config, "ruler", RULER_DATASET, w.size, w.model))),
        coords=lambda w: eval_params(w, "ruler", RULER_DATASET),
        p=targets.ruler_protocol(config),
        tasks=",".join(targets.ruler_protocol(config)["tasks"]),
        L=L,
        seed=config["seed"],
    log:
        f"{R}/logs/ruler/{{size}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/ruler/{{size}}/{{model}}.tsv"
    resources:
        **eval_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/ruler.py --model {params.ckpt} --tasks {params.tasks} --lengths {params.lengths}"
        " --samples {params.p[samples]} --batch-size {params.p[batch_size]} --base-window {params.L}"
        " --seed {params.seed} --coords {params.coords} --out {output} > {log} 2>&1"
