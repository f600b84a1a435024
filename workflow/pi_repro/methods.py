"""Context-extension methods: how a base model of window L becomes a model of window L' = s L. Each method is one
entry here and says everything the pipeline needs of it: the RoPE parameters of the extended model, from the base
model's (transformers' own RoPE types: no patched attention), the window of its config, the window it trains at,
whether it is fine-tuned, its label and plot style. The schema's method enum, the wildcards, the step-0 models,
the checkpoint gate, the tables, figures and findings read it. Of the package, it imports only pi_repro.registry.

Methods (s = L'/L, d = the head dimension, θ = the base model's RoPE base):

* ``PI``: Position Interpolation (Chen et al. 2023), rope type ``linear`` with factor s: every position index is
  divided by s.
* ``FT``: direct fine-tuning at L', positions untouched (the paper's baseline).
* ``CT``: the control, the base model trained further at L on the same tokens (no extension at all).
* ``NTK``: NTK-aware scaling (bloc97, 2023): the RoPE base becomes θ' = θ s^(d/(d-2)) (rope type ``default``):
  the lowest frequency is interpolated by s, the highest barely changes.
* ``DynNTK``: dynamic NTK (emozilla, 2023; as the YaRN paper defines it, s = ℓ/L at a sequence of length ℓ > L),
  rope type ``dynamic`` with factor 1: the base is θ (ℓ/L)^(d/(d-2)), recomputed at inference; inside L it is the
  base model, and L' plays no part. transformers takes L from the config's ``max_position_embeddings``, so the
  extended config keeps L there. Inference only.
* ``YaRN``: Peng et al. (2023), rope type ``yarn``: NTK-by-parts (dimensions whose wavelength is short against L
  are kept, long ones interpolated by s, a linear ramp between the correction dimensions of β_fast = 32 and
  β_slow = 1 rotations over L) and the attention temperature √(1/t) = 0.1 ln s + 1 on the logits (transformers
  scales cos and sin by it). L goes in ``original_max_position_embeddings``; ``max_position_embeddings`` is L'.
* ``Llama3``: Llama 3.1's scaling (Meta's released code; rope type ``llama3``): wavelengths shorter than
  L / high_freq_factor (4) kept, longer than L / low_freq_factor (1) interpolated by s, a linear ramp in L/λ
  between; no attention temperature. Its three numbers are fixed, not searched per model.

Not here: LongRoPE (Ding et al. 2024; transformers' ``longrope``) rescales each dimension by a factor found by an
evolutionary search on the model being extended (``long_factor``, ``short_factor``), so it is not a rule from
(θ, L, L', d) and has no place in a registry of rules; a searched factor list could be one config's entry later.

A config made here for NTK, DynNTK or YaRN also records ``extension`` (method, L, L', θ): the checkpoint gate
(``check``) recomputes the RoPE parameters the method gives for them and refuses a checkpoint whose config lost
or changed its method's parameters.
"""
from __future__ import annotations

import math

from .registry import registrar

METHODS: dict = {}
NONE_ORDER = 0  # the base model's row ("None") comes first in every table


class Method:
    """An extension method. Subclasses define every name of ``REQUIRED``."""

    REQUIRED = ("label", "order", "style", "fine_tuning", "rope")
    name: str
    label: str  # as tables and figures show it
    order: int  # its rows' place in tables (the base model's is NONE_ORDER)
    style: tuple[str, str]  # matplotlib colour and marker
    fine_tuning: str  # "required" (steps > 0), "optional" (also read at step 0, without fine-tuning), "none"
    control: bool = False  # trained at L on the L'-long sequences: the base model trained further, no extension
    records_extension: bool = True  # its config records ``extension`` (the gate reads the base θ from it)

    def rope(self, theta: float, L: int, ctx: int, head_dim: int) -> dict:
        """The extended model's ``rope_parameters`` (rope_theta always included)."""
        raise NotImplementedError

    def positions(self, L: int, ctx: int) -> int:
        """The extended config's ``max_position_embeddings``."""
        return ctx

    def train_window(self, L: int, ctx: int) -> int:
        """The window it is fine-tuned at (and its own window in tables): L' for an extension, L for the control."""
        return L if self.control else ctx


def _plain_name_and_order(name: str, cls) -> None:
    if not name.isalnum():
        raise TypeError(f"method {name!r}: not a plain name (letters and digits: it is part of paths and wildcards)")
    if not 0 < cls.order < 10 or any(m.order == cls.order for m in METHODS.values()):
        raise TypeError(f"method {name!r}: order {cls.order} must be 1-9 and not another method's (tables sort "
                        "rows by window, then order)")


# Class decorator: add a method to METHODS; refuse one that does not define all of ``Method.REQUIRED``, whose name
# is not plain, whose order clashes, or that takes a name twice.
register = registrar(METHODS, Method, "method", "pi_repro.methods.Method; docs/adding-a-method.md",
                     _plain_name_and_order)


def ntk_theta(theta: float, s: float, head_dim: int) -> float:
    """NTK-aware scaling's RoPE base: θ s^(d/(d-2))."""
    return theta * s ** (head_dim / (head_dim - 2))


