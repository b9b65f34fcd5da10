"""CAMELYON16: metastasis detection in lymph-node whole-slide images."""
