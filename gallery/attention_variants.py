"""Attention variants of the efficiency papers: learned and hashed feature maps, kernel and
sparse attention, re-weighted softplus attention, packed windows, mixtures of memories."""

from __future__ import annotations

from ncd.circuits.builder import Builder

from . import entry

HEDGEHOG = ("Zhang et al., The Hedgehog & the Porcupine: Expressive Linear Attentions with "
            "Softmax Mimicry (ICLR 2024)")  # fmt: skip
SOFTPLUS = ("Gao & Spratling, Softplus Attention with Re-weighting Boosts Length Extrapolation "
            "in Large Language Models (2025)")  # fmt: skip
ECOFORMER = "Liu et al., EcoFormer: Energy-Saving Attention with Linear Complexity (NeurIPS 2022)"
SOFT = "Lu et al., SOFT: Softmax-free Transformer with Linear Complexity (NeurIPS 2021)"
SEA = "Lee et al., SEA: Sparse Linear Attention with Estimated Attention Mask (ICLR 2024)"
SCATTER = ("He et al., ScatterFormer: Efficient Voxel Transformer with Scattered Linear Attention "
           "(ECCV 2024)")  # fmt: skip
MOM = "Du et al., MoM: Linear Sequence Modeling with Mixture-of-Memories (2025)"


@entry("hedgehog_attention", "Hedgehog: linear attention with learned feature maps", HEDGEHOG)
def hedgehog_attention():
    """Hedgehog: causal linear attention whose feature map is learned, per head, to mimic
    softmax.

    Implements: Zhang et al. (2024) Sec. 4, Hedgehog's feature map
    φ_mlp(x) = [softmax(W x + b), softmax(-W x - b)] (a learned per-head linear map, then a
    softmax over the features of the map and of its negation), queries and keys each with
    their own W and b; Sec. 2, the normalised causal linear attention
    y_i = Σ_{j<=i} (φ(q_i)·φ(k_j)) v_j / Σ_{j<=i} φ(q_i)·φ(k_j).

    The 2F features of the two softmaxes are one axis of size 2F (a concatenation), the
    head axis of one normalised `linear_attention` box.
    """
    b = Builder("hedgehog_attention", title="Hedgehog attention", paper=HEDGEHOG,
                doc="φ(x) = [softmax(Wx+b), softmax(−Wx−b)] per head, then linear attention.",
                sizes={"B": 2, "H": 2, "T": 16, "K": 8, "F": 8, "V": 8})  # fmt: skip
    q, k, v = b.input("q", "B H T K"), b.input("k", "B H T K"), b.input("v", "B H T V")
    phis = []
    for x, tag in ((q, "q"), (k, "k")):
        with b.group(f"Feature map φ({tag})"):
            w = b.param("H F K", name=f"phi_{tag}_w", label=f"W^{tag.upper()}")
            z = b.contract(x, w, over="K", name=f"phi_{tag}_map")  # B H T F
            z = b.add(z, b.param("H F", name=f"phi_{tag}_b", label=f"b^{tag.upper()}"),
                      name=f"phi_{tag}_bias")  # fmt: skip
            zp, zn = b.copy(z, name=f"phi_{tag}_split")
            pos = b.softmax(zp, "F", name=f"phi_{tag}_pos")
            neg = b.softmax(b.unary(zn, "neg", name=f"phi_{tag}_neg"), "F",
                            name=f"phi_{tag}_negsm")  # fmt: skip
            phis.append(b.concat(pos, neg, axis="F", name=f"phi_{tag}"))  # B H T (2F)
    y = b.linear_attention(*phis, v, key="T", head="F", normalize=True, name="linear_attention")
    b.output("y", y)
    return b.build()


