"""The training engine: per-sample views, step streams, schedules, the Trainer and cost counting."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from unlearnkit.api import Augmenter, Method, TrainParams
from unlearnkit.data.forget import random_split
from unlearnkit.data.images import ImageSet, Transform
from unlearnkit.engine import AugmentedMethod, CostMeter, RunData, Trainer, Workbench, fit, forward_flops, lr_factor
from unlearnkit.engine.compute import Compute
from unlearnkit.engine.streams import Step, StreamedData, shuffled, steps, steps_per_epoch
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import resnet18, small_cnn

# --------------------------------------------------------------------------- helpers

N_TRAIN, N_TEST, CLASSES = 40, 12, 4


def tiny_images(seed: int = 0) -> ImageSet:
    gen = torch.Generator().manual_seed(seed)
    return ImageSet(
        train_x=torch.randint(0, 256, (N_TRAIN, 1, 8, 8), generator=gen, dtype=torch.uint8),
        train_y=torch.arange(N_TRAIN) % CLASSES,
        test_x=torch.randint(0, 256, (N_TEST, 1, 8, 8), generator=gen, dtype=torch.uint8),
        test_y=torch.arange(N_TEST) % CLASSES,
        classes=["a", "b", "c", "d"],
    )


TRANSFORM = Transform(mean=(0.5,), std=(0.25,), crop_padding=2, flip=True)


def tiny_data(fraction: float = 0.25) -> RunData:
    return RunData(tiny_images(), TRANSFORM, random_split(N_TRAIN, fraction, seed=0), torch.device("cpu"))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return small_cnn(1, CLASSES, width=4)


def retain_ce(model, step):
    return F.cross_entropy(model(step.retain.x), step.retain.y)


# --------------------------------------------------------------------------- Transform


def test_train_view_gives_each_sample_its_own_crop_and_flip():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8)
    images = image.repeat(16, 1, 1, 1)
    x = TRANSFORM.train_view(images, gen(0))
    assert x.shape == (16, 3, 8, 8) and x.dtype == torch.float32
    distinct = {tuple(v.flatten().tolist()) for v in x}
    assert len(distinct) > 1, "one random transform was applied to the whole batch"
    # each view is a crop (and maybe flip) of the padded image: its values are the image's own or padding
    normalised = TRANSFORM.normalise(image)[0]
    padding = {0.0, *TRANSFORM.normalise(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).flatten().tolist()}
    assert set(x.flatten().tolist()) <= set(normalised.flatten().tolist()) | padding


def test_train_view_pads_with_black_like_torchvision_random_crop():
    t = Transform(mean=(0.5,), std=(0.25,), crop_padding=2, flip=False)
    image = torch.full((1, 1, 4, 4), 255, dtype=torch.uint8)
    views = t.train_view(image.repeat(20, 1, 1, 1), gen(0))
    black = t.normalise(torch.zeros(1, 1, 1, 1, dtype=torch.uint8)).item()  # -2.0
    values = set(views.flatten().tolist())
    assert values - {t.normalise(image).flatten()[0].item()} == {black}


def test_train_view_is_reproducible_from_the_generator():
    images = tiny_images().train_x[:10]
    assert torch.equal(TRANSFORM.train_view(images, gen(5)), TRANSFORM.train_view(images, gen(5)))


def test_train_view_crops_are_shifted_windows_of_the_padded_image():
    t = Transform(mean=(0.0,), std=(1.0,), crop_padding=1, flip=False)
    image = (torch.arange(16, dtype=torch.uint8) + 1).view(1, 1, 4, 4)
    padded = F.pad(t.normalise(image), (1, 1, 1, 1))
    windows = {tuple(padded[0, 0, dy:dy + 4, dx:dx + 4].flatten().tolist()) for dy in range(3) for dx in range(3)}
    views = t.train_view(image.repeat(40, 1, 1, 1), gen(1))
    seen = {tuple(v.flatten().tolist()) for v in views}
    assert seen <= windows
    assert len(seen) > 3  # offsets differ between samples


def test_train_view_flip_only_flips_some_samples_horizontally():
    t = Transform(mean=(0.0,), std=(1.0,), crop_padding=0, flip=True)
    image = torch.randint(0, 256, (1, 1, 5, 5), generator=gen(2), dtype=torch.uint8)
    views = t.train_view(image.repeat(32, 1, 1, 1), gen(3))
    plain, flipped = t.normalise(image)[0], t.normalise(image)[0].flip(-1)
    kinds = ["plain" if torch.equal(v, plain) else "flipped" if torch.equal(v, flipped) else "other" for v in views]
    assert "other" not in kinds
    assert 0 < kinds.count("flipped") < 32


def test_train_view_without_augmentation_is_normalise():
    t = Transform(mean=(0.2, 0.4, 0.6), std=(0.3, 0.2, 0.1), crop_padding=0, flip=False)
    images = torch.randint(0, 256, (6, 3, 8, 8), generator=gen(4), dtype=torch.uint8)
    expected = (images.float() / 255 - torch.tensor(t.mean).view(1, 3, 1, 1)) / torch.tensor(t.std).view(1, 3, 1, 1)
    assert torch.allclose(t.train_view(images, gen(0)), expected)
    assert torch.allclose(t.test_view(images), expected)
    assert images.dtype == torch.uint8  # the stored images are untouched


# --------------------------------------------------------------------------- step streams


def indices_of(batch) -> list[int]:
    return batch.index.tolist()


def test_retain_stream_yields_only_retain_indices_once_per_epoch():
    data = tiny_data()
    retain = set(data.split.retain.tolist())
    stream = list(steps(data, "retain", 8, 2, gen()))
    assert len(stream) == steps_per_epoch(data, "retain", 8) * 2 == 8  # 30 retain -> 8, 8, 8, 6
    for epoch in range(2):
        seen = [i for s in stream if s.epoch == epoch for i in indices_of(s.retain)]
        assert sorted(seen) == sorted(retain)
    for k, s in enumerate(stream):
        assert s.forget is None and s.iteration == k and s.iterations == 8 and s.epochs == 2
        assert torch.equal(s.retain.y, data.train_y[s.retain.index])
        assert s.retain.view().shape == s.retain.x.shape and not torch.equal(s.retain.view(), s.retain.x)
        assert s.retain.x.shape == (len(s.retain), 1, 8, 8)
        assert s.progress == pytest.approx(k / 8)


def test_forget_stream_yields_only_forget_indices():
    data = tiny_data()
    stream = list(steps(data, "forget", 4, 1, gen()))
    assert [len(s.forget) for s in stream] == [4, 4, 2]
    assert all(s.retain is None for s in stream)
    assert sorted(i for s in stream for i in indices_of(s.forget)) == data.split.forget.tolist()


def test_retain_plus_forget_pairs_every_retain_batch_with_a_cycled_forget_batch():
    data = tiny_data()  # 30 retain, 10 forget
    stream = list(steps(data, "retain+forget", 8, 3, gen()))
    assert len(stream) == 3 * 4 == steps_per_epoch(data, "retain+forget", 8) * 3
    forget = set(data.split.forget.tolist())
    retain = set(data.split.retain.tolist())
    counts = Counter()
    for s in stream:
        assert s.retain is not None and s.forget is not None
        assert set(indices_of(s.retain)) <= retain
        assert set(indices_of(s.forget)) <= forget
        counts.update(indices_of(s.forget))
        assert len(s) == len(s.retain) + len(s.forget)
    assert set(counts) == forget  # every forget sample is used
    # forget batches are 8 + 2 per pass; 12 steps = 6 full passes over the forget set
    assert all(c == 6 for c in counts.values())


def test_union_splits_each_batch_into_its_retain_and_forget_sides():
    data = tiny_data()
    forget = set(data.split.forget.tolist())
    stream = list(steps(data, "union", 8, 1, gen()))
    assert len(stream) == 5
    seen = []
    for s in stream:
        sides = [b for b in (s.retain, s.forget) if b is not None]
        assert sum(len(b) for b in sides) == len(s) == 8
        if s.retain is not None:
            assert not set(indices_of(s.retain)) & forget
            seen += indices_of(s.retain)
        if s.forget is not None:
            assert set(indices_of(s.forget)) <= forget
            seen += indices_of(s.forget)
    assert sorted(seen) == list(range(N_TRAIN))


def test_all_stream_covers_the_whole_training_set():
    data = tiny_data()
    stream = list(steps(data, "all", 16, 1, gen()))
    assert sorted(i for s in stream for i in indices_of(s.retain)) == list(range(N_TRAIN))


@pytest.mark.parametrize("n,batch,sizes", [
    (30, 29, [30]), (17, 8, [8, 9]), (16, 8, [8, 8]), (1, 8, [1]), (10, 4, [4, 4, 2]),
    # under a quarter of the batch size joins: sequential forgetting's third step leaves 420 retain samples
    (420, 32, [32] * 12 + [36]), (39, 32, [39]), (40, 32, [32, 8]), (300, 32, [32] * 9 + [12]), (7, 32, [7]),
])
def test_a_trailing_batch_too_small_for_batchnorm_joins_the_one_before(n, batch, sizes):
    chunks = shuffled(torch.arange(n), batch, gen())
    assert sorted(len(c) for c in chunks) == sorted(sizes)
    assert sorted(torch.cat(chunks).tolist()) == list(range(n))


@pytest.mark.parametrize("batch", [29, 7, 30, 31, 2, 8, 13, 14])
def test_steps_per_epoch_matches_the_stream_when_a_batch_is_merged(batch):
    data = tiny_data()  # 30 retain
    stream = list(steps(data, "retain", batch, 1, gen()))
    assert len(stream) == steps_per_epoch(data, "retain", batch)
    assert all(s.iterations == len(stream) for s in stream)
    assert all(len(s.retain) >= 2 for s in stream)


def test_steps_per_epoch_matches_the_stream_for_batch_size_one():
    data = tiny_data()  # 30 retain
    stream = list(steps(data, "retain", 1, 1, gen()))
    assert len(stream) == steps_per_epoch(data, "retain", 1)


# --------------------------------------------------------------------------- learning-rate schedules


def test_constant_schedule():
    p = TrainParams(lr=0.1)
    assert [lr_factor(p, t) for t in (0, 0.3, 0.99)] == [1.0, 1.0, 1.0]


def test_cosine_schedule_starts_at_one_and_ends_at_min_lr():
    p = TrainParams(lr=0.1, schedule="cosine", min_lr=1e-4)
    assert lr_factor(p, 0.0) == pytest.approx(1.0)
    assert lr_factor(p, 1.0) == pytest.approx(1e-3)
    assert lr_factor(p, 0.999) == pytest.approx(1e-3, rel=1e-2)
    mid = lr_factor(p, 0.5)
    assert mid == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    values = [lr_factor(p, t / 10) for t in range(11)]
    assert values == sorted(values, reverse=True)


def test_multistep_schedule():
    p = TrainParams(lr=0.1, schedule="multistep")
    assert lr_factor(p, 0.0) == 1.0
    assert lr_factor(p, 0.49) == 1.0
    assert lr_factor(p, 0.5) == pytest.approx(0.1)
    assert lr_factor(p, 0.74) == pytest.approx(0.1)
    assert lr_factor(p, 0.75) == pytest.approx(0.01)
    assert lr_factor(p, 0.99) == pytest.approx(0.01)


def test_trainer_applies_the_schedule_to_the_optimizer():
    data = tiny_data()
    model = tiny_model()
    params = TrainParams(lr=0.1, schedule="multistep", epochs=4, batch_size=8)
    total = steps_per_epoch(data, "retain", 8) * 4
    trainer = Trainer(model, params, total, CostMeter(1))
    lrs = []
    for step in steps(data, "retain", 8, 4, gen()):
        trainer.step(retain_ce, step)
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[total // 2] == pytest.approx(0.01)
    assert lrs[-1] == pytest.approx(0.001)


# --------------------------------------------------------------------------- Trainer and augmenters


class RecordingAugmenter(Augmenter):
    """Records the features it was handed; adds a term that depends on them."""

    name = "rec"
    extra_views = 2

    def __init__(self):
        super().__init__()
        self.seen = []

    def loss_terms(self, model, batch, features):
        self.seen.append((batch, features))
        return {"norm": 0.01 * features.pow(2).mean()}


def count_feature_forwards(model):
    outputs = []
    handle = model.features.register_forward_hook(lambda m, i, o: outputs.append(o))
    return outputs, handle


def test_trainer_reuses_the_methods_own_features_for_augmenters():
    data = tiny_data()
    model = tiny_model()
    aug = RecordingAugmenter()
    meter = CostMeter(10)
    trainer = Trainer(model, TrainParams(lr=0.01, batch_size=8), 4, meter, [aug])
    step = next(steps(data, "retain", 8, 1, gen()))
    outputs, handle = count_feature_forwards(model)
    try:
        terms = trainer.loss_terms(retain_ce, step)
    finally:
        handle.remove()
    assert len(outputs) == 1  # the method's forward only: no extra features pass
    assert aug.seen[0][1] is outputs[0]
    assert aug.seen[0][0].x is step.retain.x
    assert set(terms) == {"loss", "rec/norm"}
    assert meter.forwards == 3 * 8 * 2  # the augmenter's two extra views only, each forwarded and back-propagated
    assert terms["rec/norm"].requires_grad


def test_trainer_falls_back_to_one_extra_features_forward():
    data = tiny_data()
    model = tiny_model()
    aug = RecordingAugmenter()
    meter = CostMeter(10)
    trainer = Trainer(model, TrainParams(lr=0.01, batch_size=8), 4, meter, [aug])
    step = next(steps(data, "retain", 8, 1, gen()))

    def loss_on_a_copy(model, step):  # never runs the model on step.retain.x itself
        return F.cross_entropy(model(step.retain.x.clone()), step.retain.y)

    outputs, handle = count_feature_forwards(model)
    try:
        trainer.loss_terms(loss_on_a_copy, step)
    finally:
        handle.remove()
    assert len(outputs) == 2
    assert aug.seen[0][1] is outputs[1]
    assert torch.allclose(outputs[1], outputs[0])
    assert meter.forwards == 3 * (8 * 1 + 8 * 2)  # the extra features forward plus the extra views, all back-propagated


def test_trainer_step_with_a_mapping_loss_sums_terms_and_counts_cost():
    data = tiny_data()
    model = tiny_model()
    meter = CostMeter(7)
    trainer = Trainer(model, TrainParams(lr=0.01, batch_size=8), 4, meter, [RecordingAugmenter()])
    step = next(steps(data, "retain+forget", 8, 1, gen()))

    def two_terms(model, step):
        return {"a": F.cross_entropy(model(step.retain.x), step.retain.y), "b": model(step.forget.x).mean()}

    before = [p.detach().clone() for p in model.parameters()]
    total = trainer.step(two_terms, step)
    assert not total.requires_grad
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert meter.forwards == 3 * len(step) + 3 * 2 * len(step.retain)  # two back-propagated extra views
    assert meter.flops == meter.forwards * 7


def test_trainer_without_retain_side_calls_no_augmenter():
    data = tiny_data()
    aug = RecordingAugmenter()
    meter = CostMeter(1)
    trainer = Trainer(tiny_model(), TrainParams(lr=0.01), 4, meter, [aug])
    step = next(steps(data, "forget", 4, 1, gen()))
    trainer.step(lambda model, step: F.cross_entropy(model(step.forget.x), step.forget.y), step)
    assert aug.seen == []
    assert meter.forwards == 3 * 4


class OwnBatchAugmenter(RecordingAugmenter):
    """Computes its term over a retain batch of its own size, on views under its own augmentation."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def loss_terms(self, model, batch, features):
        own = batch.retain_batch(self.size)
        self.seen.append((own, features))
        return {"norm": 0.01 * model.features(own.view_with(1, False)).pow(2).mean()}


