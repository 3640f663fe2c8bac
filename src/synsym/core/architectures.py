"""The six architectures of the study, described once.

Both the finite torch networks (:mod:`synsym.finite.models`) and the infinite-width
kernels (:mod:`synsym.ntk.kernels`) are built from the same :class:`ArchSpec`, so
they cannot disagree on a hyperparameter: like neural-tangents' ``stax``, a
model is a small description from which init, apply and kernel follow.

Every network has ``depth`` hidden layers with ReLU, NTK parameterization
(weights N(0, 1), pre-activations scaled by sigma_w / sqrt(fan_in), biases
scaled by sigma_b), and a dense readout to 10 logits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SIGMA_W2 = 2.0  # weight variance sigma_w^2 (paper App. B)
SIGMA_B2 = 0.01  # bias variance sigma_b^2 (paper App. B)
FILTER = 3  # spatial filter size of every conv / locally connected layer
N_CLASSES = 10
# How a 3x3 layer sees past the image's edge (config model.padding). The paper assumes circular
# padding "for notational convenience" (Sec. 2); neural-tangents' SAME and Arora et al.'s CNTK pad
# with zeros. Theorems 3.1 and 4.1 hold under both (they concern channels, not space); only the
# circular GAP/LAP kernels are also invariant to cyclic shifts of one image.
PADDINGS = ("circular", "zero")


def check_padding(padding: str) -> str:
    """``padding`` if it is one of PADDINGS, else one line naming the choices."""
    if padding not in PADDINGS:
        raise ValueError(f"model.padding = {padding!r} is invalid; allowed: {', '.join(PADDINGS)}")
    return padding


@dataclass(frozen=True)
class ArchSpec:
    """What distinguishes one architecture from another.

    body: ``dense`` (FCN on the flattened image), ``conv`` (shared 3x3
    filters) or ``local`` (unshared 3x3 filters, LCN).
    readout: ``flatten`` (VEC, LCN), ``gap`` (global average pool) or
    ``lap`` (local average pool with window ``pool`` and stride ``pool``),
    each followed by one dense layer.
    padding: ``circular`` or ``zero`` edges of every 3x3 layer (model.padding).
    kernel_family: which kernel job computes its infinite-width kernel. The
    whole conv family shares one job; LCN_inf equals VEC_inf (Xiao et al.
    2018, Novak et al. 2019), so LCN reads the conv job's flatten readout:
    kernel_readout says which member's kernel an architecture reads (None: its own).
    """

    id: str
    label: str
    body: str
    readout: str
    pool: int
    kernel_family: str
    paper_width: int
    # Group id (see synsym.core.transforms) of the largest transform group under
    # which Theorem 4.1 makes the finite / infinite network invariant.
    finite_invariance: str
    infinite_invariance: str
    # How the 3x3 layers pad (PADDINGS): None in the table, set by a run from model.padding (get(arch, padding));
    # a 3x3 layer built from a spec without one stops (check_padding) rather than pick an edge silently.
    padding: str | None = None
    kernel_readout: str | None = None


ARCHITECTURES: dict[str, ArchSpec] = {
    a.id: a
    for a in [
        ArchSpec("fcn", "FCN", "dense", "flatten", 1, "fcn", 1024, "o_3d", "o_3d"),
        ArchSpec("lcn", "LCN", "local", "flatten", 1, "conv", 32, "o3_per_pixel", "o3_per_pixel", kernel_readout="vec"),
        ArchSpec("vec", "VEC", "conv", "flatten", 1, "conv", 128, "o3_shared", "o3_per_pixel"),
        ArchSpec("gap", "GAP", "conv", "gap", 0, "conv", 128, "o3_shared", "o3_shared"),
        ArchSpec("lap4", "LAP4", "conv", "lap", 4, "conv", 128, "o3_shared", "o3_shared"),
        ArchSpec("lap8", "LAP8", "conv", "lap", 8, "conv", 128, "o3_shared", "o3_shared"),
    ]
}

KERNEL_FAMILIES = ("fcn", "conv")
# Architectures whose kernel a family job writes, in its readout order (LCN reads VEC's:
# LCN_inf == VEC_inf).
FAMILY_MEMBERS = {"fcn": ("fcn",), "conv": ("vec", "gap", "lap4", "lap8")}

# Inference algorithms. ``nngp`` rides along with ``ntk`` (same kernel job).
INFERENCES = ("ntk", "nn", "nn_plus")
KERNEL_INFERENCES = ("ntk", "nngp")
FINITE_INFERENCES = ("nn", "nn_plus")
INFERENCE_LABELS = {"ntk": "NTK", "nngp": "NNGP", "nn": "NN", "nn_plus": "NN+"}


def get(arch_id: str, padding: str | None = None) -> ArchSpec:
    """Look up an architecture, with the run's padding when given (models and kernels of 3x3 layers need one),
    failing with one line that names the choices."""
    try:
        spec = ARCHITECTURES[arch_id]
    except KeyError:
        raise ValueError(
            f"unknown architecture {arch_id!r}; allowed: {', '.join(ARCHITECTURES)}"
        ) from None
    return spec if padding is None else replace(spec, padding=check_padding(padding))


def check_inference(inference: str, allowed: tuple[str, ...] = INFERENCES + ("nngp",)) -> str:
    if inference not in allowed:
        raise ValueError(f"unknown inference {inference!r}; allowed: {', '.join(allowed)}")
    return inference


def readout_positions(spec: ArchSpec, image_size: int) -> int:
    """Number of spatial positions the dense readout sees (for fan-in)."""
    if spec.body == "dense":
        return 1
    if spec.readout == "flatten":
        return image_size * image_size
    if spec.readout == "gap":
        return 1
    return (image_size // spec.pool) ** 2


def check_image_size(spec: ArchSpec, image_size: int) -> None:
    if spec.readout == "lap" and image_size % spec.pool:
        raise ValueError(
            f"architecture {spec.id!r} pools {spec.pool}x{spec.pool} windows; "
            f"image_size {image_size} is not a multiple of {spec.pool}"
        )


def predicts_invariance(arch_id: str, transform_id: str, infinite: bool) -> bool:
    """Theorem 4.1: is (arch, inference) invariant when every input is mapped by tau?

    FCN is O(3d)-invariant (hence P(3d) too), LCN_n / LCN_inf / VEC_inf are
    O(3)^d-invariant, VEC_n and GAP / LAP are O(3)⊗I_d-invariant.
    """
    from synsym.core.transforms import SUBGROUPS

    spec = get(arch_id)
    group = spec.infinite_invariance if infinite else spec.finite_invariance
    return transform_id in SUBGROUPS[group]


def kernel_source(family: str, transform_id: str) -> str:
    """The transform whose kernel serves ``family`` on ``transform_id`` (Theorem 4.1): the identity's when
    every architecture the family's job writes (FAMILY_MEMBERS, and LCN through VEC's readout) is invariant
    to the transform's group, so one kernel job serves the whole invariance class; else the transform itself.
    FCN's (O(3d)) contains every grid transform; the conv family's is O(3)⊗I_d, GAP's and LAP's group."""
    members = FAMILY_MEMBERS[family]
    if all(predicts_invariance(a, transform_id, infinite=True) for a in members):
        return "identity"
    return transform_id
