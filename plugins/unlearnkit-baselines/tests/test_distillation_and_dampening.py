"""Teacher-student distillation (SCRUB, Bad Teacher) and synaptic dampening (SSD) on tiny data (CPU, seconds)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from unlearnkit_baselines import BadTeacher, Scrub, SelectiveSynapticDampening
from unlearnkit_baselines import teacher as teacher_module
from unlearnkit_baselines.dampening import SSDParams, dampen, importances
from unlearnkit_baselines.scrub import ScrubParams, max_step_loss, min_step_loss
from unlearnkit_baselines.teacher import BadTeacherParams, bad_teacher_loss, incompetent_teacher

from unlearnkit import Augmenter, Method
from unlearnkit.engine import AugmentedMethod
from unlearnkit.engine import run as engine_run
from unlearnkit.engine.streams import steps
from unlearnkit.errors import SpecError
from unlearnkit.testing import tiny_data, tiny_model, tiny_run, trained_model

# tiny_data(): 40 training samples, 10 to forget, 30 to retain

# --------------------------------------------------------------------------- helpers


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def perturbed(model, seed: int = 1, scale: float = 0.3):
    """A copy of `model` with noise on its weights, so a student differs from its teacher."""
    g = torch.Generator().manual_seed(seed)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return other.eval()


def hand_kl(student_logits, teacher_logits, temperature):
    """sum_c p_t (log p_t - log p_s), averaged over samples, written out."""
    p_t = torch.softmax(teacher_logits / temperature, dim=1)
    log_p_s = torch.log_softmax(student_logits / temperature, dim=1)
    return (p_t * (torch.log(p_t) - log_p_s)).sum(dim=1).mean()


@torch.no_grad()
def eval_kl(student, teacher, data, part: str, temperature: float = 1.0) -> float:
    student.eval()
    teacher.eval()
    values = [hand_kl(student(x), teacher(x), temperature) * len(x) for x, _ in data.eval_views(part)]
    return float(sum(values)) / len(data.indices(part))


def fresh_run(method_cls, data, **kw):
    """tiny_run, with the data's record of drawn samples cleared (building the original model draws too)."""
    run = tiny_run(method_cls, data, **kw)
    data.drawn.clear()
    return run


