"""Stage train_annotator: the demo's simulated annotator (stands in for a careful person).

annotate.source simulated asks this UNet to paint the k shots. It is trained on
train_annotator.n_images freshly rendered demo faces with exact masks (never the labelled split,
which belongs to the baselines), or adopted from train_annotator.checkpoint (the project ships
one, trained by this stage; its record is beside it). Either way its own quality on the test
split is measured and reported, so a weak annotator shows up as such.
Writes results/train_annotator/{annotator.pt, metrics.json, record.yaml}.
"""

from pathlib import Path

from partseg.plumbing.io import atomic_dir, file_sha256, save_json, save_yaml
from partseg.plumbing.params import as_dict
from partseg.plumbing.stage import log, run_stage, snapshot_folder, stage_parser


def train_new(options, resolution: int, classes: list[str], out: Path, snapshots: Path, threads: int):
    from partseg.autoshot.segmenter import save_segmenter
    from partseg.autoshot.train import train_segmenter
    from partseg.data.protocols import merge_labels, merges_face_classes
    from partseg.data.synthetic import FACE_CLASSES
    from partseg.plumbing.device import resolve_device
    from partseg.shots.simulated_annotator import render_training_faces

    images, masks = render_training_faces(options.n_images, seed=options.seed,
                                          resolution=resolution, workers=max(1, threads))
    if merges_face_classes(classes):
        # Rendered masks have the 10 face classes; data.protocol face4 trains on them merged.
        masks = merge_labels(masks, list(FACE_CLASSES), classes)
    model, _ = train_segmenter(
        images, masks, num_classes=len(classes), target_kind="hard",
        unet_config=as_dict(options.unet), augment=as_dict(options.augment), steps=options.steps,
        batch_size=options.batch_size, lr=options.lr, weight_decay=options.weight_decay,
        seed=options.seed, device=resolve_device(), log_path=out / "training_log.tsv",
        snapshot_dir=snapshots)
    save_segmenter(out / "annotator.pt", model,
                   {"classes": classes, "resolution": resolution,
                    "trained_on": f"{options.n_images} rendered demo faces (simulated annotator)"})
    return {"trained": as_dict(options)}


def adopt(checkpoint: str, classes: list[str], resolution: int, out: Path) -> dict:
    import shutil

    from partseg.shots.simulated_annotator import check_annotator
    from partseg.autoshot.segmenter import load_segmenter
    from partseg.plumbing.errors import PartsegError

    if not Path(checkpoint).is_file():
        raise PartsegError(f"params key train_annotator.checkpoint: {checkpoint} does not exist "
                           f"(set it to null to train the annotator here)")
    check_annotator(load_segmenter(checkpoint), checkpoint, classes, resolution)
    shutil.copyfile(checkpoint, out / "annotator.pt")
    return {"adopted": str(checkpoint), "sha256": file_sha256(checkpoint)}


def build(args, params):
    import torch

    from partseg.shots.simulated_annotator import score_on_split
    from partseg.autoshot.segmenter import load_segmenter
    from partseg.data.folder import load_classes, load_split_arrays

    options, resolution = params.train_annotator, params.data.resolution
    classes = load_classes(args.dataset)
    with atomic_dir(args.out) as tmp:
        if params.annotate.source != "simulated":
            # A person (or the inverted labelled images) annotates: nothing to stand in for.
            save_yaml({"skipped": f"annotate.source is {params.annotate.source}"}, tmp / "record.yaml")
            save_json({"test": None}, tmp / "metrics.json")
            log(f"[train_annotator] skipped: annotate.source is {params.annotate.source}")
            return
        if options.checkpoint:
            record = adopt(options.checkpoint, classes, resolution, tmp)
        else:
            snapshots = snapshot_folder(args.snapshots, "train_annotator", [args.dataset])
            record = train_new(options, resolution, classes, tmp, snapshots,
                               torch.get_num_threads())
        images, masks, _ = load_split_arrays(args.dataset, "test")
        scores = score_on_split(load_segmenter(tmp / "annotator.pt"), images, masks, classes)
        log(f"[train_annotator] the simulated annotator on test: mIoU {scores['miou']:.3f}")
        save_json({"test": scores}, tmp / "metrics.json")
        save_yaml(record, tmp / "record.yaml")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--snapshots", required=True)
    parser.add_argument("--out", required=True)
    run_stage("train_annotator", parser, build)
