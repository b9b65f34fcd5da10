"""Inference: predictors (PyTorch, ONNX Runtime), slide heatmaps, detections."""
