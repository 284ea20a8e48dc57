"""Vision-language: images with captions, the `clip` family's data, evaluation and task.

    config.py    [data.images]
    images.py    decoding, hashing, resizing and the pixel tensors the ViT reads
    scenes.py    the built-in synthetic scenes (shapes rendered with Pillow, captions from the scene)
    sources.py   the three sources: scenes, scikit-learn's digits, a captions file naming images
    metrics.py   zero-shot accuracy and image<->text recall@k, each with its chance level
    grid.py      the retrieval picture in report.html
    task.py      the run's stages for train.objective = "contrastive"
"""
