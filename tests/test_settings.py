"""core.settings.StageSettings: the one way a stage's settings are built (defaults, profile, parameters)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from hm_utils.core.config import get_profile
from hm_utils.core.settings import StageSettings, resolve_profile


@dataclass(frozen=True)
class ToySettings(StageSettings):
    """A stage with three settings: ``epochs`` (the profile sets it), ``rate`` and ``name``."""
    epochs: int = 1
    rate: float = 0.5
    name: str = "toy"

    def __post_init__(self):
        object.__setattr__(self, "epochs", int(self.epochs))

    @classmethod
    def profile_values(cls, profile):
        return {"epochs": profile.epochs}


def test_defaults_then_profile_then_parameters():
    tiny, demo = get_profile("tiny"), get_profile("demo")
    assert tiny.epochs != demo.epochs                        # otherwise the test could not tell them apart
    assert ToySettings.from_profile("tiny") == ToySettings(epochs=tiny.epochs, rate=0.5, name="toy")
    assert ToySettings.from_profile(demo).epochs == demo.epochs
    s = ToySettings.from_profile("tiny", epochs="7", rate=None, name="x")   # None keeps the default
    assert (s.epochs, s.rate, s.name) == (7, 0.5, "x")
    assert ToySettings.from_profile(None).epochs == get_profile().epochs


def test_unknown_setting_or_profile_is_an_error_naming_it():
    with pytest.raises(TypeError, match=r"ToySettings: unknown setting\(s\) \['epoch'\]; known: \['epochs', "):
        ToySettings.from_profile("tiny", epoch=3)
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        resolve_profile("huge")


def test_from_notebook_reads_the_upper_case_parameters_only():
    namespace = {"EPOCHS": 4, "RATE": None, "NAME": "nb", "WORK_DIR": "w", "rate": 9.0, "OTHER": 1}
    s = ToySettings.from_notebook("demo", namespace)
    assert (s.epochs, s.rate, s.name) == (4, 0.5, "nb")      # RATE None: the default; lower-case rate ignored
    assert ToySettings.from_notebook("demo", {}, rate=0.1).rate == 0.1
    assert ToySettings.from_notebook("demo", {"EPOCHS": None}).epochs == get_profile("demo").epochs
    assert s.to_dict() == {"epochs": 4, "rate": 0.5, "name": "nb"}


@dataclass(frozen=True)
class NamedSettings(StageSettings):
    """Settings that record their profile's name as a field, as 06's and 07's do."""
    profile: str = "demo"
    seed: int = 42

    @classmethod
    def profile_values(cls, profile):
        return {"profile": profile.name}


def test_a_setting_called_profile_is_a_parameter_like_any_other():
    assert NamedSettings.from_profile("tiny").profile == "tiny"
    s = NamedSettings.from_notebook("tiny", {"PROFILE": "tiny", "SEED": 3})
    assert (s.profile, s.seed) == ("tiny", 3)