@entry("softplus_attention", "Length-scaled softplus attention with re-weighting", SOFTPLUS)
def softplus_attention():
    """Length-scaled Softplus attention with re-weighting (LSSAR), causal.

    Implements: Gao & Spratling (2025) Sec. 3, softmax decomposed into a positivity map and
    an l1 normalisation, the map replaced by Softplus with a length-dependent scale (LSSA),
    then re-weighted (LSSAR): s_ij = q_i·k_j / √d, λ_i = log N_i with N_i = i the number of
    keys query i sees (positions counted from 1), a_ij = Softplus(λ_i s_ij) for j <= i and 0
    otherwise, w_ij = a_ij^p / Σ_j a_ij^p with p = 2, y_i = Σ_j w_ij v_j.

    The l1 normalisation of a then of its p-th power is one normalisation of a^p. N_i is
    counted from the causal mask (Σ_j of a mask of ones).

    What was checked: the paper's abstract (arXiv 2501.13428, versions 2, 4 and 5, and the
    opening of its ICML version) states the design as above: softmax split into a non-linear
    positivity transformation and an l1 normalisation, the latter found essential; the
    exponential replaced by Softplus with a dynamic scale factor based on invariance
    entropy; and a re-weighting that amplifies the larger weights and diminishes the
    smaller ones. What was not checked: the text of Sec. 3 and the authors' code
    (github.com/iminfine/freeatten, named in the abstract, is not in the searchable code
    index) were not available, so the exact form of the scale (here log N_i / √d, per query
    row), the form of the re-weighting (here a^p, l1-normalised) and the power p = 2 are this
    circuit's reading, not verified, and no equation numbers are given.
    """
    b = Builder("softplus_attention", title="Softplus attention (LSSAR)", paper=SOFTPLUS,
                doc="l1-normalised Softplus(log N_i · q·k/√d), re-weighted by a power p = 2.",
                sizes={"B": 2, "H": 2, "T": 16, "S": 16, "K": 8, "V": 8})  # fmt: skip
    q, k, v = b.input("q", "B H T K"), b.input("k", "B H S K"), b.input("v", "B H S V")
    s = b.contract(q, k, over="K", name="scores")  # B H T S
    s, s_count = b.copy(s, name="scores_copy")
    with b.group("Length scale λ = log N"):
        ones = b.unary(b.scale(s_count, 0, name="zero"), "exp", name="ones")
        seen = b.mask(ones, "T", "S", fill="0", name="keys_seen")
        n = b.reduce(seen, "S", name="count")  # B H T: N_i
        lam = b.unary(n, "log", name="log_n")
    z = b.scale(b.mul(s, lam, name="length_scale"), "K**-0.5", name="scale")
    with b.group("Softplus + l1 norm, re-weighted"):
        a = b.unary(z, "softplus", name="softplus")
        a = b.unary(a, "square", name="reweight", label="(·)^p")
        a, a_sum = b.copy(b.mask(a, "T", "S", fill="0", name="causal"), name="weights")
        w = b.div(a, b.reduce(a_sum, "S", name="l1"), name="l1_norm")
    b.output("y", b.contract(w, v, over="S", name="mix"))
    return b.build()


def _gaussian_features(b, x, anchors, axis, tag, factor):
    """exp(-‖x - a_j‖² · factor) for every anchor a_j (axis `axis`), from the dot products
    and the squared norms: ‖x - a‖² = ‖x‖² + ‖a‖² - 2 x·a."""
    xn = b.reduce(b.unary(x, "square", name=f"{tag}_sq"), "K", name=f"{tag}_norm")
    an = b.reduce(b.unary(anchors, "square", name=f"{tag}_asq"), "K", name=f"{tag}_anorm")
    dot = b.contract(x, anchors, over="K", name=f"{tag}_dot")
    d2 = b.sub(b.add(xn, an, name=f"{tag}_norms"), b.scale(dot, 2, name=f"{tag}_2dot"),
               name=f"{tag}_dist")  # fmt: skip
    return b.unary(b.scale(d2, factor, name=f"{tag}_width"), "exp", name=f"{tag}_kernel")


def _heads(b, x, names=("q", "k", "v")):
    return [b.linear(x, "D", "H K" if n != "v" else "H V", bias=False, name=f"{n}_proj",
                     label=f"L^{n.upper()}") for n in names]  # fmt: skip


