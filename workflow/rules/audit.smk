# The audit (reproducibility): provenance of every artefact behind the run's targets (recorded by each job as it
# finished, pi_repro.provenance), re-hashed; a sample of finished jobs re-executed and compared; the claims
# (findings); with `audit.paper`, every cell of the paper's tables beside ours. `python workflow/scripts/audit.py
# verify results/{run}` re-checks a folder later, rerunning nothing.
check_audit_rules()  # every rule the audit section names exists, before any job runs


rule audit:
    """Provenance manifest of every artefact, determinism re-execution, claims, the paper side by side."""
    input:
        targets=audit_targets(),
        findings=f"{R}/findings.json",
    output:
        manifest=f"{R}/audit/provenance.json",
        json=f"{R}/audit/audit.json",
        md=f"{R}/audit/summary.md",
        html=report(f"{R}/audit/summary.html", category="Audit", labels={"page": "provenance, determinism, claims"}),
    params:
        run_dir=lambda w, output: str(Path(output.manifest).parents[1]),  # results/{run}
        sha=CONFIG_SHA256,  # the rerun trigger: what can change a result
        config=untracked(lambda w: as_json(config)),
        invocation=untracked(lambda w: as_json(snakemake_invocation())),
        scripts=as_json(rule_scripts()),
    log:
        f"{R}/logs/audit/audit.log",
    benchmark:
        f"{R}/benchmarks/audit/audit.tsv"
    threads: 2  # two re-executions at a time
    resources:
        runtime=audit_job()["runtime"],
        nodes=1,
        gpu=audit_job()["gpus"] or None,
        gpus_total=audit_job()["gpus"],
        slurm_partition=partition(audit_job()["gpus"]),
        constraint=gpu_constraint(audit_job()["gpus"]),
        cpus_per_task=lambda w, threads: threads,
        mem_mb=audit_job()["mem_mb"],
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/audit.py build --run-dir {params.run_dir} --config {params.config} --config-sha {params.sha}"
        " --invocation {params.invocation}"
        " --jobs {threads}"
        " --rule-scripts {params.scripts} --findings {input.findings} --manifest {output.manifest}"
        " --json {output.json} --md {output.md} --html {output.html} {input} > {log} 2>&1"