def test_an_augmenters_own_retain_batch_is_drawn_through_the_run_and_counted():
    run = make_run(uses_forget=False)
    aug = OwnBatchAugmenter(12)
    run.augmenters.append(aug)
    run.train(retain_ce, TrainParams(epochs=1, batch_size=8, lr=0.01))
    retain = set(run.data.split.retain.tolist())
    assert len(aug.seen) == 4 and all(len(own) == 12 and set(own.index.tolist()) <= retain for own, _ in aug.seen)
    assert run.cost.forwards == 3 * 30 + 3 * 2 * 12 * 4  # its extra views are counted on its own batches


def test_view_with_draws_its_own_crop_and_flip_per_sample_with_the_datas_normalisation():
    plain = Transform(mean=(0.5,), std=(0.25,))
    data = RunData(tiny_images(), plain, random_split(N_TRAIN, 0.25, seed=0), torch.device("cpu"))
    generator = gen()
    batch = data.batch(torch.arange(16), generator)
    assert torch.equal(batch.x, plain.test_view(data.train_x[:16]))  # the data set augments nothing
    replay = torch.Generator()
    replay.set_state(generator.get_state())
    view = batch.view_with(2, True)
    assert torch.equal(view, Transform(plain.mean, plain.std, crop_padding=2, flip=True).train_view(data.train_x[:16], replay))
    assert not torch.equal(view, batch.x) and not torch.equal(view, batch.view_with(2, True))
    assert torch.equal(batch.view_with(0, False), batch.x)


