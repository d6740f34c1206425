"""Bringing one's own model and data: adapted networks, torch Datasets, `unlearnkit.unlearn`,
torchvision:NAME models, and third-party architecture and data-set plugins."""

from __future__ import annotations

import copy
import json
import os
import re
import types
from collections import Counter

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset

import unlearnkit as uk
from tests.test_cli import unlearn as unlearn_cli
from unlearnkit import DataOutline, DataShape, DataSource, plugins
from unlearnkit.checkpoint import save_model
from unlearnkit.data.forget import random_split
from unlearnkit.engine.streams import StreamedData, dataset_labels
from unlearnkit.errors import PluginFault, UnlearnkitError
from unlearnkit.models import AdaptedClassifier, as_classifier, build, fresh_copy, user_network
from unlearnkit.plugins import discover

pytestmark = pytest.mark.usefixtures("private_cache")


class Blobs(Dataset):
    """A user's own Dataset: 3x32x32 images whose class shifts their brightness; training reads flip at random."""

    def __init__(self, n: int, seed: int, augment: bool, classes: int = 4):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        self.images = torch.randn(n, 3, 32, 32, generator=g) * 0.5 + self.labels.view(-1, 1, 1, 1) * 1.0
        self.augment = augment
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        self.reads.append(i)
        x = self.images[i]
        if self.augment and torch.rand(1).item() < 0.5:
            x = x.flip(-1)
        return x, int(self.labels[i])


# --------------------------------------------------------------------------- adapted networks

SMALL_VIT = dict(image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32)
FAMILIES = {
    "resnet": (lambda: torchvision.models.resnet18(num_classes=5), "fc"),
    "mobilenet": (lambda: torchvision.models.mobilenet_v3_small(num_classes=5), "classifier.3"),
    "efficientnet": (lambda: torchvision.models.efficientnet_b0(num_classes=5), "classifier.1"),
    "densenet": (lambda: torchvision.models.densenet121(num_classes=5), "classifier"),
    "vit": (lambda: torchvision.models.VisionTransformer(num_classes=5, **SMALL_VIT), "heads.head"),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_common_families_split_into_features_and_their_final_linear(family):
    make, head_path = FAMILIES[family]
    torch.manual_seed(0)
    network = make().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = network(x)
        model = as_classifier(network).eval()
        assert isinstance(model, AdaptedClassifier) and model.head_path == head_path
        features = model.features(x)
        assert features.shape == (2, model.feature_dim)
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(model.head(features), expected, atol=1e-5)
    # one set of weights: as many tensors as the network, shared with it
    assert len(model.state_dict()) == len(network.state_dict())
    assert {p.data_ptr() for p in model.parameters()} == {p.data_ptr() for p in network.parameters()}


def test_training_the_classifier_trains_the_users_network():
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=3)
    model = as_classifier(network)
    before = network.fc.weight.detach().clone()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    nn.functional.cross_entropy(model(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 0])).backward()
    optimiser.step()
    assert not torch.equal(network.fc.weight, before)
    assert user_network(model) is network


def test_a_copy_is_independent_and_a_fresh_copy_is_redrawn():
    network = torchvision.models.resnet18(num_classes=3)
    model = as_classifier(network)
    twin = copy.deepcopy(model)
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(model.parameters(), twin.parameters()))
    assert twin.network() is not network and isinstance(twin.network(), torchvision.models.ResNet)
    fresh = fresh_copy(model)
    assert not torch.equal(fresh.head.weight, model.head.weight)


def test_a_replaced_head_goes_back_into_the_network():
    network = torchvision.models.resnet18(num_classes=3)
    model = as_classifier(network)
    model.head = nn.Linear(model.feature_dim, 3)  # as boundary-expand's pruning does
    assert user_network(model).fc is model.head


