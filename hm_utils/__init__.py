"""hm_utils: the shared helpers of the hm-embeddings notebook series.

Modules, one concern each: ``config`` (columns, paths, profiles), ``storage``
(atomic writes), ``reporting`` (figures and key figures), ``loading``
(competition files to compact parquet), ``synthetic`` (a learnable synthetic
dataset in the competition layout), ``mining`` (triplets), ``images``
(decoding and tf.data input), ``model`` and ``losses`` (the siamese model,
FaceNet triplet loss, InfoNCE), ``export`` (embedding export and loading),
``similarity`` (cosine and top-k), ``ranking``, ``ensembling``, ``metrics``
(MAP@12, triplet accuracy), ``plots`` and ``pipeline`` (the papermill runner).
Submodules are imported on demand so that ``import hm_utils`` stays light
(TensorFlow is only loaded by the modules that need it).
"""
__version__ = "0.1.0"
