# Table 4: passkey retrieval (the paper's Section 3.3) of every checkpoint a passkey table lists, at the windows
# it lists; the prompts are generated (pi_repro.passkey), so the record's dataset is "synthetic".


rule passkey:
    """k_max, per-k accuracy (Wilson 95% interval) and every trial of one checkpoint at every window the tables
    need of it; greedy decoding, seeded keys (a rerun asks the same prompts)."""
    input:
        model=model_input,
    output:
        eval_record("passkey", dataset=PASSKEY_DATASET),
    params:
        ckpt=lambda w: f"{R}/models/{w.size}/{w.model}",
        windows=lambda w: ",".join(map(str, kinds.eval_windows(config, "passkey", PASSKEY_DATASET, w.size, w.model))),
        coords=lambda w: eval_params(w, "passkey", PASSKEY_DATASET),
        p=targets.passkey_protocol(config),
        intro="--intro" if targets.passkey_protocol(config)["intro"] else "--no-intro",
        seed=config["seed"],
    log:
        f"{R}/logs/passkey/{{size}}/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/passkey/{{size}}/{{model}}.tsv"
    resources:
        **eval_resources,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/passkey.py --model {params.ckpt} --windows {params.windows}"
        " --num-k {params.p[num_k]} --trials {params.p[trials]} --threshold {params.p[threshold]} {params.intro}"
        " --batch-size {params.p[batch_size]} --seed {params.seed} --coords {params.coords} --out {output}"
        " > {log} 2>&1"


rule figure_passkey:
    """Passkey accuracy against k (Wilson 95% band), one panel per model and window, one line per step."""
    input:
        figure_inputs("passkey"),
    output:
        report(f"{R}/figures/passkey.png", caption="../report/passkey.rst", category="Passkey retrieval"),
    params:
        L=L,
    log:
        f"{R}/logs/figures/passkey.log",
    benchmark:
        f"{R}/benchmarks/figures/passkey.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/plot_passkey.py --base-window {params.L} --out {output} {input} > {log} 2>&1"
