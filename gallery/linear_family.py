"""The linear-attention family (Katharopoulos et al.; Lightning Attention; GLA; DeltaNet)."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry

KATHAROPOULOS = "Katharopoulos et al., Transformers are RNNs (2020); Lightning Attention-2 (2024)"


@entry("linear_attention", "Causal linear attention", KATHAROPOULOS)
def linear_attention():
    """o_t = φ(q_t)·S_t / φ(q_t)·z_t with S_t = Σ_{s<=t} φ(k_s) v_sᵀ and z_t = Σ_{s<=t} φ(k_s).

    Drawn in its recurrent form, so that its cost is visibly linear in T; the compiler lowers the
    outer product → scan → contraction chain to the chunked kernel of ncd.ops, which never keeps
    the running states in memory.
    """
    b = Builder(
        "linear_attention",
        title="Causal linear attention",
        paper=KATHAROPOULOS,
        doc="Feature map φ = elu + 1; running state K×V per position; no softmax.",
        sizes={"B": 2, "H": 4, "T": 16, "K": 8, "V": 8},
    )
    q = b.input("q", "B H T K")
    k = b.input("k", "B H T K")
    v = b.input("v", "B H T V")
    with b.group("Feature map φ"):
        fq = b.unary(q, "elu_plus_one", name="phi_q", label="φ")
        fk = b.unary(k, "elu_plus_one", name="phi_k", label="φ")
    kv = b.contract(fk, v, over="", name="outer")  # B H T K V
    state = b.scan(kv, "T", name="state")  # running Σ_{s<=t}
    num = b.contract(fq, state, over="K", name="read")  # B H T V
    z = b.scan(fk, "T", name="norm_state")  # B H T K
    den = b.contract(fq, z, over="K", name="read_norm")  # B H T
    b.output("y", b.div(num, den, name="normalise"))
    return b.build()
