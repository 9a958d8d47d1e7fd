"""What a GPU run relies on, checked on CPU: no per-step host-device syncs, every rank gathered and judged under
DDP (gloo), multi-GPU trials refused, configs on ``accelerator: auto``, and the GPU check's no-CUDA exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT


def _gather(devices: int, out, backbone: str, data_dir: str) -> None:
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PET_DATA_DIR": data_dir}
    result = subprocess.run([sys.executable, "-m", "tests.scripts.gather_ddp", str(out), str(devices), backbone],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_head_features_collapse_guard_and_the_exact_probe_cover_every_rank_under_ddp(tmp_path, data_dir, tiny):
    from pet_lightning.callbacks.features import FEATURES_FILE

    _gather(2, tmp_path / "ddp", tiny, data_dir)
    saved = np.load(tmp_path / "ddp" / FEATURES_FILE)
    reference = {split: np.load(tmp_path / "ddp" / f"reference_{split}.npz") for split in ("train", "test")}
    # Every reported example (RTE dev: 277, an odd count split over 2 ranks), in the split's order, as one process
    # reads them with the same weights; train keeps the first max_examples=10.
    assert len(saved["report_labels"]) == len(reference["test"]["labels"]) == 277
    np.testing.assert_array_equal(saved["report_labels"], reference["test"]["labels"])
    np.testing.assert_allclose(saved["report_inputs"], reference["test"]["inputs"], atol=1e-5)
    np.testing.assert_array_equal(saved["train_labels"], reference["train"]["labels"][:10])
    np.testing.assert_allclose(saved["train_inputs"], reference["train"]["inputs"][:10], atol=1e-5)
    # CollapseGuard: both ranks hold the same totals, over all 16 training labels and all 277 predictions.
    rank0, rank1 = (json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1
    assert sum(rank0["labels"].values()) == 16 and sum(rank0["classes"].values()) == 277
    assert rank0["loss_batches"] == 4  # 2 batches of 4 on each of the 2 ranks
    # ExactLinearProbe: rank 0 solved and every rank starts from its head (bitwise, as DDP assumes).
    assert len(rank0["probe_head"]) == 2 * 32 + 2 and rank0["probe_head"] == rank1["probe_head"]


HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


class _HostReads:
    """Patches torch.Tensor's host reads between on_train_batch_start (first callback) and on_train_batch_end (last
    callback): every call is recorded with the innermost pet_lightning frame that made it. On a GPU each of these
    (and a .to() onto the CPU) waits for the device."""

    def __init__(self):
        import torch

        self.torch, self.calls, self.saved = torch, [], {}

    def _wrap(self, name, original):
        import traceback

        def spy(tensor, *args, **kwargs):
            if name != "to" or _to_host(tensor, args, kwargs):
                caller = traceback.extract_stack()[-2]  # the frame that called the Tensor method
                where = caller.filename.split("/site-packages/")[-1].split("/pet_lightning/")[-1]
                self.calls.append(f"{name} at {where}:{caller.lineno}")
            return original(tensor, *args, **kwargs)

        return spy

    def _wrap_tensor(self, original):
        import numbers
        import traceback

        def spy(data, *args, **kwargs):
            # A Python number made a tensor on the device is a blocking host-to-device copy (what logging a float
            # per step costs: Lightning's self.log turns it into torch.tensor(value, device=...)).
            if isinstance(data, numbers.Number):
                caller = next(f for f in reversed(traceback.extract_stack()[:-1]) if "/lightning/" not in f.filename)
                if "/site-packages/torch/" not in caller.filename:  # torch's own (optimizer state at its first step)
                    where = caller.filename.split("/pet_lightning/")[-1]
                    self.calls.append(f"tensor({data!r}) from {where}:{caller.lineno}")
            return original(data, *args, **kwargs)

        return spy

    def start(self):
        for name in (*HOST_READS, "to"):
            self.saved[name] = getattr(self.torch.Tensor, name)
            setattr(self.torch.Tensor, name, self._wrap(name, self.saved[name]))
        self.saved_tensor = self.torch.tensor
        self.torch.tensor = self._wrap_tensor(self.saved_tensor)

    def stop(self):
        for name, original in self.saved.items():
            setattr(self.torch.Tensor, name, original)
        self.saved = {}
        if getattr(self, "saved_tensor", None) is not None:
            self.torch.tensor, self.saved_tensor = self.saved_tensor, None


def _to_host(tensor, args, kwargs) -> bool:
    import torch

    target = kwargs.get("device", args[0] if args else None)
    host = isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"
    return host and tensor.device.type != "cpu"


def test_no_training_step_reads_a_tensor_back_to_the_host(tmp_path, data_dir, tiny):
    """LP-FT with the feature cache (stage 1: misses, then hits), the stage log and CollapseGuard: the hooks that
    used to read a tensor back (or copy a Python float to the device) every step. Tensors live on the CPU here, so
    a call is counted whether or not it would sync: on a GPU each one does."""
    import lightning as L

    from pet_lightning import GlueDataModule, PETModule
    from pet_lightning.callbacks import CollapseGuard, TwoStageTraining

    reads = _HostReads()
    steps = []

    class Open(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            steps.append(len(pl_module.feature_cache.store.get("train", {})))  # examples cached so far
            reads.start()

    class Close(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            reads.stop()

    module = PETModule(task="rte", backbone=tiny, strategy="frozen", learning_rate=1e-3, init_seed=0)
    data = GlueDataModule(task="rte", backbone=tiny, batch_size=4, max_length=32, train_subset=16, order_seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision="32-true", max_epochs=3, limit_val_batches=2,
                        num_sanity_val_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=tmp_path,
                        callbacks=[Open(), CollapseGuard(), TwoStageTraining(stage1_epochs=2), Close()])
    try:
        trainer.fit(module, datamodule=data)
    finally:
        reads.stop()
    # 3 epochs of 4 steps: stage 1 filled the cache in epoch 0 and read it in epoch 1; stage 2 trains the encoder.
    assert steps == [0, 4, 8, 12, 16, 16, 16, 16, 0, 0, 0, 0]
    # transformers' own SDPA mask check (`padding_mask.all()` in masking_utils, once per encoder forward) is the
    # library's, made in every loop that runs the model (Trainer's too): not counted.
    ours = sorted({call for call in reads.calls if " at transformers/" not in call})
    assert ours == [], ours


def test_the_sync_counter_sees_a_host_read(tmp_path):
    """The counter above would notice the old CollapseGuard's float(loss) per step."""
    import torch

    loss = torch.tensor(3.0)
    reads = _HostReads()
    reads.start()
    try:
        total = 0.0
        total += float(loss.detach())  # what CollapseGuard.on_train_batch_end did every step
        [float(x) for x in torch.arange(3).tolist()]  # and its label tally
    finally:
        reads.stop()
    assert [call.split(" at ")[0] for call in reads.calls] == ["__float__", "tolist"]


