"""The defaults benchmark's multi-class task: the real PUMS rows, four education classes, a
valid multi-class job, and accuracy of the most probable class."""

from __future__ import annotations

import numpy as np

from benchmarks.federation import (
    EDUCATION_CLASSES,
    EducationLoader,
    _metric,
    default_tasks,
    education_level,
)
from federation.job import JobSpec


def test_education_level_classes() -> None:
    educ = np.arange(1, 17)
    assert education_level(educ).tolist() == [0.0] * 8 + [1.0] + [2.0] * 3 + [3.0] * 4


def test_education_task_uses_all_real_rows_as_class_indices() -> None:
    task = default_tasks(quick=True)["pums_education_4_classes_by_sex"]
    loader = EducationLoader()
    datas = [loader(n) for n in task["nodes"]]
    assert sum(len(d.y_train) + len(d.y_test) for d in datas) == 1000  # the PUMS sample
    for d in datas:
        d.check(task["features"], "node", num_classes=len(EDUCATION_CLASSES))
        assert set(np.unique(d.y_train).tolist()) == {0.0, 1.0, 2.0, 3.0}
    spec = JobSpec.with_defaults(
        min(len(d.y_train) for d in datas),
        3.0,
        model="mlp",
        features=task["features"],
        categorical=task["categorical"],
        label=task["label"],
        classes=task["classes"],
        nodes=task["nodes"],
    )
    assert spec.num_classes == 4


def test_metric_multiclass_is_argmax_accuracy() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    assert _metric("accuracy", np.array([0.0, 2.0, 0.0]), p) == 2 / 3
    assert _metric("accuracy", np.array([1.0, 0.0]), np.array([0.9, 0.4])) == 1.0