@entry("ecoformer_attention", "EcoFormer: linear attention on binary hash codes", ECOFORMER)
def ecoformer_attention():
    """EcoFormer: linear attention on the binary codes of queries and keys.

    Implements: Liu et al. (2022) Sec. 3.2, the kernelised hash function h(x) = sign(Aᵀ κ(x)),
    κ(x)_j = exp(-‖x - a_j‖² / 2σ²) to m anchors a_j, A a projection to b bits; Sec. 3.3,
    attention by the agreement of the codes, y_i = Σ_j s_ij v_j / Σ_j s_ij with
    s_ij = (b + h(q_i)·h(k_j)) / 2 = b − Hamming(h(q_i), h(k_j)), which is linear:
    s_ij = ψ(h(q_i))·ψ(h(k_j)) with ψ(h) = [relu(h), relu(−h)] (the one-hot of each bit), so
    y_i = ψ_i (Σ_j ψ_jᵀ v_j) / ψ_i·Σ_j ψ_j; then W_O.

    Non-causal, per head; σ² = K. The hash functions are learned by the paper's own
    objective, not by back-propagation: sign passes no gradient, so the task trains the value
    and output maps.
    """
    b = Builder("ecoformer_attention", title="EcoFormer attention", paper=ECOFORMER,
                axes={"D": "H*K"},
                doc="Kernelised binary hashing of q and k (sign), linear attention on the codes.",
                sizes={"B": 2, "T": 16, "H": 2, "K": 8, "V": 8, "M": 8, "C": 16})  # fmt: skip
    x = b.input("x", "B T D")
    q, k, v = _heads(b, x)
    anchors = b.param("H M K", name="anchors", label="a")
    proj = b.param("H C M", name="hash_proj", label="A")
    codes = []
    for t, tag in ((q, "q"), (k, "k")):
        with b.group(f"Hash h({tag})"):
            kq = _gaussian_features(b, t, anchors, "M", f"{tag}_rbf", "-0.5*K**-1")  # B T H M
            h = b.unary(
                b.contract(kq, proj, over="M", name=f"{tag}_hash_proj"), "sign", name=f"{tag}_sign"
            )  # fmt: skip  B T H C
            hp, hn = b.copy(h, name=f"{tag}_bits")
            psi = b.concat(b.relu(hp, name=f"{tag}_one"),
                           b.relu(b.unary(hn, "neg", name=f"{tag}_flip"), name=f"{tag}_zero"),
                           axis="C", name=f"{tag}_code")  # fmt: skip
            codes.append(psi)
    cq, ck = codes
    ck, v = b.rename(ck, T="S", name="k_keys"), b.rename(v, T="S", name="v_keys")
    y = b.linear_attention(cq, ck, v, head="C", causal=False, normalize=True, name="hamming_attn")
    b.output("y", b.linear(y, "H V", "D", bias=False, name="o_proj", label="L^O"))
    return b.build()


def _newton_step():
    """One Newton–Schulz step X ← 2X − X A X towards A⁺ (A passes through unchanged)."""
    b = Builder("newton_step", title="Newton step X ← 2X − XAX",
                doc="One Newton–Schulz step of the Moore–Penrose pseudo-inverse.")  # fmt: skip
    x = b.input("X", "B N H M")  # X[m, n]
    a = b.input("A", "B N H L")  # A[n, l]: the landmark kernel, its axes named for the product
    x, x_left, x_right = b.copy(x, 3, name="x_copy")
    xa = b.contract(x_left, a, over="N", name="xa")  # X A: [m, l]
    xax = b.contract(xa, b.rename(x_right, M="L", name="x_rows"), over="L", name="xax")
    b.output("X", b.sub(b.scale(x, 2, name="twice"), xax, name="step"))
    b.output("A", a)
    return b.build()