def _fit_configs() -> list[str]:
    """Every shipped config a user fits (``python cli.py fit --config``): not sweeps or study files, not presets."""
    import yaml

    paths = []
    for path in sorted((REPO_ROOT / "configs").rglob("*.yaml")):
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        if path.parent.name != "trainer" and "trainer" in config and "model" in config and "tasks" not in config:
            paths.append(path.relative_to(REPO_ROOT).as_posix())
    return paths


def test_every_fit_config_trains_on_one_device_of_the_best_kind():
    """`accelerator: auto` and one device: a GPU machine trains on one GPU (not its CPU, not every GPU with DDP),
    a CPU machine on the CPU. Lightning accepts each config's trainer settings as they are."""
    import lightning as L
    import yaml

    configs = _fit_configs()
    assert len(configs) >= 100 and "configs/quickstart.yaml" in configs
    for path in configs:
        trainer = yaml.safe_load((REPO_ROOT / path).read_text(encoding="utf-8"))["trainer"]
        assert (trainer.get("accelerator"), trainer.get("devices"), trainer.get("strategy", "auto")) == (
            "auto", 1, "auto"), path
        settings = {k: v for k, v in trainer.items() if k not in ("callbacks", "logger")}
        built = L.Trainer(**settings, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        assert built.num_devices == 1, path


def test_the_one_gpu_preset_is_one_device_without_ddp():
    import yaml

    trainer = yaml.safe_load((REPO_ROOT / "configs/trainer/gpu1.yaml").read_text(encoding="utf-8"))["trainer"]
    assert trainer == {"accelerator": "gpu", "devices": 1, "strategy": "auto", "precision": "bf16-mixed"}


def _sweep_file(path, **settings):
    import yaml

    path.write_text(yaml.safe_dump({"tasks": ["rte"], "methods": ["full"], "out": str(path.parent / "o"),
                                    **settings}), encoding="utf-8")
    return path


def test_multi_gpu_trials_are_refused_up_front_with_what_to_do(tmp_path, capsys):
    """devices=2 inside a Ray worker makes Lightning re-launch Ray's worker script as DDP ranks (a hang)."""
    from pet_lightning.sweeps.plan import SweepConfig, SweepError
    from pet_lightning.sweeps.runner import main as sweep_main

    for share in (2, 4, 1.5):
        with pytest.raises(SweepError, match="at most one GPU") as err:
            SweepConfig.from_file(_sweep_file(tmp_path / "sweep_g.yaml", gpus_per_trial=share))
        assert "\n" not in str(err.value) and "gpus_per_trial <= 1" in str(err.value)
    # The command-line flag is checked before Ray starts: one line, exit code 2.
    assert sweep_main(["--config", str(_sweep_file(tmp_path / "sweep_f.yaml")), "--gpus-per-trial", "2"]) == 2
    err = capsys.readouterr().err
    assert "gpus_per_trial=2.0: a sweep run trains on at most one GPU" in err and err.count("\n") == 1
    for share in (0, 0.25, 0.5, 1):
        SweepConfig.from_file(_sweep_file(tmp_path / "sweep_ok.yaml", gpus_per_trial=share))


def test_a_trial_runs_on_one_device_without_ddp_and_caps_its_share_of_gpu_memory(monkeypatch):
    import torch

    from pet_lightning.sweeps import trainable

    config = {"trainer": {"accelerator": "gpu", "devices": -1, "strategy": "ddp"}}
    trainable._placement(config, 1.0)
    assert config["trainer"] == {"accelerator": "gpu", "devices": 1, "strategy": "auto"}
    trainable._placement(config, 0.0)
    assert config["trainer"] == {"accelerator": "cpu", "devices": 1, "strategy": "auto"}

    fractions, emptied = [], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, *a: fractions.append(f))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    assert trainable.cap_gpu_memory(0.5) == pytest.approx(0.475) and fractions == [pytest.approx(0.475)]
    assert trainable.cap_gpu_memory(1.0) is None and trainable.cap_gpu_memory(0.0) is None and len(fractions) == 1
    trainable.release_gpu_memory()
    assert emptied == [True]