def record_steps(monkeypatch):
    """Log every trainer the engine makes, and each step it takes as 'max' (forget only), 'min' (retain only)
    or 'mixed'."""
    log = {"trainers": [], "steps": []}

    class Recording(engine_run.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            log["trainers"].append(self)

        def step(self, loss_fn, s):
            sides = (s.retain is not None, s.forget is not None)
            log["steps"].append({(False, True): "max", (True, False): "min"}.get(sides, "mixed"))
            return super().step(loss_fn, s)

    monkeypatch.setattr(engine_run, "Trainer", Recording)
    return log


class Counting(Augmenter):
    """A do-nothing augmenter that counts the retain samples it is given."""

    name = "counting"
    extra_views = 0

    def __init__(self, params=None):
        super().__init__(params)
        self.seen = 0

    def loss_terms(self, model, batch, features):
        self.seen += len(batch)
        return {"zero": features.sum() * 0}


# --------------------------------------------------------------------------- SCRUB


def scrub(**kw) -> Scrub:
    base = {"batch_size": 8, "forget_batch_size": 4}
    return Scrub(ScrubParams(**{**base, **kw}))


def test_scrub_alternates_max_then_min_phases_with_one_trainer_and_one_schedule(monkeypatch):
    data = tiny_data()
    run = fresh_run(Scrub, data)
    log = record_steps(monkeypatch)
    scrub(epochs=3, msteps=2, schedule="cosine", lr=0.01).unlearn(run)
    # forget: 10 samples in batches of 4 -> 3 steps; retain: 30 in batches of 8 -> 4 steps
    assert log["steps"] == ["max"] * 3 + ["min"] * 4 + ["max"] * 3 + ["min"] * 4 + ["min"] * 4
    assert len(log["trainers"]) == 1
    trainer = log["trainers"][0]
    assert trainer.total_steps == 3 * 4 + 2 * 3 == trainer.steps_done  # the cosine schedule spans every step
    forget, retain = data.split.forget.tolist(), data.split.retain.tolist()
    assert sorted(data.drawn) == sorted(forget * 2 + retain * 3)


def test_scrub_msteps_beyond_the_epochs_and_zero_msteps(monkeypatch):
    run = tiny_run(Scrub)
    log = record_steps(monkeypatch)
    scrub(epochs=2, msteps=5).unlearn(run)
    assert log["steps"] == (["max"] * 3 + ["min"] * 4) * 2
    assert log["trainers"][0].total_steps == 14
    run = tiny_run(Scrub)
    log = record_steps(monkeypatch)
    scrub(epochs=2, msteps=0).unlearn(run)
    assert log["steps"] == ["min"] * 8


def fixed_step(data):
    return next(steps(data, "retain+forget", 8, 1, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("temperature,gamma,alpha", [(4.0, 0.99, 0.001), (1.0, 0.5, 0.3), (2.5, 0.0, 1.0)])
def test_scrub_loss_terms_match_a_hand_computation(temperature, gamma, alpha):
    data = tiny_data()
    teacher = trained_model(data).eval()
    student = perturbed(teacher)
    step = fixed_step(data)
    run = fresh_run(Scrub, data)
    cost = run.cost

    terms = min_step_loss(teacher, temperature, gamma, alpha, cost)(student, step)
    s, t, y = student(step.retain.x), teacher(step.retain.x), step.retain.y
    ce = -torch.log_softmax(s, dim=1)[torch.arange(len(y)), y].mean()
    kl = hand_kl(s, t, temperature) * temperature**2
    assert set(terms) == {"retain_ce", "retain_kl"}
    assert terms["retain_ce"].item() == pytest.approx(gamma * ce.item(), rel=1e-5, abs=1e-9)
    assert terms["retain_kl"].item() == pytest.approx(alpha * kl.item(), rel=1e-5, abs=1e-9)
    assert kl.item() > 1e-3  # the KL term is not trivially zero here
    assert cost.forwards == len(step.retain)  # the teacher's forward

    terms = max_step_loss(teacher, temperature, cost)(student, step)
    kl_u = hand_kl(student(step.forget.x), teacher(step.forget.x), temperature) * temperature**2
    assert set(terms) == {"forget_kl"}
    assert terms["forget_kl"].item() == pytest.approx(-kl_u.item(), rel=1e-5)
    assert cost.forwards == len(step.retain) + len(step.forget)


def test_scrub_max_steps_raise_the_forget_kl():
    # class-wise forgetting, so that D_u and D_r differ; the same run with and without a max-phase
    kls = {}
    for msteps in (0, 1):
        data = tiny_data(forget_classes=(0,))
        run = fresh_run(Scrub, data)
        scrub(epochs=1, msteps=msteps, lr=0.02).unlearn(run)
        kls[msteps] = tuple(eval_kl(run.model, run.original, data, part) for part in ("forget", "retain"))
    (forget_min_only, _), (forget_max, retain_max) = kls[0], kls[1]
    assert forget_max > 1.5 * forget_min_only + 0.1
    assert forget_max > 1.5 * retain_max  # it diverged from the teacher on D_u more than on D_r


def test_scrub_student_is_the_run_model_and_the_teacher_stays_frozen():
    run = tiny_run(Scrub)
    start = snapshot(run.model)
    teacher_before = snapshot(run.original)
    assert same_state(start, teacher_before)
    scrub(epochs=2, lr=0.05).unlearn(run)
    assert same_state(snapshot(run.original), teacher_before)
    assert not same_state(snapshot(run.model), start)


def test_scrub_cost_counts_training_and_every_teacher_forward():
    data = tiny_data()
    run = fresh_run(Scrub, data)
    scrub(epochs=3, msteps=2).unlearn(run)
    # 3 forwards per trained sample + 1 teacher forward per sample, max and min steps alike
    assert run.cost.forwards == 4 * len(data.drawn) == 4 * (3 * 30 + 2 * 10)


def test_scrub_augmenters_join_only_the_min_steps():
    data = tiny_data()
    run = fresh_run(Scrub, data)
    counting = Counting()
    AugmentedMethod(scrub(epochs=3, msteps=2), [counting]).unlearn(run)
    assert counting.seen == 3 * 30  # retain samples of the min-steps only
    assert run.cost.forwards == 4 * (3 * 30 + 2 * 10)  # features reused from the student's own forward
    assert Scrub.trains_on_retain and Scrub.uses_forget


def test_scrub_defaults_follow_the_protocol():
    p = ScrubParams()
    assert (p.temperature, p.msteps, p.gamma, p.alpha) == (4.0, 2, 0.99, 0.001)
    assert (p.lr, p.epochs, p.batch_size, p.forget_batch_size) == (5e-4, 3, 128, 512)


# --------------------------------------------------------------------------- Bad Teacher


def union_step(data):
    return next(steps(data, "union", 16, 1, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_bad_teacher_targets_come_from_the_competent_and_the_incompetent_teacher(temperature):
    data = tiny_data()
    competent = trained_model(data).eval()
    torch.manual_seed(7)
    incompetent = tiny_model().eval()
    student = perturbed(competent)
    step = union_step(data)
    assert step.retain is not None and step.forget is not None
    run = fresh_run(BadTeacher, data)

    terms = bad_teacher_loss(competent, incompetent, temperature, run.cost)(student, step)
    n = len(step)
    want_r = hand_kl(student(step.retain.x), competent(step.retain.x), temperature) * len(step.retain) / n
    want_u = hand_kl(student(step.forget.x), incompetent(step.forget.x), temperature) * len(step.forget) / n
    assert terms["retain_kl"].item() == pytest.approx(want_r.item(), rel=1e-5)
    assert terms["forget_kl"].item() == pytest.approx(want_u.item(), rel=1e-5)
    # the forget target is not the original's output: distilling the original there gives another number
    wrong_u = hand_kl(student(step.forget.x), competent(step.forget.x), temperature) * len(step.forget) / n
    assert abs(wrong_u.item() - want_u.item()) > 1e-3
    assert run.cost.forwards == n  # one teacher forward per sample


def test_bad_teacher_uses_a_fresh_frozen_random_teacher_and_the_original(monkeypatch):
    data = tiny_data()
    run = fresh_run(BadTeacher, data)
    made, used = {}, {}

    def spy_teacher(r):
        model = incompetent_teacher(r)
        made.update(model=model, state=snapshot(model))
        return model

    def spy_loss(competent, incompetent, temperature, cost):
        used.update(competent=competent, incompetent=incompetent, temperature=temperature)
        return bad_teacher_loss(competent, incompetent, temperature, cost)

    monkeypatch.setattr(teacher_module, "incompetent_teacher", spy_teacher)
    monkeypatch.setattr(teacher_module, "bad_teacher_loss", spy_loss)
    start = snapshot(run.model)
    BadTeacher(BadTeacherParams(epochs=2, batch_size=8, lr=1e-2, temperature=1.5)).unlearn(run)
    assert used["competent"] is run.original
    assert used["incompetent"] is made["model"] and used["temperature"] == 1.5
    bad = made["model"]
    assert same_state(snapshot(bad), made["state"])  # never trained
    assert not bad.training and not any(p.requires_grad for p in bad.parameters())
    assert not same_state(made["state"], snapshot(run.original))  # not the original
    assert not same_state(snapshot(run.model), start)  # the student did move


def test_bad_teacher_moves_forget_predictions_to_the_random_teacher_and_keeps_retain_ones(monkeypatch):
    data = tiny_data(forget_classes=(0,))
    run = fresh_run(BadTeacher, data)
    made = []
    def spy(r):
        made.append(incompetent_teacher(r))
        return made[-1]

    monkeypatch.setattr(teacher_module, "incompetent_teacher", spy)
    BadTeacher(BadTeacherParams(epochs=10, batch_size=8, lr=3e-3, retain_fraction=1.0)).unlearn(run)
    bad = made[0]
    before = eval_kl(run.original, bad, data, "forget")  # the student started as the original
    assert before > 1.0
    assert eval_kl(run.model, bad, data, "forget") < 0.1 * before
    retain_drift = eval_kl(run.model, run.original, data, "retain")
    assert retain_drift < 0.1
    assert eval_kl(run.model, run.original, data, "forget") > 10 * retain_drift


def test_bad_teacher_runs_the_student_once_over_the_mixed_batch():
    # BatchNorm in training mode must normalise retain and forget samples together, as in the paper's code
    data = tiny_data()
    student = trained_model(data).train()
    calls = []
    student.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    step = union_step(data)
    run = tiny_run(BadTeacher, data)
    bad_teacher_loss(run.original, tiny_model().eval(), 1.0, run.cost)(student, step)
    assert calls == [len(step)]


def test_incompetent_teacher_is_seeded_from_the_run_and_leaves_the_global_rng_alone():
    data = tiny_data()
    runs = [tiny_run(BadTeacher, data, seed=seed) for seed in (0, 0, 1)]
    state = torch.get_rng_state()
    a, b, c = (snapshot(incompetent_teacher(run)) for run in runs)
    assert torch.equal(torch.get_rng_state(), state)
    assert same_state(a, b) and not same_state(a, c)


def test_bad_teacher_trains_on_all_of_d_u_and_one_fixed_retain_subset():
    data = tiny_data()
    run = fresh_run(BadTeacher, data)
    BadTeacher(BadTeacherParams(epochs=2, batch_size=8, retain_fraction=0.3)).unlearn(run)
    forget = set(data.split.forget.tolist())
    drawn_retain = [i for i in data.drawn if i not in forget]
    assert sorted(i for i in data.drawn if i in forget) == sorted(list(forget) * 2)
    assert len(set(drawn_retain)) == 9  # int(0.3 * 30), the same 9 in both epochs
    assert len(drawn_retain) == 18
    # 3 forwards per trained sample + 1 teacher forward per sample
    assert run.cost.forwards == 4 * len(data.drawn) == 4 * 2 * (9 + 10)

    data = tiny_data()
    run = fresh_run(BadTeacher, data)
    BadTeacher(BadTeacherParams(epochs=1, batch_size=8, retain_fraction=1.0)).unlearn(run)
    assert sorted(data.drawn) == list(range(40))  # the whole union, once


def test_bad_teacher_optimizer_choice_and_reproducibility(monkeypatch):
    finals = []
    for optimizer, kind in (("adam", torch.optim.Adam), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)):
        run = tiny_run(BadTeacher)
        log = record_steps(monkeypatch)
        BadTeacher(BadTeacherParams(epochs=1, batch_size=8, lr=1e-3, optimizer=optimizer)).unlearn(run)
        assert type(log["trainers"][0].optimizer) is kind
        finals.append(snapshot(run.model))
    assert same_state(finals[0], finals[1])
    assert not same_state(finals[0], finals[2])


def test_bad_teacher_defaults_and_augmenters():
    p = BadTeacherParams()
    assert (p.temperature, p.retain_fraction, p.epochs) == (1.0, 0.3, 1)
    assert (p.lr, p.batch_size, p.optimizer, p.weight_decay) == (1e-4, 256, "adam", 0.0)
    assert BadTeacher.trains_on_retain and BadTeacher.uses_forget
    data = tiny_data()
    run = fresh_run(BadTeacher, data)
    counting = Counting()
    AugmentedMethod(BadTeacher(BadTeacherParams(epochs=1, batch_size=8, retain_fraction=1.0)), [counting]).unlearn(run)
    assert counting.seen == 30


# --------------------------------------------------------------------------- SSD


def test_dampen_on_hand_made_importances():
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, -1.5]]))
        model.bias.copy_(torch.tensor([2.0, -3.0]))
    before = snapshot(model)
    i_d = {
        "weight": torch.tensor([[1.0, 1.0, 0.0], [2.0, 0.5, 1.0]]),
        "bias": torch.tensor([0.0, 3.0]),
    }
    i_u = {
        "weight": torch.tensor([[10.0, 40.0, 5.0], [4.0, 0.5, 25.0]]),
        "bias": torch.tensor([0.0, 1.0]),
    }
    alpha, lam = 10.0, 2.0
    selected = dampen(model, i_d, i_u, alpha, lam)
    # weight[0,0]: 10 > 10*1? no (equality is not selected); weight[0,1]: 40 > 10 -> x min(2*1/40, 1) = 0.05
    # weight[0,2]: 5 > 0 -> x min(0/5, 1) = 0; weight[1,0]: 4 > 20? no; weight[1,1]: 0.5 > 5? no
    # weight[1,2]: 25 > 10 -> x min(2*1/25, 1) = 0.08; bias[0]: 0 > 0? no; bias[1]: 1 > 30? no
    assert selected == 3
    w = model.weight.detach()
    assert w[0, 1].item() == pytest.approx(-2.0 * 0.05)
    assert w[0, 2].item() == 0.0
    assert w[1, 2].item() == pytest.approx(-1.5 * 0.08)
    for r, c in [(0, 0), (1, 0), (1, 1)]:
        assert w[r, c].item() == before["weight"][r, c].item()
    assert torch.equal(model.bias.detach(), before["bias"])