@entry("soft_attention", "SOFT: softmax-free attention by a Gaussian kernel and landmarks", SOFT)
def soft_attention():
    """SOFT: softmax-free attention by a Gaussian kernel through landmarks, linear in T.

    Implements: Lu et al. (2021) Sec. 3.1, the Gaussian-kernel similarity
    S_ij = exp(−‖q_i − k_j‖² / 2√d) with queries and keys from one projection (K = Q);
    Sec. 3.2, its low-rank form through m landmarks Q̃ (average pooling of Q over T),
    Ŝ = exp(Q ⊖ Q̃) A⁺ exp(Q̃ ⊖ K) with A = exp(Q̃ ⊖ Q̃); Sec. 3.3, the Moore–Penrose
    pseudo-inverse A⁺ by the Newton–Schulz iteration X ← 2X − X A X from
    X₀ = Aᵀ / (‖A‖₁ ‖A‖∞); y = Ŝ V, then W_O.

    The kernel is computed from the squared norms and the dot products. The iteration is
    unrolled, N_iter = 20 steps (the repeated subcircuit); Aᵀ is A with its two landmark axes
    exchanged. y is computed as P (A⁺ (Pᵀ V)) with P = exp(Q ⊖ Q̃) (Pᵀ = exp(Q̃ ⊖ K) because
    K = Q), linear in T; no normalisation (softmax-free). Value and output projections as in
    multi-head attention. The authors' released code (fudan-zvg/SOFT, SOFT/kernel/inverse.py)
    also runs 20 steps, but on A + 0.01·I from X₀ = α (A + 0.01·I), α = 1.8 / (max_i Σ_j A_ij)²;
    the circuit keeps the starting point written above.
    """
    b = Builder("soft_attention", title="SOFT attention", paper=SOFT, axes={"D": "H*K"},
                doc="Gaussian-kernel attention through pooled landmarks, A⁺ by Newton–Schulz.",
                sizes={"B": 2, "T": 16, "H": 2, "K": 8, "V": 8, "N_iter": 20})  # fmt: skip
    x = b.input("x", "B T D")
    q, v = _heads(b, x, ("q", "v"))  # K = Q: one projection for both
    q, q_pool = b.copy(q, name="q_copy")
    with b.group("Landmarks Q̃ (average pooling)"):
        marks = b.box("pool", {"x": q_pool}, "landmarks", spatial=["T"], window=[4], op="avg")
        marks = b.rename(marks, T="M", name="landmark_axis")  # B M H K
    with b.group("P = exp(Q ⊖ Q̃)"):
        p = _gaussian_features(b, q, marks, "M", "p", "-0.5*K**-0.5")  # B T H M
    with b.group("A = exp(Q̃ ⊖ Q̃)"):
        a = _gaussian_features(
            b, marks, b.rename(marks, M="N", name="landmarks_n"), "N", "a", "-0.5*K**-0.5"
        )  # A[m, n]: B M H N
    with b.group("A⁺ by Newton–Schulz"):
        a_abs = b.unary(a, "abs", name="a_abs")
        norm_1 = b.reduce(b.reduce(a_abs, "M", name="col_sums"), "N", "max", name="norm_1")
        norm_inf = b.reduce(b.reduce(a_abs, "N", name="row_sums"), "M", "max", name="norm_inf")
        x0 = b.div(b.rename(a, M="N", N="M", name="a_t"), b.mul(norm_1, norm_inf, name="norms"),
                   name="x0", label="X₀")  # fmt: skip
        steps = b.call(_newton_step(), X=x0, A=b.rename(a, M="N", N="L", name="a_nl"),
                       repeat="N_iter", name="newton")  # fmt: skip
        pinv = steps["X"]  # A⁺[m, n]
    with b.group("y = P A⁺ Pᵀ V"):
        p, p_t = b.copy(p, name="p_copy")
        pv = b.contract(
            b.rename(p_t, T="S", M="N", name="p_t"),
            b.rename(v, T="S", name="v_keys"),
            over="S",
            name="ptv",
        )  # B H N V
        apv = b.contract(pinv, pv, over="N", name="apv")  # B H M V
        y = b.contract(p, apv, over="M", name="pav")  # B T H V
    b.output("y", b.linear(y, "H V", "D", bias=False, name="o_proj", label="L^O"))
    return b.build()