class Unnamed(nn.Module):
    """A layout no family uses: its head has a name the toolkit does not know, and it is not a Sequential."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU())
        self.decide = nn.Linear(8, 3)

    def forward(self, x):
        return self.decide(self.body(x))


def test_an_unknown_layout_asks_for_the_head_and_a_given_head_works():
    network = Unnamed()
    with pytest.raises(UnlearnkitError, match="cannot tell which layer") as info:
        as_classifier(network)
    assert "head=" in info.value.hint
    model = as_classifier(network, head="decide")
    x = torch.randn(5, 3, 2, 2)
    assert model.features(x).shape == (5, 8) and torch.allclose(model(x), network(x))
    with pytest.raises(UnlearnkitError, match="not what its layer 'body.1' gives: the output comes from 'decide'"):
        as_classifier(network, head="body.1", sample=x)


def test_a_timm_style_classifier_path_is_followed():
    class TimmLike(nn.Module):
        pretrained_cfg = {"classifier": "head.fc"}

        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Module()
            self.head.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.head.fc(self.stem(x))

    model = as_classifier(TimmLike())
    assert model.head_path == "head.fc" and model.feature_dim == 4


# --------------------------------------------------------------------------- torch Datasets


def test_labels_come_from_targets_subsets_or_reading():
    data = Blobs(10, 0, augment=False)
    assert torch.equal(dataset_labels(data), data.labels)  # read item by item
    data.targets = data.labels.tolist()
    data.reads.clear()
    assert torch.equal(dataset_labels(data), data.labels) and data.reads == []
    assert torch.equal(dataset_labels(Subset(data, [3, 1])), data.labels[[3, 1]])
    pairs = TensorDataset(torch.zeros(3, 1), torch.tensor([2, 0, 1]))
    assert dataset_labels(pairs).tolist() == [2, 0, 1]


def test_streamed_batches_read_the_users_transforms_and_a_second_view_reads_again():
    train = Blobs(20, 0, augment=True)
    data = StreamedData(train, Blobs(8, 1, False), random_split(20, 0.2, 0), torch.device("cpu"), 4)
    index = data.split.retain[:6]
    train.reads.clear()
    batch = data.batch(index, torch.Generator())
    assert train.reads == index.tolist() and torch.equal(batch.y, train.labels[index])
    torch.manual_seed(3)
    views = [batch.view() for _ in range(4)]
    assert train.reads == index.tolist() * 5
    assert any(not torch.equal(v, batch.x) for v in views)  # random flips: the views differ
    retain = torch.cat([x for x, _ in data.eval_views("retain", 5)])
    assert retain.shape == (16, 3, 32, 32)


def test_streamed_reads_leave_the_callers_generators_as_they_were():
    data = StreamedData(Blobs(20, 0, augment=True), Blobs(8, 1, False), random_split(20, 0.2, 0), torch.device("cpu"), 4)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    batch = data.batch(data.split.retain[:6], torch.Generator())
    batch.view()
    assert torch.equal(torch.get_rng_state(), state)


class LoggedBlobs(Blobs):
    """Blobs whose reads are logged to a file with the reading process's id (workers' reads included)."""

    def __init__(self, log, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = log

    def __getitem__(self, i: int):
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")
        return super().__getitem__(i)


def test_streamed_training_reads_in_workers_and_repeats_bitwise_whatever_their_number(user_setup, tmp_path):
    network, _, test = user_setup
    weights, main_reads = [], []
    for workers in (0, 2):
        log = tmp_path / f"reads-{workers}"
        train = LoggedBlobs(log, 64, 0, augment=True)
        result = uk.unlearn(network, train, forget=list(range(8)), test_set=test, method="ft", augment=["coun-cl"],
                            params={"method": {"epochs": 2, "batch_size": 8}, "coun-cl": {"lambda": 0.5, "batch_size": 8}},
                            workers=workers, seed=3)
        weights.append(result.model.state_dict())
        pids = log.read_text().split()
        main_reads.append((pids.count(str(os.getpid())), len(pids)))
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())
    assert main_reads[0][0] == main_reads[0][1] == main_reads[1][1]
    # with workers, this process reads only coun-cl's own batches (8 samples, read for their x and two views,
    # at each of the 2 x 7 steps: the workers read the steps' batches, and no second view of them) and the
    # two samples the preflight runs the model on
    assert main_reads[1][0] == 14 * 3 * 8 + 2, main_reads


# --------------------------------------------------------------------------- unlearnkit.unlearn


def trained_resnet(train: Dataset, epochs: int = 3) -> nn.Module:
    """The user's own training loop."""
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=4)
    optimiser = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(train, batch_size=16, shuffle=True)
    network.train()
    for _ in range(epochs):
        for x, y in loader:
            optimiser.zero_grad()
            nn.functional.cross_entropy(network(x), y).backward()
            optimiser.step()
    return network.eval()


