"""One way to build a stage's settings: the class's defaults, then what the run's profile sets, then the
notebook's parameters.

Each notebook's settings are one dataclass that mixes in :class:`StageSettings` (02 ``MiningSettings``, 03
``TrainingSettings``, 04 ``ExportSettings``, 06 ``RankingSettings``, 07 ``EnsembleSettings``). A setting is
written twice: as the dataclass field (lower case, documented in the class docstring) and as the notebook
parameter of the same name in upper case. :meth:`StageSettings.from_notebook` reads the parameters from the
notebook's namespace, so no keyword list repeats them; a parameter left at None means "the profile's value,
else the class default". The notebook records ``settings.to_dict()`` once.
"""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, Mapping

from hm_utils.core.config import Profile, get_profile


def resolve_profile(profile: str | Profile | None) -> Profile:
    """A :class:`~hm_utils.core.config.Profile` from a profile or its name (None: the default profile);
    ValueError names the choices."""
    if profile is None:
        return get_profile()
    return profile if isinstance(profile, Profile) else get_profile(profile)


class UnknownSettingError(TypeError, ValueError):
    """A parameter that is no setting of the stage (both a TypeError, as for an unknown keyword argument,
    and a ValueError, as for a bad value)."""


class StageSettings:
    """Mixin for a stage's settings dataclass: :meth:`from_profile`, :meth:`from_notebook`, :meth:`to_dict`.

    A subclass says what the profile sets by overriding :meth:`profile_values`; checks and conversions of its
    values belong in the dataclass's ``__post_init__``, so that every way of building it gets them."""

    @classmethod
    def profile_values(cls, profile: Profile) -> dict[str, Any]:
        """The fields ``profile`` sets (field name -> value); none unless a subclass says otherwise."""
        return {}

    @classmethod
    def setting_names(cls) -> list[str]:
        """The dataclass's field names, in order."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_profile(cls, profile: str | Profile | None, /, **parameters):
        """The settings for ``profile`` (a name or a Profile): the class defaults, then
        :meth:`profile_values`, then every parameter that is not None. TypeError names an unknown
        parameter and the known ones."""
        prof = resolve_profile(profile)
        known = cls.setting_names()
        unknown = sorted(set(parameters) - set(known))
        if unknown:
            raise UnknownSettingError(f"{cls.__name__}: unknown setting(s) {unknown}; known: {known}")
        values = {k: v for k, v in cls.profile_values(prof).items() if k in known}
        values.update({k: v for k, v in parameters.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_notebook(cls, profile: str | Profile | None, namespace: Mapping[str, Any], /, **parameters):
        """:meth:`from_profile` with the notebook's parameters read from ``namespace`` (its ``globals()``):
        every setting whose name in upper case is defined there (``EPOCHS`` -> ``epochs``). ``parameters``
        are added on top (values the notebook computed, e.g. a seed); each must be a setting."""
        found = {name: namespace[name.upper()] for name in cls.setting_names() if name.upper() in namespace}
        found.update(parameters)
        return cls.from_profile(profile, **found)

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain values (``dataclasses.asdict``), for the notebook's key figures."""
        return asdict(self)
