"""SuperGLUE metrics against hand computations on small fixed examples."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import f1_score, matthews_corrcoef

from pet_lightning.metrics import build_metrics
from pet_lightning.tasks import get_task


def _compute(task: str, preds, target, batches: int = 1, **extras) -> dict[str, float]:
    """Feed the task's metric collection in ``batches`` chunks (as evaluation does) and compute."""
    collection = build_metrics(get_task(task), prefix="val/")
    preds, target = torch.tensor(preds), torch.tensor(target)
    extras = {k: torch.tensor(v) for k, v in extras.items()}
    for chunk in torch.arange(len(preds)).chunk(batches):
        collection.update(preds[chunk], target[chunk], **{k: v[chunk] for k, v in extras.items()})
    return {name: float(value) for name, value in collection.compute().items()}


def test_cb_accuracy_macro_f1_and_their_mean():
    preds, target = [0, 1, 2, 0, 1], [0, 1, 1, 0, 2]
    # Per class F1: entailment 1, contradiction 1/2 (TP 1, FP 1, FN 1), neutral 0 -> macro 1/2.
    values = _compute("cb", preds, target, batches=2)
    assert values["val/accuracy"] == pytest.approx(3 / 5)
    assert values["val/macro_f1"] == pytest.approx(1 / 2)
    assert values["val/macro_f1"] == pytest.approx(f1_score(target, preds, average="macro"))
    assert values["val/avg_acc_f1"] == pytest.approx((3 / 5 + 1 / 2) / 2)


def test_multirc_f1a_over_all_answers_and_exact_match_per_question():
    # Questions (groups) 4, 4, 9, 9, 2: question 4 all right, question 9 one wrong, question 2 right.
    preds = [1, 0, 1, 1, 0]
    target = [1, 0, 0, 1, 0]
    group = [4, 4, 9, 9, 2]
    values = _compute("multirc", preds, target, batches=3, group=group)
    # F1a over all answers: TP 2, FP 1, FN 0 -> P 2/3, R 1 -> F1 4/5.
    assert values["val/f1a"] == pytest.approx(0.8)
    assert values["val/em"] == pytest.approx(2 / 3)
    assert values["val/avg_f1a_em"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_record_scores_the_top_candidate_of_each_query():
    # Query 0: candidates margins 0.5, 2.0, -1 -> the second (F1 0.4, EM 0); query 1: margins 1, 3 -> second
    # (F1 1, EM 1); query 2: one candidate (F1 0.5, EM 0).
    logits = [[0.0, 0.5], [0.0, 2.0], [1.0, 0.0], [2.0, 3.0], [0.0, 3.0], [0.0, 0.1]]
    answer_f1 = [1.0, 0.4, 0.0, 0.0, 1.0, 0.5]
    answer_em = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    group = [0, 0, 0, 1, 1, 2]
    preds = [int(row[1] > row[0]) for row in logits]
    target = [1, 0, 0, 0, 1, 0]
    values = _compute(
        "record", preds, target, batches=2, group=group, logits=logits, answer_f1=answer_f1, answer_em=answer_em
    )
    assert values["val/record_f1"] == pytest.approx((0.4 + 1.0 + 0.5) / 3)
    assert values["val/record_em"] == pytest.approx(1 / 3)
    assert values["val/avg_f1_em"] == pytest.approx(((0.4 + 1.0 + 0.5) / 3 + 1 / 3) / 2)


def test_axb_matthews_and_axg_accuracy_with_gender_parity():
    preds, target = [1, 0, 1, 1, 0, 0, 1], [1, 0, 0, 1, 1, 0, 1]
    values = _compute("axb", preds, target)
    assert values["val/mcc"] == pytest.approx(matthews_corrcoef(target, preds))
    # Pairs 7, 9, 11: predictions agree in pairs 7 and 11 only.
    values = _compute("axg", [0, 0, 1, 0, 1, 1], [0, 1, 1, 0, 1, 1], batches=2, group=[7, 7, 9, 9, 11, 11])
    assert values["val/gender_parity"] == pytest.approx(2 / 3)
    assert values["val/accuracy"] == pytest.approx(5 / 6)


def test_grouped_metrics_reset_between_epochs_and_refuse_missing_groups():
    collection = build_metrics(get_task("multirc"))
    collection.update(torch.tensor([0, 1]), torch.tensor([1, 1]), group=torch.tensor([0, 0]))
    assert float(collection.compute()["em"]) == 0.0
    collection.reset()
    collection.update(torch.tensor([1, 1]), torch.tensor([1, 1]), group=torch.tensor([0, 0]))
    assert float(collection.compute()["em"]) == 1.0
    with pytest.raises(TypeError):
        build_metrics(get_task("multirc")).update(torch.tensor([1]), torch.tensor([1]))
