"""Encoders and model compression: model materialisation, encoders, distillation, ONNX export, int8."""