@entry("mom_block", "MoM: mixture of linear-attention memories with a router", MOM)
def mom_block():
    """MoM: a router sends each token to k of M linear-attention memories; a shared memory
    takes every token; the read mixes them by the router's weights.

    Implements: Du et al. (2025) Sec. 3, the router p_t = softmax(x_t W_g), top-k, with the
    kept scores renormalised, g_t^m = p_t^m / Σ_{m' ∈ top-k(t)} p_t^{m'} (0 for memories not
    kept); memory m with its own key and value maps, k_t^m = x_t W_k^m, v_t^m = x_t W_v^m,
    updated by its routed tokens only, M_t^m = M_{t-1}^m + [m ∈ top-k(t)] k_t^mᵀ v_t^m; the
    shared memory M_t^s = M_{t-1}^s + k_t^sᵀ v_t^s; the read o_t = q_t (M_t^s + Σ_m g_t^m M_t^m)
    with one query map q_t = x_t W_q, then W_O; and the auxiliary load-balancing loss of the
    mixture-of-experts routers, aux = M Σ_m f_m P_m, f_m the fraction of tokens routed to
    memory m, P_m its mean router score (over B and T).

    Here the router's top-k gives each token's k memories and their scores; the renormalised
    scores are scattered into the memory axis (g_t, 0 for memories not kept) and the routing
    mask [m ∈ top-k(t)] is the one-hot of the chosen memories summed over the k choices. The
    mask multiplies the keys, and g_t^m the query of memory m
    (q_t Σ_m g_t^m M_t^m = Σ_m (g_t^m q_t) M_t^m): the memories are a batch axis of one causal
    linear attention. Each memory is plain linear attention (the paper's basic memory; its
    larger models use gated memories).
    """
    b = Builder("mom_block", title="Mixture-of-Memories", paper=MOM, axes={"D": "H*K"},
                doc="Router top-k → memories updated by their routed tokens → mixed read.",
                sizes={"B": 2, "T": 16, "H": 2, "K": 8, "V": 8, "M": 4})  # fmt: skip
    top = 2
    x = b.input("x", "B T D")
    q = b.linear(x, "D", "H K", bias=False, name="q_proj", label="L^Q")
    with b.group("Router (top-k)"):
        probs = b.softmax(
            b.linear(x, "D", "M", bias=False, name="router", label="L^G"),
            "M",
            name="router_softmax",
        )  # B T M
        p_sel, p_aux = b.copy(probs, name="probs")
        chosen = b.topk(p_sel, "M", top, into="k", name="topk")  # B T k: scores, memories
        scores, s_sum = b.copy(chosen["values"], name="scores")
        g_k = b.div(scores, b.reduce(s_sum, "k", name="kept_total"), name="renorm")
        idx, idx_hot = b.copy(chosen["indices"], name="chosen")
        # B T M: g_t^m, 0 where not kept
        g = b.box("scatter", {"src": g_k, "index": idx}, "gate", axis="M", over="k", label="g")
        hot = b.box("one_hot", {"x": idx_hot}, "routed_hot", into="M")  # B T k M
        routed = b.reduce(hot, "k", name="routed")  # B T M: [m ∈ top-k(t)]
        routed, r_aux = b.copy(routed, name="routed_copy")
    with b.group("Memories (routed tokens only)"):
        k = b.linear(x, "D", "M H K", bias=False, name="k_proj", label="L^K_m")
        v = b.linear(x, "D", "M H V", bias=False, name="v_proj", label="L^V_m")
        q, q_shared = b.copy(q, name="q_copy")
        qm = b.mul(g, q, name="q_mix", label="g·q")  # B T M H K
        km = b.mul(k, routed, name="k_routed", label="k·[routed]")
        ym = b.linear_attention(qm, km, v, key="T", name="memories")  # B T M H V
        ym = b.reduce(ym, "M", name="mix")
    with b.group("Shared memory"):
        ks = b.linear(x, "D", "H K", bias=False, name="k_shared", label="L^K_s")
        vs = b.linear(x, "D", "H V", bias=False, name="v_shared", label="L^V_s")
        ys = b.linear_attention(q_shared, ks, vs, key="T", name="shared_memory")
    y = b.add(ym, ys, name="read")
    b.output("y", b.linear(y, "H V", "D", bias=False, name="o_proj", label="L^O"))
    with b.group("Load balance"):
        f = b.reduce(r_aux, "B T", "mean", name="routed_share")  # f_m
        pm = b.reduce(p_aux, "B T", "mean", name="mean_score")  # P_m
        aux = b.scale(b.reduce(b.mul(f, pm, name="f_p"), "M", name="balance"), "M",
                      name="aux_scale")  # fmt: skip
    b.output("aux", aux)
    return b.build()