class FlippingImages(Dataset):
    """A user's Dataset of ready-made image tensors, flipped at random when read; it records its reads."""

    def __init__(self, n: int):
        self.images = torch.randn(n, 1, 8, 8, generator=gen())
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        self.reads.append(i)
        flip = torch.rand(1).item() < 0.5
        return (self.images[i].flip(-1) if flip else self.images[i]), i % CLASSES


def test_view_with_on_a_users_dataset_reads_again_through_its_transforms():
    train = FlippingImages(20)
    data = StreamedData(train, FlippingImages(4), random_split(20, 0.2, seed=0), torch.device("cpu"), CLASSES)
    index = data.split.retain[:6]
    train.reads.clear()  # the labels were read to make the split
    batch = data.batch(index, gen())
    view = batch.view_with(4, True)
    assert train.reads == index.tolist() * 2 and view.shape == batch.x.shape
    # the images come out of the Dataset's own transforms: no crop of ours acts on them
    assert all(torch.equal(v, train.images[i]) or torch.equal(v, train.images[i].flip(-1)) for v, i in zip(view, index))
    assert not data.second_views  # a batch read on its own makes the streams read no second view ahead


def test_only_an_augmenters_batch_draws_retain_samples_of_its_own():
    batch = next(steps(tiny_data(), "retain", 8, 1, gen())).retain
    with pytest.raises(UnlearnkitError, match="augmenter"):
        batch.retain_batch(4)
    trainer = Trainer(tiny_model(), TrainParams(lr=0.01), 1, CostMeter(1), [OwnBatchAugmenter(4)])
    with pytest.raises(UnlearnkitError, match="no retain data"):
        trainer.step(retain_ce, next(steps(tiny_data(), "retain", 8, 1, gen())))


