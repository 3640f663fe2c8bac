"""The ImageNet half's ids, torch-free (read at every DAG build and by config validation):
the models with their family and native resolution, the transforms, studies, tables and
figures, and the checks of the config's ``imagenet`` section that a schema cannot express.
Builders live in synsym.imagenet.models (torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelId:
    """One model id: its family (for Fig. 5 right) and native resolution."""

    id: str
    family: str
    resolution: int


EFFNET_RESOLUTIONS = {0: 224, 1: 240, 2: 260, 3: 300, 4: 380, 5: 456, 6: 528, 7: 600}
MODELS: dict[str, ModelId] = {m.id: m for m in [
    *(ModelId(f"resnet{n}", "resnet", 224) for n in (18, 34, 50, 101, 152, 200)),
    # Mixer-S/16 is the paper's "small Mixer" (patches 16x16x3, Sec. 6.2); B/16 for reference.
    ModelId("mixer_s16", "mixer", 224),
    ModelId("mixer_b16", "mixer", 224),
    *(ModelId(f"efficientnet_b{b}", "efficientnet", r) for b, r in EFFNET_RESOLUTIONS.items()),
    # CPU test sizes: the same code as their family, a few thousand parameters.
    ModelId("resnet_tiny", "resnet", 32),
    ModelId("mixer_tiny", "mixer", 32),
]}

# Transforms that act on a 224x224x3 tensor; O(3d) would be a 150528^2 dense matrix (180 GB).
TRANSFORMS = ("identity", "o3_shared", "o3_per_pixel", "perm_3d")
# The studies, each a figure (Sec. 6.2 and App. F); figS7_samples needs no training.
STUDIES = ("fig5_curves", "fig5_families", "figS3_scaling", "figS4_dynamics")
# The merged tables (imagenet_tables rule), in the order `imagenet tables` writes them.
TABLES = ("imagenet_epochs", "imagenet_final", "imagenet_fits")
FIGURES = {
    "fig5_learning_curves": ["imagenet_final", "imagenet_fits"],
    "fig5_rotated_vs_clean": ["imagenet_final"],
    "figS3_scaling_vs_rotation": ["imagenet_final", "imagenet_fits"],
    "figS4_dynamics": ["imagenet_epochs"],
}



def get(model_id: str) -> ModelId:
    """The model with this id, or one line naming the allowed ids."""
    if model_id not in MODELS:
        raise ValueError(f"unknown model {model_id!r}; allowed: {', '.join(MODELS)}")
    return MODELS[model_id]


def enabled(config: dict) -> bool:
    return bool(config.get("imagenet", {}).get("root"))


def check_transform(transform_id: str) -> str:
    if transform_id not in TRANSFORMS:
        raise ValueError(f"imagenet: unknown transform {transform_id!r}; allowed: {', '.join(TRANSFORMS)}")
    return transform_id


def validate(cfg: dict) -> None:
    """Checks the schema cannot express: model and transform ids, the batch split across GPUs."""
    for st in STUDIES:
        s = cfg["studies"][st]
        for m in s["models"]:
            try:
                get(m)
            except ValueError as e:
                raise ValueError(f"imagenet.studies.{st}.models: {e}") from None
        for t in s["transforms"]:
            try:
                check_transform(t)
            except ValueError as e:
                raise ValueError(f"imagenet.studies.{st}.transforms: {e}") from None
    if cfg["batch_size"] % (cfg["gpus"] * cfg["nodes"]):
        raise ValueError(f"imagenet.batch_size = {cfg['batch_size']} is not divisible by gpus x nodes = "
                         f"{cfg['gpus'] * cfg['nodes']}; allowed: a multiple of it")