@pytest.fixture(scope="module")
def user_setup():
    train, test = Blobs(64, 0, augment=True), Blobs(32, 1, augment=False)
    return trained_resnet(train), train, test


def test_unlearn_a_users_resnet_with_coun_cl_and_no_retrain(user_setup):
    network, train, test = user_setup
    before = copy.deepcopy(network.state_dict())
    train.reads.clear()
    result = uk.unlearn(
        network, train, forget=list(range(8)), test_set=test, method="ft", augment=["coun-cl"],
        params={"method": {"epochs": 1, "batch_size": 16}, "coun-cl": {"lambda": 0.5}},
    )
    assert isinstance(result.model, torchvision.models.ResNet) and result.model is not network
    assert all(torch.equal(v, network.state_dict()[k]) for k, v in before.items())  # the given model is untouched
    assert any(not torch.equal(v, result.model.state_dict()[k]) for k, v in before.items() if v.is_floating_point())
    assert set(result.metrics) >= {"RA", "UA", "TA", "MIA", "flops"} and "avg_gap" not in result.metrics
    assert result.retrain_metrics is None and result.run.method == "ft+coun-cl"
    # each retain sample: read for its training view, 3 times at each of the 4 steps for coun-cl's own batch (all
    # 56 retain samples, fewer than its 256: their x and two views), and once per model measured (Original,
    # unlearned); each forget sample only to be measured: ft never trains on it. Samples 0 and 1 once more: the
    # preflight runs the model on them
    reads = Counter(train.reads)
    assert {reads[i] for i in range(8, 64)} == {1 + 3 * 4 + 2} and {reads[i] - (i < 2) for i in range(8)} == {2}
    assert "| ft+coun-cl |" in result._repr_markdown_()


def test_ft_trains_on_retain_samples_only_and_measures_on_the_test_time_views(user_setup):
    network, train, test = user_setup
    forget = list(range(8))
    train.reads.clear()
    uk.unlearn(network, train, forget=forget, test_set=test, method="ft", params={"method": {"epochs": 1}},
               train_eval_set=Blobs(64, 0, augment=False))
    assert train.reads[:2] == [0, 1]  # the preflight runs the model on the first two samples
    assert train.reads[2:] and not set(train.reads[2:]) & set(forget)  # training read retain samples only


def test_retrain_fills_the_gap(user_setup):
    network, train, test = user_setup
    result = uk.unlearn(network, train, forget="class:1", test_set=test, method="ft",
                        params={"method": {"epochs": 1}}, retrain=True, train={"epochs": 1, "batch_size": 16})
    assert result.retrain_metrics is not None and result.retrain_metrics["avg_gap"] == 0
    assert result.metrics["avg_gap"] > 0 and "premise" in result.metrics
    assert result.run.split.classes == (1,)


def test_python_api_mistakes_are_one_clear_error(user_setup):
    network, train, test = user_setup
    with pytest.raises(UnlearnkitError, match="neither 'method' nor an augmenter"):
        uk.unlearn(network, train, forget=[0], test_set=test, params={"coun-cl": {"lambda": 1}})
    with pytest.raises(UnlearnkitError, match="not a scenario"):
        uk.unlearn(network, train, forget="random:lots", test_set=test)
    with pytest.raises(UnlearnkitError, match="indices in 0..63"):
        uk.unlearn(network, train, forget=[64], test_set=test)
    with pytest.raises(UnlearnkitError, match="unknown method"):
        uk.unlearn(network, train, forget=[0], test_set=test, method="negrad")


# --------------------------------------------------------------------------- models and data sets as plugins