def test_trainer_optimises_augmenter_parameters():
    class Projection(RecordingAugmenter):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def parameters(self):
            return [self.w]

        def loss_terms(self, model, batch, features):
            return {"w": self.w * features.mean()}

    aug = Projection()
    trainer = Trainer(tiny_model(), TrainParams(lr=0.1), 1, CostMeter(1), [aug])
    trainer.step(retain_ce, next(steps(tiny_data(), "retain", 8, 1, gen())))
    assert aug.w.item() != 1.0


# --------------------------------------------------------------------------- cost


def test_cost_meter_convention():
    meter = CostMeter(1000)
    meter.trained(5)
    assert meter.forwards == 15 and meter.flops == 15_000
    meter.forwarded(5)
    assert meter.forwards == 20
    meter.forwarded(4, times=2)
    assert meter.forwards == 28 and meter.flops == 28_000
    meter.trained(2, times=2)  # two back-propagated extra views of two samples
    assert meter.forwards == 40


def test_forward_flops_of_cifar_resnet18_and_the_papers_retrain_cost():
    model = resnet18(3, 10).train()
    flops = forward_flops(model, torch.randn(4, 3, 32, 32))  # one sample is counted, whatever the batch
    assert flops == pytest.approx(1.11e9, rel=0.02)
    retrain = 45_000 * 182 * 3 * flops
    assert retrain == pytest.approx(27.3e15, rel=0.02)
    assert model.training  # the mode is restored


