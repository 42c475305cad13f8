"""The shots: the k annotated generated images the few-shot net learns from.

choose.py   the candidates, and which of them become shots (auto / first / named)
sources.py  who annotates them: a person (manual), inverted labelled images, or the demo's
            simulated annotator
"""
