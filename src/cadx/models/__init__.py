"""Models: one factory over timm backbones, offline weights, self-describing checkpoints."""
