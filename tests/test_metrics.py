"""Our metric objects equal scipy / scikit-learn on the same predictions."""

import pytest
import torch
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from pet_lightning.metrics import build_metrics
from pet_lightning.tasks import get_task

generator = torch.Generator().manual_seed(0)
PREDS = torch.randint(0, 2, (101,), generator=generator)
TARGET = torch.where(torch.rand(101, generator=generator) < 0.7, PREDS, 1 - PREDS)


def _compute(task, preds, target):
    metrics = build_metrics(get_task(task))
    metrics.update(preds, target)
    return {k: float(v) for k, v in metrics.compute().items()}


def test_cola_mcc_and_accuracy():
    values = _compute("cola", PREDS, TARGET)
    assert values["mcc"] == pytest.approx(matthews_corrcoef(TARGET, PREDS), abs=1e-6)
    assert values["accuracy"] == pytest.approx(accuracy_score(TARGET, PREDS), abs=1e-6)


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_f1_of_the_positive_class_and_accuracy(task):
    values = _compute(task, PREDS, TARGET)
    assert values["f1"] == pytest.approx(f1_score(TARGET, PREDS), abs=1e-6)
    assert values["accuracy"] == pytest.approx(accuracy_score(TARGET, PREDS), abs=1e-6)


def test_stsb_pearson_and_spearman():
    target = torch.rand(50, generator=generator) * 5
    preds = target + torch.randn(50, generator=generator)
    values = _compute("sts-b", preds, target)
    assert values["pearson"] == pytest.approx(stats.pearsonr(preds, target).statistic, abs=1e-5)
    assert values["spearman"] == pytest.approx(stats.spearmanr(preds, target).statistic, abs=1e-5)


def test_three_class_accuracy():
    preds, target = torch.tensor([0, 1, 2, 2, 1]), torch.tensor([0, 1, 1, 2, 0])
    assert _compute("mnli", preds, target)["accuracy"] == pytest.approx(0.6)


@pytest.mark.parametrize("task", ["rte", "mrpc", "cola", "cb"])
def test_classification_metrics_skip_per_batch_validation_and_still_match_sklearn(task):
    # validate_args reads each batch back to the host (a GPU sync per evaluation step): it is off, and the values
    # are still sklearn's on valid inputs.
    spec = get_task(task)
    metrics = build_metrics(spec)
    checked = [m for m in metrics.modules() if hasattr(m, "validate_args")]
    assert checked and all(m.validate_args is False for m in checked)
    generator = torch.Generator().manual_seed(3)
    classes = max(len(spec.label_values), 2)
    preds, labels = (torch.randint(0, classes, (200,), generator=generator) for _ in range(2))
    metrics.update(preds, labels)
    values = {name: float(value) for name, value in metrics.compute().items()}
    assert values["accuracy"] == pytest.approx(accuracy_score(labels, preds))


@pytest.mark.parametrize("constant", ["predictions", "labels"])
def test_mcc_is_zero_where_undefined_as_sklearn_and_glue_score_it(constant):
    # torchmetrics' own eps substitute scores a model predicting one class on a 137/63 split at 0.056.
    labels = torch.cat([torch.ones(137), torch.zeros(63)]).long()
    preds = torch.cat([torch.ones(120), torch.zeros(80)]).long()
    if constant == "predictions":
        preds = torch.ones(200, dtype=torch.long)
    else:
        labels = torch.ones(200, dtype=torch.long)
    metrics = build_metrics(get_task("cola"))
    metrics.update(preds, labels)
    assert float(metrics.compute()["mcc"]) == 0.0 == matthews_corrcoef(labels, preds)
    varied = build_metrics(get_task("cola"))
    varied.update(torch.cat([torch.ones(120), torch.zeros(80)]).long(), torch.cat([torch.ones(137),
                                                                                   torch.zeros(63)]).long())
    assert float(varied.compute()["mcc"]) == pytest.approx(matthews_corrcoef(
        torch.cat([torch.ones(137), torch.zeros(63)]), torch.cat([torch.ones(120), torch.zeros(80)])), abs=1e-6)