def test_torchvision_models_build_for_the_data_set_shape():
    model = build("torchvision:resnet18", 1, 7, 28)
    assert isinstance(model, AdaptedClassifier) and model.head.out_features == 7
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 7)
    with pytest.raises(UnlearnkitError, match="did you mean resnet18"):
        build("torchvision:resnet81", 3, 10)
    with pytest.raises(UnlearnkitError, match="no `model.width`"):
        build("torchvision:resnet18", 3, 10, width=8)


def test_timm_models_without_timm_say_how_to_install_it():
    import importlib.util

    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed here")
    with pytest.raises(UnlearnkitError, match="timm") as info:
        build("timm:resnet18", 3, 10)
    assert "unlearnkit[timm]" in info.value.hint


THIRD_PARTY = '''
from torch import nn
from unlearnkit import Architecture, DataSource, hookimpl
from unlearnkit.data import Datasets
import torch
from torch.utils.data import TensorDataset

class Perceptron(nn.Module):
    def __init__(self, inputs, classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(inputs, 16), nn.ReLU())
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.body(x))

class TinyNet(Architecture):
    """A two-layer perceptron."""
    name = "tiny-net"
    def build(self, shape, width=None, variant=None):
        return Perceptron(shape.in_channels * shape.image_size ** 2, shape.num_classes)

class Stripes(DataSource):
    """Horizontal vs vertical stripes."""
    name = "stripes"
    def load(self, root, download, image_size):
        g = torch.Generator().manual_seed(0)
        def make(n):
            y = torch.randint(0, 2, (n,), generator=g)
            x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
            x[y == 0, :, ::2, :] += 1
            x[y == 1, :, :, ::2] += 1
            return TensorDataset(x, y)
        return Datasets(make(60), make(20), classes=["horizontal", "vertical"])

@hookimpl
def register_models(register):
    register(TinyNet)

@hookimpl
def register_datasets(register):
    register(Stripes)
'''


@pytest.fixture
def third_party(monkeypatch):
    module = types.ModuleType("acme_unlearn")
    exec(compile(THIRD_PARTY, "acme_unlearn.py", "exec"), module.__dict__)
    registry = discover(modules=[("acme", module)], env={})
    monkeypatch.setattr(plugins, "_installed", registry)
    return registry


def test_third_party_model_and_data_set_are_listed_and_run(third_party, capsys, tmp_path):
    code, out, _ = unlearn_cli(capsys, "plugins", "--json")
    kinds = {(row["name"], row["kind"]) for row in json.loads(out)}
    assert {("tiny-net", "model"), ("stripes", "dataset"), ("torchvision", "model")} <= kinds
    code, out, err = unlearn_cli(
        capsys, "run", "--data", "stripes", "--model", "tiny-net", "--method", "neggrad+", "--augment", "coun-cl",
        "--set", "train.epochs=3", "--set", "method.params.epochs=1", "--quiet", "--out", str(tmp_path / "b"),
    )
    assert code == 0, err
    assert "neggrad++coun-cl" in out and "Retrain" in out
    results = json.loads((tmp_path / "b" / "results.json").read_text())
    assert results["metrics"]["unlearned"]["RA"] is not None


