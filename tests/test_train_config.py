"""One config-override function for every trainer: dotted keys, type checks, unknown keys list the valid ones."""

from dataclasses import dataclass, field

import pytest

from anima.train import ConfigError, apply_overrides

pytestmark = pytest.mark.unit


@dataclass
class Inner:
    n_layer: int = 3
    dropout: float = 0.1


@dataclass
class Outer:
    width: int = 64
    lr: float = 1e-3
    name: str = "base"
    audio: bool = False
    scales: tuple[int, ...] = (1, 5, 25)
    init: str | None = None
    inner: Inner = field(default_factory=Inner)


def test_values_are_parsed_as_the_field_type():
    c = apply_overrides(Outer(), ["width=128", "lr=5e-4", "name=big", "audio=true", "scales=1,2,4", "init=ck",
                                  "inner.n_layer=6", "inner.dropout=0"])
    assert c == Outer(128, 5e-4, "big", True, (1, 2, 4), "ck", Inner(6, 0.0))
    assert isinstance(c.inner.dropout, float)
    assert apply_overrides(c, ["init=none", "audio=0"]).init is None
    assert Outer().width == 64  # the original is left alone


@pytest.mark.parametrize("item, message", [
    ("wdth=3", "unknown key 'wdth'.*valid keys: width, lr, name, audio, scales, init, inner.n_layer, inner.dropout"),
    ("inner.depth=3", "unknown key 'depth' in Inner"),
    ("width=1.5", "width expects int"),
    ("audio=maybe", "audio expects bool"),
    ("scales=1,x", "scales expects"),
    ("width", "expected key=value"),
    ("inner=3", "nested config"),
    ("width.x=3", "not a nested config"),
])
def test_bad_overrides_raise_naming_the_problem(item, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Outer(), [item])


def test_model_configs_of_body_and_face():
    from anima.body.model.vae import VAEConfig
    from anima.face.model.unils import UniLSConfig

    assert apply_overrides(UniLSConfig(), ["scales=1,5,25,50,100", "n_layer=2"]).n_layer == 2
    with pytest.raises(ConfigError, match="valid keys: .*kl_weight"):
        apply_overrides(VAEConfig(), ["kl=1"])
