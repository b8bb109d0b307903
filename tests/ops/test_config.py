"""ncd.ops.config: defaults from the environment, changes for a block of code, errors that
name the switch."""

import pytest

from ncd.ops import config


def test_defaults_and_environment():
    assert config.from_environment({}) == config.Settings()
    s = config.from_environment(
        {"NCD_FAST_LAUNCH": "0", "NCD_GLUON_DKDV_GROUPED": "1", "NCD_GLUON_FORWARD": " "}
    )
    assert not s.fast_launch and s.gluon_dkdv_grouped and s.gluon_forward
    assert s.linear_in_place and s.gluon_dkdv  # unset: the defaults
    assert not config.from_environment({"NCD_LINEAR_IN_PLACE": "off"}).linear_in_place
    with pytest.raises(ValueError, match="NCD_GLUON_FORWARD.*found 'maybe'"):
        config.from_environment({"NCD_GLUON_FORWARD": "maybe"})


def test_every_environment_variable_names_a_switch():
    fields = set(config.describe())
    assert set(config.ENVIRONMENT) <= fields
    assert len({var for var, _ in config.ENVIRONMENT.values()}) == len(config.ENVIRONMENT)


def test_override_restores():
    before = config.describe()
    with config.override(gluon_forward=not before["gluon_forward"], fast_launch=False) as s:
        assert s is config.settings
        assert config.settings.gluon_forward is not before["gluon_forward"]
        assert not config.settings.fast_launch
    assert config.describe() == before
    with pytest.raises(RuntimeError), config.override(linear_in_place=False):
        raise RuntimeError("inside")
    assert config.describe() == before


def test_override_rejects_unknown_switches_and_values():
    before = config.describe()
    bad = [
        ({"fast_lunch": False}, "'fast_lunch'.*expected one of"),
        ({"gluon_forward": 0}, "gluon_forward: expected True or False, found 0"),
        ({"linear_in_place": False, "fast_launch": "no"}, "fast_launch"),
        ({"pin_config": True}, "pin_config: expected an integer >= -1, found True"),
        ({"pin_config": -2}, "pin_config: expected an integer >= -1, found -2"),
    ]
    for changes, message in bad:
        with pytest.raises(ValueError, match=message), config.override(**changes):
            pass
    assert config.describe() == before  # nothing was changed


def test_the_readme_table_lists_every_switch_as_it_is():
    """ops/README.md's table of switches names each one with its environment variable and
    its default, as ops/config.py has them (a switch added or turned on shows there)."""
    from pathlib import Path

    readme = (Path(config.__file__).parent / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    defaults = config.Settings()
    assert set(rows) == set(config.describe())
    for name, (var, default) in rows.items():
        env = config.ENVIRONMENT.get(name)
        assert var == (f"`{env[0]}`" if env else "—"), name
        value = getattr(defaults, name)
        want = ("on" if value else "off") if isinstance(value, bool) else str(value)
        assert default == want, name