def test_dampen_never_scales_up():
    # lambda > alpha: a selected entry's factor lambda * I_D / I_u can exceed 1, and is capped at 1
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(3.0)
    selected = dampen(model, {"weight": torch.tensor([[1.0]])}, {"weight": torch.tensor([[3.0]])}, alpha=2.0, lam=5.0)
    assert selected == 1 and model.weight.item() == 3.0


def test_importances_are_batch_gradients_squared_averaged_over_batches():
    torch.manual_seed(0)
    model = nn.Linear(3, 4)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(5, 3, generator=g), torch.randint(0, 4, (5,), generator=g)) for _ in range(3)]
    got = importances(model, batches)
    want_w, want_b = torch.zeros(4, 3), torch.zeros(4)
    with torch.no_grad():
        for x, y in batches:
            residual = torch.softmax(model(x), dim=1) - F.one_hot(y, 4).float()  # d(mean CE)/d(logits) * n
            want_w += (residual.T @ x / len(x)) ** 2
            want_b += (residual.mean(dim=0)) ** 2
    assert torch.allclose(got["weight"], want_w / 3, rtol=1e-5, atol=1e-8)
    assert torch.allclose(got["bias"], want_b / 3, rtol=1e-5, atol=1e-8)
    assert model.weight.grad is None and model.bias.grad is None


