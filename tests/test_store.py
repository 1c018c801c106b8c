"""The poison store: one poison per generator, parameters, data and code, reused and never half-written."""
import pytest
import torch

import uexlib as ue


@pytest.fixture
def exp(small_cifar, tmp_path):
    train_set, test_set = small_cifar
    return ue.Experiment(profile=ue.profiles.get("smoke"), train_set=train_set, test_set=test_set, seed=0,
                         device="cpu", store=ue.store.PoisonStore(tmp_path / "store"))


def _count_generations(monkeypatch, cls):
    calls = []
    original = cls.generate

    def counted(self, dataset):
        calls.append(self.params)
        return original(self, dataset)

    monkeypatch.setattr(cls, "generate", counted)
    return calls


def test_a_poison_is_made_once_and_then_read_back(exp, monkeypatch):
    calls = _count_generations(monkeypatch, type(ue.generators.create("sc")))
    first = exp.poison("sc")
    second = exp.poison("sc")
    assert len(calls) == 1
    assert second.content_hash() == first.content_hash()
    assert len(list(exp.store.root.glob("sc-*.npz"))) == 1


def test_other_parameters_data_or_generator_make_other_entries(exp, monkeypatch):
    calls = _count_generations(monkeypatch, type(ue.generators.create("sc")))
    exp.poison("sc")
    exp.poison("sc", eps=4 / 255)
    exp.poison("sc", seed=1)
    exp.poison("sc", train_set=exp.train_set.take(torch.arange(100)))
    assert len(calls) == 4
    exp.poison("lsp")
    assert len(list(exp.store.root.glob("*.npz"))) == 5


def test_reuse_false_generates_and_stores_nothing(exp, monkeypatch):
    calls = _count_generations(monkeypatch, type(ue.generators.create("sc")))
    exp.poison("sc", reuse=False)
    exp.poison("sc", reuse=False)
    assert len(calls) == 2
    assert not exp.store.root.exists() or not any(exp.store.root.iterdir())
    with pytest.raises(ValueError, match="reuse must be True or False"):
        exp.poison("sc", reuse="yes")


def test_a_corrupted_entry_is_made_again(exp, monkeypatch):
    poison = exp.poison("sc")
    path = exp.store.path("sc", exp.generator("sc"), exp.train_set)
    path.with_name(path.name + ".sha256").write_text("0" * 64 + f"  {path.name}\n")
    calls = _count_generations(monkeypatch, type(ue.generators.create("sc")))
    with pytest.warns(UserWarning, match="generating it again"):
        again = exp.poison("sc")
    assert len(calls) == 1
    assert again.content_hash() == poison.content_hash()
    assert ue.Poison.load(path, dataset=exp.train_set).content_hash() == poison.content_hash()


def test_the_key_follows_the_code(exp, monkeypatch):
    generator = exp.generator("sc")
    before = exp.store.key("sc", generator, exp.train_set)
    monkeypatch.setattr("uexlib.book.code_sha256", lambda: "another library")
    assert exp.store.key("sc", generator, exp.train_set) != before


def test_the_default_root_is_the_environment_s(monkeypatch, tmp_path):
    monkeypatch.setenv("UEX_STORE", str(tmp_path))
    assert ue.store.PoisonStore().root == tmp_path
    with pytest.raises(ValueError, match="root must be a folder path"):
        ue.store.PoisonStore(3)
