"""Jobs: multi-step runs that produce artefacts (a student, int8 models, index directories) and a report.

- `distill`: distillation on a dataset (training texts, the documents a `rank` loss ranks against);
- `quantize`: ONNX export, int8 quantization, sizes, latency and the train-split quality gate (`semsearch quantize`);
- `students`: the candidate students of the main job, distilled, exported, quantized to int8 and cached;
- `main_job`: the main job (`semsearch run`): teacher and compressed pipelines evaluated side by side.

Each job takes a frozen spec and returns a report; the CLI only parses options into the spec. May import
`semsearch_common`,
`compression`, `indexes` and the search core (data, embeddings, pipeline, evaluation, selection); never
`search.cli`, `search.serve` or `search.bench`.
"""
