"""Reproduction of published Office+Caltech10 (SURF) numbers; skipped when the data folder is absent.

The data are looked for in ``$TLRUN_SHARED_DATA/office_caltech10_surf`` or ``../shared/data/office_caltech10_surf``
beside the checkout. Published numbers: JDA paper (Long et al., ICCV 2013, Table 2) for 1-NN and JDA; CORAL
paper (Sun et al., AAAI 2016, Table 3, full protocol) for the CORAL average.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from tlrun.methods.base import NullReporter, RunContext
from tlrun.methods.coral import CORAL
from tlrun.methods.jda import JDA
from tlrun.methods.no_adaptation import NoAdaptation
from tlrun.scenarios import Labeled, TrainingData, Unlabeled

from tests.helpers import shared_data

SURF = shared_data() / "office_caltech10_surf"
DOMAINS = {"A": "amazon", "C": "caltech", "D": "dslr", "W": "webcam"}
TASKS = ("C->A", "C->W", "C->D", "A->C", "A->W", "A->D", "W->C", "W->A", "W->D", "D->C", "D->A", "D->W")
PAPER_1NN = (23.70, 25.76, 25.48, 26.00, 29.83, 25.48, 19.86, 22.96, 59.24, 26.27, 28.50, 63.39)
PAPER_JDA = (44.78, 41.69, 45.22, 39.36, 37.97, 39.49, 31.17, 32.78, 89.17, 31.52, 33.09, 89.49)
PAPER_CORAL_AVERAGE = 48.8
CORAL_SVM_C = 1e-4

pytestmark = pytest.mark.skipif(not SURF.is_dir(), reason=f"Office+Caltech10 SURF data not found at {SURF}")


@lru_cache(maxsize=None)
def task(name: str) -> tuple[TrainingData, np.ndarray]:
    """The ``da`` training data of a task such as ``C->A`` (JDA release preprocessing) and the target labels."""
    from tlrun.data.features import OfficeCaltech10

    source, target = (DOMAINS[letter] for letter in name.split("->"))
    dataset = OfficeCaltech10(root=str(SURF), source=source, target=target, features="surf", preprocess="rowsum_zscore")
    source_domain, target_domain = dataset.load(source), dataset.load(target)
    data = TrainingData(
        Labeled(source_domain.X, source_domain.y), Unlabeled(target_domain.X), 10, source_domain.classes
    )
    return data, target_domain.y


def accuracy_percent(method, name: str) -> float:
    data, target_labels = task(name)
    method.fit(data, RunContext(reporter=NullReporter()))
    return 100.0 * float(np.mean(method.predict(data.target.X) == target_labels))


@pytest.mark.parametrize("name,published", zip(TASKS, PAPER_1NN))
def test_no_adaptation_1nn_equals_the_papers_row(name, published):
    assert round(accuracy_percent(NoAdaptation(classifier="1nn"), name), 2) == published


@pytest.mark.parametrize("name,published", zip(TASKS, PAPER_JDA))
def test_jda_matches_the_papers_row(name, published):
    assert abs(accuracy_percent(JDA(), name) - published) <= 0.5


def test_coral_linear_svm_average_matches_the_paper():
    accuracies = [
        accuracy_percent(CORAL(shrinkage="absolute", center=False, classifier="linear_svm",
                               classifier_options={"linear_svm": {"C": CORAL_SVM_C}}), name) for name in TASKS
    ]
    assert abs(np.mean(accuracies) - PAPER_CORAL_AVERAGE) <= 1.5
