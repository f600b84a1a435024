"""A table kind from outside the package (a config's ``plugins``), built by tests/test_kinds.py through Snakemake:
each listed model's perplexity at every evaluation window up to its own (the base model: up to 2L), over its
perplexity at L. It reuses the perplexity task: its cells are perplexity records, so it adds no rule."""
from pi_repro import targets
from pi_repro.kinds import Kind, register


@register("ratio")
class Ratio(Kind):
    task = "ppl"
    fmt = "{:.3f}"
    schema = {"required": ["dataset", "rows"]}
    tolerance = None  # no published cells
    findings_read = {"R": "PI's perplexity grows less from L to L' than the base model's (ratio tables)"}

    def validate(self, cfg, name, spec):
        for i, row in enumerate(spec["rows"]):
            if row["method"] != "None" and targets.find_extension(cfg, row["size"], row["method"], row["ctx"]) is None:
                targets.fail(f"tables.{name}.rows[{i}]", f"no extension {row} in extensions")

    def cells(self, cfg, spec):
        out = []
        for row in spec["rows"]:
            ext = None if row["method"] == "None" else targets.find_extension(cfg, row["size"], row["method"],
                                                                               row["ctx"])
            model, top = ("base", 2 * cfg["base_window"]) if ext is None else (targets.final_model(ext), ext["ctx"])
            out += [(self.task, spec["dataset"], row["size"], model, w) for w in cfg["perplexity"]["windows"]
                    if w <= top]
        return out

    def layout(self, cfg, spec):
        return {"L": cfg["base_window"]}

    def frame(self, records, L):
        import pandas as pd

        rows = []
        for r in records:
            ppl = {int(w): x["perplexity"] for w, x in r["windows"].items()}
            rows.append({"size": r["size"], "method": r["method"], "model_ctx": r["ctx"],
                         **{str(w): ppl[w] / ppl[L] for w in sorted(ppl)}})
        return pd.DataFrame(rows).sort_values(["size", "model_ctx", "method"]).reset_index(drop=True)

    def note(self, records):
        return "Perplexity at each window over the same model's perplexity at L (a plugin's table kind)."

    def findings(self, name, table, run):
        from pi_repro.findings import result

        t, out = table["frame"], []
        for _, row in t[t["method"] == "PI"].iterrows():
            ctx, base = str(int(row["model_ctx"])), t[(t["method"] == "None") & (t["size"] == row["size"])]
            none = None if base.empty or ctx not in base.columns else base.iloc[0][ctx]
            out.append(result("R", f"{name} {row['size']} PI-{ctx}", self.findings_read["R"],
                              None if none is None else row[ctx] < none,
                              {f"PI-{ctx} ratio at {ctx}": row[ctx], f"None ratio at {ctx}": none}))
        return out

    def paper_cell(self, cfg, spec, cell, ext):
        return None  # the paper has no such table
