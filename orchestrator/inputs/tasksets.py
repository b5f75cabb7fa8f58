"""The task sets users run, by name: the Hugging Face dataset repos llama.cpp's users download them from, the
file in each, and its format (see tools/tasks.py). A set is fetched once into the Hugging Face cache through
the same client and retries as models; its sha256 is recorded the first time and checked every time after
(the repos publish no checksums of their own). A local file (`{path: FILE, format: …}`) works offline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSet:
    repo: str
    file: str
    format: str
    what: str


VALIDATION = "ikawrakow/validation-datasets-for-llama.cpp"
TASK_SETS = {
    "hellaswag": TaskSet("klosax/hellaswag_text_data", "hellaswag_val_full.txt", "hellaswag",
                         "HellaSwag validation, 10,042 tasks"),
    "winogrande": TaskSet("ikawrakow/winogrande-eval-for-llama.cpp", "winogrande-debiased-eval.csv", "winogrande",
                          "Winogrande debiased, 1,267 tasks"),
    "mmlu": TaskSet(VALIDATION, "mmlu-validation.bin", "multiple-choice", "MMLU validation"),
    "arc-challenge": TaskSet(VALIDATION, "arc-challenge-validation.bin", "multiple-choice", "ARC-Challenge validation"),
    "arc-easy": TaskSet(VALIDATION, "arc-easy-validation.bin", "multiple-choice", "ARC-Easy validation"),
    "truthfulqa": TaskSet(VALIDATION, "truthful-qa-validation.bin", "multiple-choice", "TruthfulQA validation"),
}