def test_forward_flops_leaves_batchnorm_statistics_alone_and_scales_with_input_size():
    model = small_cnn(1, 4, width=4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    small = forward_flops(model, torch.randn(1, 1, 8, 8))
    large = forward_flops(model, torch.randn(1, 1, 16, 16))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert small > 0 and large > 3 * small


def test_fit_counts_three_forwards_per_trained_sample():
    data = tiny_data()
    meter = CostMeter(11)
    fit(tiny_model(), data, "retain", retain_ce, TrainParams(epochs=2, batch_size=8, lr=0.01), generator=gen(), cost=meter)
    assert meter.forwards == 3 * 30 * 2
    assert meter.flops == 3 * 30 * 2 * 11


# --------------------------------------------------------------------------- Workbench


def make_run(uses_forget: bool) -> Workbench:
    return Workbench(
        tiny_model(), tiny_data(), recipe=TrainParams(), new_model=lambda: small_cnn(1, CLASSES, width=4),
        cost=CostMeter(1), seed=0, uses_forget=uses_forget, name="sealed",
    )


@pytest.mark.parametrize("over", ["forget", "union", "retain+forget", "all"])
def test_a_run_that_does_not_use_the_forget_set_refuses_forget_data(over):
    run = make_run(uses_forget=False)
    with pytest.raises(UnlearnkitError, match="does not use the forget set"):
        run.steps(over, 8, 1)
    with pytest.raises(UnlearnkitError, match="does not use the forget set"):
        run.train(retain_ce, TrainParams(epochs=1, batch_size=8), over=over)
    if over in ("forget", "all"):
        with pytest.raises(UnlearnkitError):
            list(run.batches(over, 8))


def test_a_sealed_run_still_trains_on_retain_data():
    run = make_run(uses_forget=False)
    assert len(list(run.steps("retain", 8, 1))) == 4
    run.train(retain_ce, TrainParams(epochs=1, batch_size=8, lr=0.01))
    assert run.cost.forwards == 3 * 30


def test_a_run_that_uses_the_forget_set_gets_it():
    run = make_run(uses_forget=True)
    assert len(list(run.steps("retain+forget", 8, 1))) == 4
    assert sorted(i for b in run.batches("forget", 4) for i in b.index.tolist()) == run.data.split.forget.tolist()


def test_a_sealed_run_refuses_forget_samples_in_a_methods_own_schedule():
    run = make_run(uses_forget=False)
    forget, retain = run.data.split.forget, run.data.split.retain
    with pytest.raises(UnlearnkitError, match="does not use the forget set"):
        run.batch(forget[:2])
    # a step built behind the run's back (from run.data) is still caught when it is trained on
    smuggled = Step(run.data.batch(torch.cat([retain[:3], forget[:1]]), run.generator), None, 0, 1, 0, 1)
    with pytest.raises(UnlearnkitError, match="does not use the forget set"):
        run.fit([(retain_ce, smuggled)], TrainParams(batch_size=8), 1)
    assert run.cost.forwards == 0  # refused before any step was taken


def test_fit_runs_a_methods_own_schedule_with_one_optimiser_and_the_augmenters():
    run = make_run(uses_forget=True)
    aug = RecordingAugmenter()
    run.augmenters.append(aug)
    seen = []

    def forget_only(model, step):
        seen.append("forget")
        return -F.cross_entropy(model(step.forget.x), step.forget.y)

    def retain_only(model, step):
        seen.append("retain")
        return retain_ce(model, step)

    def schedule():  # a SCRUB-like epoch: a pass over D_u, then a pass over D_r
        yield from ((forget_only, step) for step in run.steps("forget", 4, 1))
        yield from ((retain_only, step) for step in run.steps("retain", 8, 1))

    start = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.fit(schedule(), TrainParams(batch_size=8, lr=0.05, schedule="cosine"), 3 + 4)
    assert seen == ["forget"] * 3 + ["retain"] * 4
    assert len(aug.seen) == 4  # the augmenter joins the retain steps only
    assert run.cost.forwards == 3 * (10 + 30) + 3 * 2 * 30
    assert any(not torch.equal(start[k], v) for k, v in run.model.state_dict().items())


def test_steps_among_a_subset_draw_only_those_samples():
    run = make_run(uses_forget=True)
    among = torch.cat([run.data.split.retain[:6], run.data.split.forget])
    stream = list(run.steps("union", 4, 2, among=among))
    assert len(stream) == 2 * run.steps_per_epoch("union", 4, among=among) == 2 * 4
    drawn = [i for s in stream for b in (s.retain, s.forget) if b is not None for i in b.index.tolist()]
    assert sorted(drawn) == sorted(among.tolist() * 2)
    assert all(s.forget is None or set(s.forget.index.tolist()) <= set(run.data.split.forget.tolist()) for s in stream)


def test_unlearn_run_original_is_a_frozen_copy_of_the_starting_weights():
    run = make_run(uses_forget=True)
    start = {k: v.clone() for k, v in run.model.state_dict().items()}
    run.train(retain_ce, TrainParams(epochs=1, batch_size=8, lr=0.1))
    original = run.original
    assert not original.training
    assert all(not p.requires_grad for p in original.parameters())
    assert all(torch.equal(start[k], v) for k, v in original.state_dict().items())
    assert any(not torch.equal(start[k], v) for k, v in run.model.state_dict().items())


def test_augmented_method_adds_its_augmenters_to_the_run():
    class Inner(Method):
        name = "inner"
        uses_forget = False

        def unlearn(self, run):
            self.seen = list(run.augmenters)
            run.train(retain_ce, TrainParams(epochs=1, batch_size=8, lr=0.01))

    aug = RecordingAugmenter()
    inner = Inner()
    wrapped = AugmentedMethod(inner, [aug])
    assert wrapped.name == "inner+rec" and wrapped.uses_forget is False
    run = make_run(uses_forget=False)
    wrapped.unlearn(run)
    assert inner.seen == [aug]
    assert len(aug.seen) == 4  # one call per retain step
    assert run.cost.forwards == 3 * 30 + 3 * 2 * 30


# --------------------------------------------------------------------------- precision, memory format, compilation


def test_compute_auto_is_fp32_on_cpu_and_explicit_choices_are_kept():
    cpu = torch.device("cpu")
    assert Compute.choose(cpu) == Compute(cpu, "fp32", channels_last=False, compile=False)
    assert Compute.choose(cpu, "bf16", channels_last=True).precision == "bf16"


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)])
def test_trainer_computes_the_loss_in_the_chosen_precision_and_keeps_fp32_weights(precision, dtype):
    data = tiny_data()
    model = tiny_model()
    seen = []

    def loss(model, step):
        logits = model(step.retain.x)
        seen.append(logits.dtype)
        return F.cross_entropy(logits, step.retain.y)

    compute = Compute(torch.device("cpu"), precision)
    before = model.head.weight.detach().clone()
    trainer = Trainer(model, TrainParams(lr=0.05), 4, CostMeter(1), compute=compute)
    for step in steps(data, "retain", 8, 1, torch.Generator().manual_seed(0)):
        assert torch.isfinite(trainer.step(loss, step))
    assert seen == [dtype] * 4
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.equal(before, model.head.weight)
    assert trainer.scaler.is_enabled() == (precision == "fp16")


