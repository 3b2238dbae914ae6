"""Model artefacts: weights (safetensors), resolved config, preprocessing, thresholds, model card, manifest."""
