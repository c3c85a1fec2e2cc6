"""hm_utils: the shared helpers of the hm-embeddings notebook series.

One concern per module:

- ``config``: column names, file names, paths, profiles, data-source order
- ``storage``: atomic writes; ``reporting``: figures (PNG) and key figures (JSON)
- ``loading``: competition files to compact parquet; ``synthetic``: a learnable
  synthetic dataset in the competition layout; ``plots``: data-overview plots
- ``mining``: triplet mining strategies; ``panels``: image panels (triplets, grids)
- ``images``: JPEG decoding and the tf.data input pipeline
- ``losses`` (FaceNet triplet loss, InfoNCE), ``model`` (the embedding model),
  ``training`` (feature cache, siamese training, report)
- ``inference`` (a backbone compiled for inference: batch norms folded, frozen
  graph, bfloat16 on CPUs with AMX), ``export`` (streamed, sharded, resumable
  export; loading embedding files),
  ``similarity`` (cosine, top-k), ``embedding_plots``
- ``metrics`` (MAP@12, triplet accuracy), ``ranking`` (rankers, held-out split),
  ``submission``, ``ensembling``, ``ranking_plots``
- ``pipeline`` (the papermill runner), ``notebook_tools`` (strip and check notebooks)

Submodules are imported on demand so that ``import hm_utils`` stays light
(TensorFlow is loaded only by ``images``, ``losses``, ``model``, ``training``,
``inference`` and ``export``).
"""
__version__ = "0.1.0"
