# Data: fetch (verify checksums) -> tokenize with the model's tokenizer -> packed training tokens + eval documents.


rule fetch_dataset:
    """A corpus as JSON lines {id, split, text}: a shipped file whose sha256 is checked, or a pinned hub dataset
    streamed up to what the config needs (a training split: the tokens of its largest fine-tune). fetch.json
    records the source, revision, document counts and the sha256 of what was written."""
    output:
        corpus=f"{R}/data/{{dataset}}/corpus.jsonl.gz",
        provenance=f"{R}/data/{{dataset}}/fetch.json",
    params:
        spec=lambda w: as_json(config["datasets"][w.dataset]),
        train_tokens=lambda w: pcfg.train_tokens_needed(config, w.dataset),
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
        " --out {output.corpus} --provenance {output.provenance} > {log} 2>&1"


rule tokenize:
    """Packed training tokens (documents joined, each opening with BOS: train.npy, written as the corpus streams
    through in bounded memory, memory-mapped by every training rank; train.idx.npz: document offsets) and the
    chosen evaluation documents, once per (dataset, tokenizer): sizes that share a tokenizer
    (`sizes.<size>.tokenizer`) share this job."""
    input:
        corpus=f"{R}/data/{{dataset}}/corpus.jsonl.gz",
        tokenizer=lambda w: size_tokenizer_dir(tok_size(w)),
    output:
        train=f"{R}/data/{{dataset}}/{{tok}}/train.npy",
        train_index=f"{R}/data/{{dataset}}/{{tok}}/train.idx.npz",
        eval=f"{R}/data/{{dataset}}/{{tok}}/eval.npz",
        stats=f"{R}/data/{{dataset}}/{{tok}}/stats.json",
    params:
        eval=lambda w: as_json(config["datasets"][w.dataset].get("eval")),
        seed=config["seed"],
    log:
        f"{R}/logs/tokenize/{{dataset}}/{{tok}}.log",
    benchmark:
        f"{R}/benchmarks/tokenize/{{dataset}}/{{tok}}.tsv"
    threads: lambda w: pcfg.data_job(config, tok_size(w))["cpus"]
    resources:
        runtime=lambda w: pcfg.data_job(config, tok_size(w))["runtime"],
        mem_mb=lambda w: pcfg.data_job(config, tok_size(w))["mem_mb"],
        cpus_per_task=lambda w, threads: threads,  # the rule's threads, not the profile's default
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/tokenize_corpus.py --corpus {input.corpus} --tokenizer {input.tokenizer} --eval {params.eval}"
        " --seed {params.seed} --train {output.train} --train-index {output.train_index} --eval-out {output.eval} --stats {output.stats} > {log} 2>&1"
