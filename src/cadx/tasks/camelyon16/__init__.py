"""CAMELYON16: lymph-node metastases on whole slides (train, predict, evaluate, slide forest)."""
