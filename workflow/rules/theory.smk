# Section 2.3: the theory figure (Figure 2, with Figure 5's B(s)/d) and Theorem 2.1 checked numerically. It
# depends on no model: the paper's setting (d = 128, c = 10000, L = 2048) unless the config's `theory` says else.


rule figure2:
    """a(s) fitted by least squares on [0, L], its extrapolation beyond L, its interpolation between integers;
    Theorem 2.1's bound checked at random fractional points; the extrapolation/interpolation bound ratio."""
    output:
        png=report(f"{R}/figures/figure2.png", caption="../report/figure2.rst", category="Theory (Section 2.3)"),
        json=f"{R}/theory/figure2.json",
    params:
        t=targets.theory(config),
    log:
        f"{R}/logs/figures/figure2.log",
    benchmark:
        f"{R}/benchmarks/figures/figure2.tsv"
    conda:
        "../envs/pi.yaml"
    shell:
        "python -u workflow/scripts/figure2.py --d {params.t[d]} --c {params.t[c]} --window {params.t[window]}"
        " --points {params.t[points]} --seed {params.t[seed]} --out {output.png} --json {output.json} > {log} 2>&1"