def test_a_sweep_precision_wins_over_the_method_files(tmp_path):
    """Every revisiting method file sets bf16-mixed, which `base` cannot override; `precision` is merged last (and
    is part of what a run is: its ids change)."""
    from pet_lightning.sweeps.plan import SweepConfig, SweepError, plan_runs

    methods = {"lora": {"config": [str(REPO_ROOT / "configs/revisiting/{task}_{method}.yaml")]}}
    base = {"trainer": {"precision": "16-mixed"}}
    default = plan_runs(SweepConfig.from_file(_sweep_file(tmp_path / "sweep_a.yaml", methods=methods, base=base)))
    switched = plan_runs(SweepConfig.from_file(_sweep_file(tmp_path / "sweep_b.yaml", methods=methods,
                                                           precision="16-mixed")))
    assert default[0].config["trainer"]["precision"] == "bf16-mixed"  # base loses to the method file
    assert switched[0].config["trainer"]["precision"] == "16-mixed"
    assert default[0].run_id != switched[0].run_id
    with pytest.raises(SweepError, match="precision='fp16': use one of"):
        SweepConfig.from_file(_sweep_file(tmp_path / "sweep_c.yaml", precision="fp16"))


def test_epoch_checkpoints_thin_out_only_when_saving_is_slow_next_to_training():
    from pet_lightning.sweeps.trainable import EpochCheckpoint

    saver = EpochCheckpoint(report=lambda metrics, folder: None)
    assert saver.due(0.0)
    saver._last_save = (100.0, 0.2)  # fast saves (every test and CPU study): every epoch
    assert saver.due(100.1)
    saver._last_save = (100.0, 8.0)  # 8 s of state after a 2 s epoch (EH-FT at paper scale): every ~80 s
    assert not saver.due(102.0) and not saver.due(179.0) and saver.due(180.0)