@entry("sea_attention", "SEA: sparse attention on an estimated top-k mask", SEA)
def sea_attention():
    """SEA: softmax attention on the keys picked by a linear-attention estimate, causal.

    Implements: Lee et al. (2024) Sec. 3 (Fig. 2), its three steps: the kernel estimate of
    the attention matrix Â_ij = φ(q_i)·φ(k_j), φ = elu + 1; the top-k mask per query row of
    the estimate, M_ij = [j among the k largest Â_ij of row i]; and softmax attention on the
    selected keys only, y_i = Σ_{j: M_ij} softmax_j(q_i·k_j / √d) v_j (the scores of keys not
    selected set to −∞), causal as in the paper's OPT models.

    The mask is the one-hot of the k = 4 chosen keys, any over the k choices. The paper
    compresses the estimate to fewer columns with a CNN decoder and interpolates the mask
    back; here the estimate has every column.
    """
    b = Builder("sea_attention", title="SEA attention", paper=SEA,
                doc="Linear-attention estimate → top-k mask per query → sparse softmax attention.",
                sizes={"B": 2, "H": 2, "T": 16, "S": 16, "K": 8, "V": 8})  # fmt: skip
    q, k, v = b.input("q", "B H T K"), b.input("k", "B H S K"), b.input("v", "B H S V")
    q, q_est = b.copy(q, name="q_copy")
    k, k_est = b.copy(k, name="k_copy")
    with b.group("Estimated attention (linear)"):
        est = b.contract(b.unary(q_est, "elu_plus_one", name="phi_q", label="φ"),
                         b.unary(k_est, "elu_plus_one", name="phi_k", label="φ"),
                         over="K", name="estimate")  # fmt: skip
        est = b.mask(est, "T", "S", name="est_causal")
    with b.group("Top-k mask"):
        chosen = b.topk(est, "S", 4, into="k", name="topk")["indices"]  # B H T k
        hot = b.box("one_hot", {"x": chosen}, "selected", into="S", dtype="bool")  # B H T k S
        keep = b.reduce(hot, "k", "max", name="keep")  # B H T S: M_ij, the top k
    with b.group("Sparse attention"):
        s = b.scale(b.contract(q, k, over="K", name="scores"), "K**-0.5", name="scale")
        s = b.mask(s, "T", "S", name="causal")
        s = b.box("where", {"cond": keep, "a": s}, "sparse", fill="-inf")
        p = b.softmax(s, "S", name="softmax")
    b.output("y", b.contract(p, v, over="S", name="mix"))
    return b.build()


@entry("scatterformer_attention", "ScatterFormer: linear attention over variable-length windows",
       SCATTER)  # fmt: skip
def scatterformer_attention():
    """ScatterFormer: linear attention within variable-length windows of a packed voxel
    sequence.

    Implements: He et al. (2024) Sec. 3.2, Scattered Linear Attention: each voxel attends to
    every voxel of its own window w(i), non-causally, by normalised linear attention with
    ReLU feature maps, y_i = φ(q_i) Σ_{j ∈ w(i)} φ(k_j)ᵀ v_j / φ(q_i)·Σ_{j ∈ w(i)} φ(k_j),
    φ = ReLU, then the output projection W_O.

    The voxels of all windows lie end to end in one sequence, window w holding positions
    offsets[w] … offsets[w+1] − 1 (the `cu_seqlens` packing, no padding). Windows have any
    length (one `linear_attention` box, packed, non-causal, normalised; the authors' code
    adds 1e-6 to the denominator, the box 1e-10).
    """
    b = Builder("scatterformer_attention", title="ScatterFormer attention", paper=SCATTER,
                axes={"D": "H*K"},
                doc="ReLU linear attention within each window of a packed voxel sequence.",
                sizes={"T": 16, "W": 5, "H": 2, "K": 8, "V": 8})  # fmt: skip
    x = b.input("x", "T D")
    offsets = b.input("offsets", "W", dtype="int32")
    q, k, v = _heads(b, x)
    q, k = b.relu(q, name="phi_q", label="φ"), b.relu(k, name="phi_k", label="φ")
    y = b.linear_attention(q, k, v, key="T", causal=False, normalize=True, offsets=offsets,
                           name="window_attn")  # fmt: skip
    b.output("y", b.linear(y, "H V", "D", name="o_proj", label="L^O"))
    return b.build()
