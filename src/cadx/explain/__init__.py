"""Explanations of model outputs: class activation maps and a check of their faithfulness."""

from cadx.explain.cam import METHODS, class_activation_maps, deletion_check, target_layer

__all__ = ["METHODS", "class_activation_maps", "deletion_check", "target_layer"]