def test_bf16_on_a_gpu_without_native_bf16_warns_with_the_fix(monkeypatch):
    import torch

    from pet_lightning import device as D

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    message = D.gpu_bf16_message("bf16-mixed", cuda)
    assert "Tesla V100" in message and "compute capability 7.0" in message and "16-mixed" in message
    assert "\n" not in message
    assert D.gpu_bf16_message("16-mixed", cuda) is None
    assert D.gpu_bf16_message("bf16-mixed", torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert D.gpu_bf16_message("bf16-mixed", cuda) is None


def test_tf32_on_cuda_only_and_compile_on_request(monkeypatch):
    from types import SimpleNamespace

    import torch

    from pet_lightning import device as D

    asked = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", asked.append)
    monkeypatch.setattr(D, "gpu_bf16_message", lambda precision, device: None)

    def module(kind: str):
        return SimpleNamespace(trainer=SimpleNamespace(precision="32-true"), device=torch.device(kind),
                               model=torch.nn.Linear(2, 2))

    D.prepare_device(module("cpu"))
    assert asked == []
    D.prepare_device(module("cuda"), tf32=False)
    assert asked == []
    D.prepare_device(module("cuda"))
    assert asked == ["high"]
    plain, compiled = module("cpu"), module("cpu")
    D.prepare_device(plain)
    D.prepare_device(compiled, compile=True)
    assert plain.model._compiled_call_impl is None and compiled.model._compiled_call_impl is not None
    assert list(compiled.model.state_dict()) == ["weight", "bias"]  # checkpoints keep their keys


def test_padding_to_a_multiple_of_8_and_host_side_cache_keys():
    import torch

    from pet_lightning.data.encoding import PaddingCollator
    from pet_lightning.feature_cache import fingerprint

    features = [{"input_ids": [101, 7, 102], "attention_mask": [1, 1, 1], "label": 0, "idx": 4},
                {"input_ids": [101, 7, 8, 9, 10, 102], "attention_mask": [1] * 6, "label": 1, "idx": 9}]
    plain, padded = PaddingCollator(0)(features), PaddingCollator(0, pad_to_multiple_of=8)(features)
    assert plain["input_ids"].shape == (2, 6) and padded["input_ids"].shape == (2, 8)
    assert padded["attention_mask"][:, 6:].sum() == 0
    # (idx, fingerprint) as Python ints, computed before the batch goes to the device: the same the cache computes.
    assert padded["cache_keys"] == list(zip([4, 9], fingerprint(padded["input_ids"]).tolist()))
    assert all(isinstance(k, int) and isinstance(p, int) for k, p in padded["cache_keys"])
    with pytest.raises(ValueError, match="pad_to_multiple_of=0"):
        PaddingCollator(0, pad_to_multiple_of=0)
    assert torch.equal(plain["input_ids"], padded["input_ids"][:, :6])


def test_loaders_pin_memory_only_for_cuda_training(monkeypatch):
    import torch

    from pet_lightning.data.encoding import loader_options

    cuda_trainer = type("T", (), {"accelerator": type("CUDAAccelerator", (), {})()})()
    cpu_trainer = type("T", (), {"accelerator": type("CPUAccelerator", (), {})()})()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loader_options(cuda_trainer, 0) == {"pin_memory": True, "persistent_workers": False}
    assert loader_options(cpu_trainer, 2) == {"pin_memory": False, "persistent_workers": True}
    assert loader_options(None, 0)["pin_memory"] is False


def test_the_feature_cache_forgets_rows_filled_on_another_device():
    """After a GPU fit the cache holds CUDA tensors; a later CPU validate of the same module must not read them.
    Simulated with a 'meta' tensor standing for another device."""
    import torch

    from pet_lightning.feature_cache import FeatureCache

    cache = FeatureCache()
    cache.store["val/0"] = {0: (1, torch.empty(4, device="meta"), None)}
    calls = []
    cache._encode = lambda model, inputs: calls.append(1) or (None, torch.zeros(1, 4), None)
    cache.checked = True
    cache.head_logits = lambda model, inputs, cls, pooled: cls
    out = cache.logits(None, {"input_ids": torch.tensor([[5, 6]])}, torch.tensor([0]), "val/0", [(0, 1)])
    assert calls == [1] and out.device.type == "cpu" and cache.store["val/0"][0][1].device.type == "cpu"


def test_a_half_precision_hub_checkpoint_loads_in_float32(tmp_path):
    """transformers 5 loads the dtype a config declares; mixed precision needs float32 master weights."""
    import json

    import torch
    from transformers import BertConfig, BertModel

    from pet_lightning.backbones import load_backbone, load_tokenizer
    from pet_lightning.tasks import get_task

    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32)
    BertModel(config).to(torch.bfloat16).save_pretrained(tmp_path)
    load_tokenizer("minilm").save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    model = load_backbone(str(tmp_path), get_task("rte"))
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_the_all_gpu_preset_runs_ddp_without_a_buffer_broadcast_every_step(tmp_path):
    """configs/trainer/gpu.yaml as the CLI parses it: DDP whose DistributedDataParallel gets broadcast_buffers=False
    (the encoders' buffers are constant ids; the broadcast is a collective per step for nothing)."""
    out = subprocess.run([sys.executable, "cli.py", "fit", "--config", "configs/quickstart.yaml", "--config",
                          "configs/trainer/gpu.yaml", "--print_config"], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    import yaml
    from lightning.pytorch.strategies import DDPStrategy

    strategy = yaml.safe_load(out.stdout)["trainer"]["strategy"]
    assert strategy["class_path"] == "lightning.pytorch.strategies.DDPStrategy"
    built = DDPStrategy(**{k: v for k, v in strategy["init_args"].items() if v is not None})
    assert built._ddp_kwargs.get("broadcast_buffers") is False