def ssd_data():
    return tiny_data(forget_classes=(0,))


def test_ssd_end_to_end_dampens_exactly_the_selected_entries():
    data = ssd_data()
    run = fresh_run(SelectiveSynapticDampening, data)
    start = snapshot(run.model)
    reference = copy.deepcopy(run.model).eval()
    i_u = importances(reference, data.eval_views("forget", 128))
    i_d = importances(reference, data.eval_views("train", 128))
    run.model.train()
    SelectiveSynapticDampening().unlearn(run)
    assert run.model.training  # mode restored
    after = dict(run.model.named_parameters())
    n_selected = 0
    for name, before in start.items():
        if name not in after:  # buffers: BatchNorm statistics untouched (eval mode)
            assert torch.equal(run.model.state_dict()[name], before), name
            continue
        where = i_u[name] > 10.0 * i_d[name]
        n_selected += int(where.sum())
        new = after[name].detach()
        assert torch.equal(new[~where], before[~where]), name  # bit-identical
        factor = torch.clamp(1.0 * i_d[name][where] / i_u[name][where], max=1.0)
        assert torch.allclose(new[where], before[where] * factor, rtol=1e-6, atol=0), name
        assert after[name].grad is None
    assert n_selected > 0  # the test exercised the dampening


def test_ssd_cost_is_three_forwards_per_sample_of_both_passes():
    data = ssd_data()
    run = fresh_run(SelectiveSynapticDampening, data)
    SelectiveSynapticDampening(SSDParams(batch_size=7)).unlearn(run)
    n_forget = len(data.split.forget)
    assert n_forget == 10
    assert run.cost.forwards == 3 * (40 + n_forget)
    assert sorted(data.viewed) == sorted(list(range(40)) + data.split.forget.tolist())


