"""Readers (and fixture writers) for the on-disk formats of the raw data sets, without their original tools.

- ``recordio``: MXNet/dmlc RecordIO ``.rec`` + ``.idx`` (insightface MS1M packs), pure Python.
- ``verification_bin``: insightface ``.bin`` verification packs, loaded with a restricted unpickler.
- ``idx``: the IDX arrays of MNIST/Fashion-MNIST (optionally gzipped).
- ``cars_mat``: the Cars196 ``.mat`` annotations (``cars_annos.mat`` and the classification devkit).
"""
