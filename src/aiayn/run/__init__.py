"""The run directory, apart from training: what decoding, serving, export and the trainer
all read and write.

- `files`: the names of its files and the choice of weights to decode with
- `paths`: containment (no name or link leads out of the folder; nothing written through a link)
- `atomic`: files written whole or not at all
- `lock`: one process at a time in a folder, and the leftovers of killed writes
- `folder`: `OutputFolder`, the one way a command creates or replaces an output folder
- `weights`: safetensors read and written, tensors checked before a model takes them
- `config`: the config the run was trained with
"""
