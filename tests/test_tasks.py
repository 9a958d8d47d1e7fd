import pytest

from pet_lightning.tasks import TASKS, get_task

GLUE = ["cola", "sst-2", "mrpc", "sts-b", "qqp", "mnli", "qnli", "rte", "wnli"]


def test_all_nine_glue_tasks_are_in_the_table():
    assert {TASKS[name].name for name in GLUE} == set(GLUE)
    assert all(TASKS[name].benchmark == "glue" for name in GLUE)


@pytest.mark.parametrize(
    ("task", "group"), [("rte", "medium"), ("wnli", "low"), ("cola", "medium"), ("qqp", "high"), ("mnli", "high")]
)
def test_resource_group_follows_train_size(task, group):
    assert get_task(task).resource_group == group


def test_metrics_as_the_glue_paper_reports_them():
    assert get_task("cola").headline == "mcc"
    assert set(get_task("mrpc").metrics) == {"f1", "accuracy"}
    assert set(get_task("qqp").metrics) == {"f1", "accuracy"}
    assert set(get_task("sts-b").metrics) == {"pearson", "spearman"}
    assert get_task("sts-b").kind == "regression" and get_task("sts-b").num_labels == 1
    assert list(get_task("mnli").eval_splits) == ["validation_matched", "validation_mismatched"]


def test_aliases_and_case():
    assert get_task("STSB") is get_task("sts-b")
    assert get_task("SST2").name == "sst-2"


def test_unknown_task_is_a_one_line_error_listing_known_tasks():
    with pytest.raises(ValueError, match=r"unknown task 'rtee': choose one of .*rte") as err:
        get_task("rtee")
    assert "\n" not in str(err.value)
