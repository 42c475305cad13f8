"""partseg: few-shot semantic part segmentation with GAN representations.

The library behind the pipeline: data/ (datasets and formats), gan/ (StyleGAN2),
features/ (pixel representations cached on disk), inversion, fewshot/, autoshot/,
metrics, report and cli (user commands).
"""

__version__ = "0.1.0"
