"""Shipping a trained model: the float32 serving graph, SavedModel / TFLite / ONNX, checks, the model card."""
