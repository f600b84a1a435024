# Data: fetch (verify checksums) -> tokenize with the model's tokenizer -> packed training tokens + eval documents.


rule fetch_dataset:
    """A corpus as JSON lines {id, split, text}: a shipped file whose sha256 is checked, or a pinned hub dataset
    streamed up to what the config needs (a training split: the tokens of its largest fine-tune). fetch.json
    records the source, revision, document counts and the sha256 of what was written."""
    output:
        corpus=f"{R}/data/{{dataset}}/corpus.jsonl.gz",
        provenance=f"{R}/data/{{dataset}}/fetch.json",
    params:
        spec=lambda w: as_json(targets.fetch_spec(config, w.dataset)),  # what decides the content (a local file: sha256)
        train_tokens=lambda w: targets.fetch_train_tokens(config, w.dataset),
        path=untracked(lambda w: shlex.quote(config["datasets"][w.dataset].get("path", ""))),  # sha256 compared
    log:
        f"{R}/logs/fetch_dataset/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/fetch_dataset/{{dataset}}.tsv"
    resources:
        runtime=lambda w: 1440 if config["datasets"][w.dataset]["source"] == "hub" else 30,
        mem_mb=8000,
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/fetch_dataset.py --spec {params.spec} --train-tokens {params.train_tokens}"
        " --path {params.path} --out {output.corpus} --provenance {output.provenance} > {log} 2>&1"


rule tokenize:
    """Packed training tokens (documents joined, each opening with BOS: train.npy, written as the corpus streams
    through in bounded memory, memory-mapped by every training rank; train.idx.npz: document offsets), once per
    (dataset, tokenizer): sizes that share a tokenizer (`sizes.<size>.tokenizer`) share this job."""
    input:
        corpus=f"{R}/data/{{dataset}}/corpus.jsonl.gz",
        tokenizer=lambda w: size_tokenizer_dir(tok_size(w)),
    output:
        train=f"{R}/data/{{dataset}}/{{tok}}/train.npy",
        train_index=f"{R}/data/{{dataset}}/{{tok}}/train.idx.npz",
        stats=f"{R}/data/{{dataset}}/{{tok}}/stats.json",
    log:
        f"{R}/logs/tokenize/{{dataset}}/{{tok}}.log",
    benchmark:
        f"{R}/benchmarks/tokenize/{{dataset}}/{{tok}}.tsv"
    threads: lambda w: sizing.data_job(config, tok_size(w))["cpus"]
    resources:
        runtime=lambda w: sizing.data_job(config, tok_size(w))["runtime"],
        mem_mb=lambda w: sizing.data_job(config, tok_size(w))["mem_mb"],
        cpus_per_task=lambda w, threads: threads,  # the rule's threads, not the profile's default
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/tokenize_corpus.py --corpus {input.corpus} --tokenizer {input.tokenizer}"
        " --train {output.train} --train-index {output.train_index} --stats {output.stats} > {log} 2>&1"


rule eval_docs:
    """The evaluation documents of a dataset (its `eval` block: style, count, length; seeded), tokenized from its
    test split. A rule of its own: choosing other documents rewrites no training tokens and retrains nothing."""
    input:
        corpus=f"{R}/data/{{dataset}}/corpus.jsonl.gz",
        tokenizer=lambda w: size_tokenizer_dir(tok_size(w)),
    output:
        eval=f"{R}/data/{{dataset}}/{{tok}}/eval.npz",
        stats=f"{R}/data/{{dataset}}/{{tok}}/eval-stats.json",
    params:
        eval=lambda w: as_json(config["datasets"][w.dataset].get("eval")),
        seed=config["seed"],
    log:
        f"{R}/logs/eval_docs/{{dataset}}/{{tok}}.log",
    benchmark:
        f"{R}/benchmarks/eval_docs/{{dataset}}/{{tok}}.tsv"
    resources:
        runtime=lambda w: sizing.data_job(config, tok_size(w))["runtime"],
        mem_mb=lambda w: sizing.data_job(config, tok_size(w))["mem_mb"],
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/tokenize_corpus.py --corpus {input.corpus} --tokenizer {input.tokenizer} --eval {params.eval}"
        " --seed {params.seed} --eval-out {output.eval} --stats {output.stats} > {log} 2>&1"
