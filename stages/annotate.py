"""Stage annotate: the k annotated images (the shots) and their latents.

annotate.source decides who annotates:
  manual     a person paints masks on k of the sample.n generated candidates
             (`partseg annotate`); until k are painted the pipeline stops, lists the candidates
             in the order it suggests, and says where to paint them and the class ids.
  inverted   k labelled real images are inverted into the GAN and keep their own masks
             (HandsOff's approach, for users who already have a few labelled images).
  simulated  demo data only: the simulated annotator (stage train_annotator, a UNet trained on
             thousands of rendered faces) labels the candidates, standing in for a person.
             Named as such in every output.
annotate.pick decides which candidates become the shots, as a person would choose them:
  auto       simulated: the candidates whose masks show the most parts (each at least a
             2x2 patch), then the annotator's confidence; manual: the candidates the
             discriminator finds most realistic are suggested, and the shots are the ones
             painted.
  first      the first k candidates (sample_000, ...), the paper's blind choice.
  [stems]    exactly these candidates, e.g. [sample_004].
--protocol NAME annotates in another part definition than the dataset's classes
(partseg.data.protocols: face10, face4, or a partition of the face such as grid4 / bands3):
inverted shots keep their masks under it (merged, or drawn by the demo generator), a person
paints its classes (manual), and the simulated annotator serves only the class merges.
Without it the shots have the dataset's own classes.
Writes results/annotate/{images,masks}/<stem>.png, latents.pt, annotations.json (the choice and
every candidate's score) and shots.png (the shots and their masks, enlarged).
"""

from pathlib import Path

from partseg.plumbing.io import atomic_dir, save_json, save_png
from partseg.plumbing.stage import log, run_stage, stage_parser


def build(args, params):
    from partseg.shots.choose import load_candidates
    from partseg.shots.sources import inverted_shots, manual_shots, shot_classes, simulated_shots
    from partseg.visualize import shots_picture

    options, dataset_dir = params.annotate, Path(args.dataset)
    protocol = getattr(args, "protocol", None)
    classes = shot_classes(dataset_dir, protocol, options.source)
    scores = {}
    if options.source == "inverted":
        shots = inverted_shots(dataset_dir, Path(args.generator), options.k, params.inversion,
                               protocol)
    elif options.source == "manual":
        shots, scores = manual_shots(load_candidates(Path(args.samples)), options.pick,
                                     options.k, classes, manual_dir=Path(options.manual_dir),
                                     dataset_dir=dataset_dir, samples_dir=Path(args.samples),
                                     generator_dir=Path(args.generator), protocol=protocol)
    else:
        shots, scores = simulated_shots(load_candidates(Path(args.samples)), options.pick,
                                        options.k, Path(args.annotator), classes)
    with atomic_dir(args.out) as tmp:
        shots.save_pictures(tmp)
        save_png(shots_picture(shots, classes), tmp / "shots.png")
        shots.save_latents(tmp / "latents.pt")
        # "protocol" only under --protocol: the default run's record stays as it was.
        named = {"protocol": protocol} if protocol else {}
        save_json({"source": options.source, "k": options.k, "pick": options.pick,
                   "stems": shots.stems, "simulated": options.source == "simulated",
                   "classes": classes, **named, "candidates": scores}, tmp / "annotations.json")
    log(f"[annotate] {options.k} shot(s) {shots.stems} from source '{options.source}' "
        f"(pick: {options.pick}) in {args.out}")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--generator", required=True)
    parser.add_argument("--samples", required=True)
    parser.add_argument("--annotator", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--protocol", default=None,
                        help="annotate in this protocol (face10, face4, grid4, bands3) instead of "
                             "the dataset's classes")
    run_stage("annotate", parser, build)
