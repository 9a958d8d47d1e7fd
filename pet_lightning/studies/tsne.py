"""EH-FT Figure 4: t-SNE (scikit-learn) of the features entering the classification head after stage 1, one
panel per head initialisation, train (dots) and reported dev examples (crosses) coloured by label.

Each run of the ``eh_ft_figure4`` study trains stage 1 only (a PET method + the MLP head, or the head alone)
and its :class:`~pet_lightning.callbacks.HeadFeatures` callback saves the head's inputs. The ``random_head``
panel is the pretrained encoder with the head as initialised: its inputs are those of the linear-probing run
(a frozen encoder feeds the head the same features whatever the head), and its hidden layer is computed here
from a freshly initialised MLP head. A second figure shows the MLP's hidden layer (after ReLU), where the head
initialisations differ even when their inputs do not. Beside the pictures, a number: the accuracy of a 5-nearest-
neighbour classifier fitted on the train features and scored on the dev features (how separable they are).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pet_lightning.callbacks.features import FEATURES_FILE
from pet_lightning.errors import StudyError
from pet_lightning.studies.common import StudyRuns, fmt, write_table
from pet_lightning.studies.registry import layout
from pet_lightning.sweeps.records import run_path

PANELS = {"random_head": "random head", "linear_probing": "linear probing", "lora": "LoRA", "bitfit": "BitFit",
          "prefix_tuning": "prefix"}


def _features(record: dict[str, Any]) -> dict[str, np.ndarray]:
    # config_path is relative to the results file's folder in records since issue 34 (absolute before).
    path = (run_path(record, "config_path") or Path()).parent / FEATURES_FILE
    if not path.is_file():
        raise StudyError(f"run {record['run_id']} left no {FEATURES_FILE} in {path.parent}: its study file must add "
                         "the pet_lightning.callbacks.HeadFeatures callback; rerun it")
    with np.load(path) as data:
        return dict(data)


def _fresh_hidden(record: dict[str, Any], inputs: np.ndarray) -> np.ndarray:
    """The hidden layer of the MLP head as the run's config initialises it, on ``inputs``."""
    import torch

    from pet_lightning.heads import MLPHead

    config = yaml.safe_load(run_path(record, "config_path").read_text(encoding="utf-8"))["model"]
    torch.manual_seed(int(record.get("init_seed", 0)))
    head = MLPHead(inputs.shape[1], int(config.get("head_hidden_size", 2048)), 2,
                   float(config.get("head_init_std", 0.005)))
    with torch.no_grad():
        return torch.relu(head.dense(torch.from_numpy(inputs).float())).numpy()


def panels_of(records: list[dict[str, Any]]) -> dict[str, dict[str, np.ndarray]]:
    """Per panel name: train / report features (``inputs`` and, for MLP heads, ``hidden``) and labels."""
    by_method = {record["method"]: record for record in records}
    panels: dict[str, dict[str, np.ndarray]] = {}
    for method in PANELS:
        source = "linear_probing" if method == "random_head" else method
        if source not in by_method:
            continue
        data = _features(by_method[source])
        if method == "random_head":
            data = {**data, "train_hidden": _fresh_hidden(by_method[source], data["train_inputs"]),
                    "report_hidden": _fresh_hidden(by_method[source], data["report_inputs"])}
        panels[method] = data
    if not panels:
        raise StudyError(f"no runs of {', '.join(m for m in PANELS if m != 'random_head')} in these results")
    return panels


def knn_accuracy(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    classifier = KNeighborsClassifier(n_neighbors=5).fit(train, train_labels)
    return float(classifier.score(test, test_labels))


def embed(train: np.ndarray, test: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE of train and test together (one map per panel), split back."""
    from sklearn.manifold import TSNE

    both = np.concatenate([train, test])
    perplexity = float(min(30.0, (len(both) - 1) / 3))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(both)
    return points[: len(train)], points[len(train):]


def plot_panels(panels: dict[str, dict[str, np.ndarray]], kind: str, path: Path, title: str) -> dict[str, float]:
    """One PNG with one t-SNE panel per initialisation; returns each panel's kNN accuracy."""
    from pet_lightning.reports.figures import pyplot

    plt = pyplot()
    names = [name for name in panels if f"train_{kind}" in panels[name]]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.6), squeeze=False)
    scores = {}
    for axis, name in zip(axes[0], names):
        data = panels[name]
        train, test = data[f"train_{kind}"], data[f"report_{kind}"]
        scores[name] = knn_accuracy(train, data["train_labels"], test, data["report_labels"])
        train_2d, test_2d = embed(train, test)
        axis.scatter(train_2d[:, 0], train_2d[:, 1], c=data["train_labels"], cmap="coolwarm", s=6, marker="o",
                     alpha=0.5, label="train")
        axis.scatter(test_2d[:, 0], test_2d[:, 1], c=data["report_labels"], cmap="coolwarm", s=10, marker="x",
                     label="dev")
        axis.set_title(f"{PANELS[name]}\n5-NN dev acc {scores[name]:.3f}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return scores


@layout("eh_ft_figure4")
def write_figure4(runs: StudyRuns, out: Path, alpha: float) -> dict[str, Path]:
    tasks = sorted({record["task"] for record in runs.records})
    if len(tasks) != 1:
        raise StudyError(f"eh_ft_figure4 draws one task; these results hold {', '.join(tasks)}: run one task")
    panels = panels_of(runs.records)
    paths = {"figure4": out / "figure4.png", "figure4_hidden": out / "figure4_hidden.png"}
    inputs = plot_panels(panels, "inputs", paths["figure4"],
                         f"{tasks[0]}: features entering the head after stage 1 (t-SNE)")
    hidden = plot_panels(panels, "hidden", paths["figure4_hidden"],
                         f"{tasks[0]}: the MLP head's hidden layer after stage 1 (t-SNE)")
    scores = {record["method"]: 100 * float(record["score"]) for record in runs.records}
    rows = [[PANELS[name], fmt(100 * inputs[name]), fmt(100 * hidden[name]) if name in hidden else "–",
             fmt(scores.get("linear_probing" if name == "random_head" else name)) if name != "random_head" else "–"]
            for name in panels]
    csv_rows = [{"panel": name, "knn_inputs": inputs[name], "knn_hidden": hidden.get(name)} for name in panels]
    table, table_paths = write_table(out, "figure4_separability", ["initialisation", "5-NN dev acc (head inputs)",
                                                      "5-NN dev acc (hidden layer)", "stage-1 dev score"], rows,
                                     csv_rows)
    paths.update(table_paths)
    page = [
        "# EH-FT study, Figure 4: what the head sees after stage 1\n",
        runs.header + "\n",
        "One t-SNE map per head initialisation (train dots, dev crosses, colour = label). The random head and "
        "linear probing share their input features by construction (a frozen encoder); they differ in the head's "
        "hidden layer (second figure).\n",
        "![head inputs](figure4.png)\n", "![hidden layer](figure4_hidden.png)\n", table,
    ]
    (out / "report.md").write_text("\n".join(page), encoding="utf-8")
    paths["report"] = out / "report.md"
    return paths