def test_a_data_set_outline_lets_validate_check_what_needs_its_classes(third_party, capsys, tmp_path):
    stripes = third_party.get(DataSource, "stripes")
    flags = ["--data", "stripes", "--model", "tiny-net", "--forget", "class:5", "--out", str(tmp_path / "b")]
    # no outline (the default): only loading tells the classes, so validate passes and run refuses once loaded
    code, out, err = unlearn_cli(capsys, "validate", *flags)
    assert code == 0, err
    code, _, err = unlearn_cli(capsys, "run", "--quiet", *flags)
    assert code == 2 and "forget classes [5] are not in 0..1" in err and "Traceback" not in err

    stripes.outline = lambda self, root, image_size: DataOutline(DataShape(1, 2, 8))
    code, _, err = unlearn_cli(capsys, "validate", *flags)
    assert code == 2 and "forget classes [5] are not in 0..1" in err
    for wrong in ((1, 2, 8), DataOutline((1, 2, 8)), DataOutline(DataShape(1, 2, 8), train_size=-1),  # type: ignore[arg-type]
                  DataOutline(DataShape("1", 2, 8))):  # type: ignore[arg-type]
        stripes.outline = lambda self, root, image_size, wrong=wrong: wrong
        code, _, err = unlearn_cli(capsys, "validate", *flags)
        assert code == 2 and "data set 'stripes' gave an outline that is not one" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_cli_unlearns_a_torchvision_model_from_the_users_weights(capsys, tmp_path):
    torch.manual_seed(0)
    network = torchvision.models.resnet18(num_classes=10)
    network.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # digits are grey
    save_model(tmp_path / "weights.safetensors", network)  # the user's own keys: conv1.weight, fc.weight, ...
    code, out, err = unlearn_cli(
        capsys, "run", "--data", "digits", "--model", "torchvision:resnet18", "--original",
        str(tmp_path / "weights.safetensors"), "--no-retrain", "--set", "method.params.epochs=1",
        "--quiet", "--out", str(tmp_path / "b"),
    )
    assert code == 0, err
    assert "Retrain" not in out.split("original:")[0] and "not trained" in out
    from unlearnkit.checkpoint import load_model

    load_model(tmp_path / "b" / "unlearned.safetensors", network)  # the bundle's weights load into the user's network
    wrong = torchvision.models.resnet18(num_classes=3)
    save_model(tmp_path / "wrong.safetensors", wrong)
    code, _, err = unlearn_cli(capsys, "run", "--data", "digits", "--model", "torchvision:resnet18", "--original",
                               str(tmp_path / "wrong.safetensors"), "--no-retrain", "--quiet", "--out", str(tmp_path / "c"))
    assert code == 2 and "fc.weight" in err and "Traceback" not in err


@pytest.mark.slow
def test_the_own_model_example_runs_end_to_end(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "own-model" / "resnet18_digits.py"
    spec = importlib.util.spec_from_file_location("own_model_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(epochs=1, out=tmp_path, cli=True)
    assert isinstance(result.model, torchvision.models.ResNet)
    assert result.retrain_metrics is not None and result.metrics["avg_gap"] is not None
    assert (tmp_path / "unlearned.safetensors").is_file()
    assert (tmp_path / "cli-bundle" / "results.json").is_file()  # the CLI took the user's weights


def test_the_public_surface_imports_from_unlearnkit_alone():
    import subprocess
    import sys

    for name in uk.__all__:
        assert getattr(uk, name) is not None
    assert uk.RepresentationAugmenter is uk.Augmenter
    # importing the package (what every plugin does), the contracts, the spec or the CLI does not pull in the engine
    # or torch: the contracts and the engine have no import cycle, and `unlearn --help` starts without torch
    for module in ("unlearnkit", "unlearnkit.api", "unlearnkit.spec", "unlearnkit.cli"):
        code = f"import sys, {module}; print(any(m.startswith(('torch', 'unlearnkit.engine')) for m in sys.modules))"
        found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        assert found == "False", module


def test_the_engine_imports_the_flop_counter_only_to_count():
    """The FLOP counter imports triton where it is installed (tenths of a second that validate would pay)."""
    import subprocess
    import sys

    code = ("import sys, torch, unlearnkit.engine as e; before = 'torch.utils.flop_counter' in sys.modules; "
            "e.forward_flops(torch.nn.Linear(2, 1), torch.ones(1, 2)); print(before, 'torch.utils.flop_counter' in sys.modules)")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "False True"


def test_a_method_whose_loss_diverges_stops_with_one_message_not_a_plugin_fault():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(48, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    train, test = TensorDataset(x, torch.arange(48) % 3), TensorDataset(x[:12], torch.arange(12) % 3)
    with pytest.raises(UnlearnkitError) as caught:
        uk.unlearn(network, train, forget=[0, 1, 2], test_set=test, method="ft",
                   params={"method": {"lr": 1e12, "epochs": 20, "batch_size": 8}})
    assert not isinstance(caught.value, PluginFault)
    assert re.match(r"ft: the training loss became NaN or infinite at step \d+ of \d+, so", caught.value.message)