def test_ssd_params_and_declarations():
    p = SSDParams()
    assert (p.alpha, p.lambda_) == (10.0, 1.0)
    assert SSDParams.model_validate({"alpha": 5, "lambda": 0.5}).lambda_ == 0.5
    assert SelectiveSynapticDampening.trains_on_retain is False
    assert SelectiveSynapticDampening.uses_forget is True


def test_ssd_with_coun_cl_is_refused_at_validation():
    from unlearnkit.plugins import discover
    from unlearnkit.resolve import resolve

    registry = discover(env={})
    assert resolve({"method": "ssd"}, registry).method.name == "ssd"
    with pytest.raises(SpecError) as err:
        resolve({"method": {"name": "ssd"}, "augment": ["coun-cl"]}, registry)
    message = str(err.value)
    assert "augment.0" in message and "'ssd' takes none" in message and "training steps" in message


# --------------------------------------------------------------------------- registration


def test_scrub_bad_teacher_and_ssd_are_registered():
    from unlearnkit.plugins import discover

    registry = discover(env={})
    for name, cls in (("scrub", Scrub), ("bad-teacher", BadTeacher), ("ssd", SelectiveSynapticDampening)):
        assert registry.get(Method, name) is cls
        assert cls.summary() and len(cls.summary()) < 120
