"""The shots: the k annotated generated images the few-shot net learns from.

choose.py   the candidates, and which of them become shots (auto / first / named)
sources.py  who annotates them: a person (manual), inverted labelled images, or the demo's
            simulated annotator
simulated_annotator.py  that simulated annotator: a UNet trained on rendered faces, which
            stands in for a person on the demo data (trained by the train_annotator stage)

The person paints in the browser tool of `partseg annotate` (partseg.paint).
"""