@register("FT")
class DirectFineTuning(Method):
    label, order, style, fine_tuning, records_extension = "FT", 1, ("tab:orange", "s"), "required", False

    def rope(self, theta, L, ctx, head_dim):
        return {"rope_type": "default", "rope_theta": theta}


@register("PI")
class PositionInterpolation(Method):
    label, order, style, fine_tuning, records_extension = "PI", 2, ("tab:blue", "^"), "optional", False

    def rope(self, theta, L, ctx, head_dim):
        return {"rope_type": "linear", "factor": ctx / L, "rope_theta": theta}


@register("NTK")
class NTKAware(Method):
    label, order, style, fine_tuning = "NTK-aware", 3, ("tab:green", "D"), "optional"

    def rope(self, theta, L, ctx, head_dim):
        return {"rope_type": "default", "rope_theta": ntk_theta(theta, ctx / L, head_dim)}


@register("DynNTK")
class DynamicNTK(Method):
    label, order, style, fine_tuning = "Dynamic NTK", 4, ("tab:olive", "v"), "none"

    def rope(self, theta, L, ctx, head_dim):
        # transformers' base at length ℓ > L is θ (f ℓ/L - (f - 1))^(d/(d-2)): f = 1 gives the YaRN paper's dynamic
        # scaling, s = ℓ/L at every length (f = s would scale by s ℓ/L - s + 1: 17x at 2L for s = 16)
        return {"rope_type": "dynamic", "factor": 1.0, "rope_theta": theta}

    def positions(self, L, ctx):
        return L  # transformers' dynamic RoPE reads the original window from max_position_embeddings


@register("YaRN")
class YaRN(Method):
    label, order, style, fine_tuning = "YaRN", 5, ("tab:red", "*"), "optional"
    beta_fast, beta_slow = 32, 1

    def rope(self, theta, L, ctx, head_dim):
        s = ctx / L
        return {"rope_type": "yarn", "factor": s, "original_max_position_embeddings": L, "rope_theta": theta,
                "beta_fast": self.beta_fast, "beta_slow": self.beta_slow, "attention_factor": 0.1 * math.log(s) + 1}


@register("Llama3")
class Llama3(Method):
    label, order, style, fine_tuning = "Llama-3", 6, ("tab:purple", "P"), "optional"
    low_freq_factor, high_freq_factor = 1.0, 4.0

    def rope(self, theta, L, ctx, head_dim):
        return {"rope_type": "llama3", "factor": ctx / L, "original_max_position_embeddings": L, "rope_theta": theta,
                "low_freq_factor": self.low_freq_factor, "high_freq_factor": self.high_freq_factor}


@register("CT")
class Control(Method):
    label, order, style, fine_tuning, control, records_extension = "CT (control)", 9, ("tab:gray", "x"), "required", \
        True, False

    def rope(self, theta, L, ctx, head_dim):
        return {"rope_type": "default", "rope_theta": theta}

    def positions(self, L, ctx):
        return L


def carries(rope: dict, want: dict) -> bool:
    """A checkpoint's ``rope_parameters`` carry ``want``: every key of it, numbers equal to 1e-9 relative (keys the
    method does not set, e.g. a hub config's own, may be there too)."""
    def same(a, b):
        if isinstance(b, (int, float)) and not isinstance(b, bool) and isinstance(a, (int, float)):
            return math.isclose(a, b, rel_tol=1e-9)
        return a == b

    return all(k in rope and same(rope[k], v) for k, v in want.items())


def check(config: dict, method: str, ctx: int, L: int) -> dict:
    """The checkpoint gate: the RoPE parameters and window a checkpoint's config (``config.json`` as a dict) must
    carry for ``method`` at window ``ctx`` from L (the base model, method "None": no scaling); raises naming both
    if it does not. Returns its RoPE parameters."""
    rope = dict(config.get("rope_parameters") or {"rope_type": "default"})
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    if method == "None":
        if rope.get("rope_type", "default") != "default":
            raise RuntimeError(f"the base model has position scaling {rope}; it must have none")
        return rope
    m = METHODS[method]
    ext = config.get("extension")
    if m.records_extension:
        if not ext or (ext.get("method"), ext.get("ctx"), ext.get("base_window")) != (method, ctx, L):
            raise RuntimeError(f"a {method} checkpoint of window {ctx} from L = {L} must record its extension "
                               f"(config 'extension'); it has {ext}: its method's parameters were lost or changed")
        theta = float(ext["base_rope_theta"])
    else:
        theta = float(rope.get("rope_theta", 10000.0))
    want = m.rope(theta, L, ctx, head_dim)
    if config.get("max_position_embeddings") != m.positions(L, ctx):
        raise RuntimeError(f"the checkpoint's window (max_position_embeddings) is "
                           f"{config.get('max_position_embeddings')}; a {method} model of window {ctx} from L = {L} "
                           f"has {m.positions(L, ctx)}")
    if not carries(rope, want):
        raise RuntimeError(f"the checkpoint's rope_parameters are {rope}; a {method} model of window {ctx} from "
                           f"L = {L} must have {want}")
    return rope