def test_fp16_loss_scaling_skips_a_step_whose_gradients_overflow():
    data = tiny_data()
    model = tiny_model()
    trainer = Trainer(model, TrainParams(lr=0.05), 2, CostMeter(1), compute=Compute(torch.device("cpu"), "fp16"))
    step = next(steps(data, "retain", 8, 1, torch.Generator().manual_seed(0)))
    before = {k: v.clone() for k, v in model.state_dict().items() if "weight" in k}
    scale = trainer.scaler.get_scale()
    trainer.step(lambda model, step: model(step.retain.x).sum() * float("inf"), step)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)  # no update
    assert trainer.scaler.get_scale() < scale


def test_prepare_puts_convolutions_in_channels_last():
    model = Compute(torch.device("cpu"), channels_last=True).prepare(tiny_model())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    x = torch.randn(2, 1, 8, 8)
    assert model(x).shape == (2, CLASSES)


@pytest.mark.parametrize("bad_step", [3, 40])
def test_a_loss_that_turns_non_finite_stops_training_naming_the_step(bad_step):
    calls = []

    def diverging(model, step):
        calls.append(1)
        loss = retain_ce(model, step)
        return loss * float("inf") if len(calls) == bad_step else loss

    model = tiny_model()
    data = tiny_data()
    params = TrainParams(epochs=10, lr=0.01, batch_size=4)
    total = steps_per_epoch(data, "retain", 4) * params.epochs
    assert total > 64 > 40  # both a check along the way and the one at the end are reached
    with pytest.raises(UnlearnkitError, match=f"probe: the training loss became NaN or infinite at step {bad_step} of {total}"):
        fit(model, data, "retain", diverging, params, generator=gen(), cost=CostMeter(1), label="probe")
    assert len(calls) < bad_step + 32  # stopped within one check interval, not at the end of training
