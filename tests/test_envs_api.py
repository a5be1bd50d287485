"""The environment contract: registry, gymnasium ids, entry-point plugins, the action parser."""

import sys
import textwrap

import gymnasium as gym
import pytest

import envs
from envs import ActionFormat, AgentEnv, observation_space
from envs.registry import UnknownEnvError


def test_unknown_id_lists_known_ids_and_suggests():
    with pytest.raises(UnknownEnvError) as err:
        envs.make("sokobn")
    msg = str(err.value)
    assert "'sokobn'" in msg and "Did you mean 'sokoban'" in msg and "sokoban" in msg.split("Known environments:")[1]


def test_unknown_ids_get_only_close_suggestions_and_a_family_says_what_it_has():
    with pytest.raises(UnknownEnvError) as err:
        envs.make("miniwob.order-pizza")
    msg = str(err.value)
    assert "Did you mean" not in msg and "order-food'" not in msg  # not close: no suggestion
    assert "no miniwob task 'order-pizza' is registered" in msg
    assert "The registered miniwob tasks are: " in msg and "click-button, " in msg
    with pytest.raises(UnknownEnvError, match="no miniwob task 'click-buton'.*Did you mean 'miniwob.click-button'"):
        envs.make("miniwob.click-buton")
    with pytest.raises(UnknownEnvError, match="Did you mean 'miniwob.click-button'"):
        envs.make("minwob.click-button")  # a typo in the family
    for far in ("sokoban-hard", "alf", "web"):
        with pytest.raises(UnknownEnvError) as err:
            envs.make(far)
        assert "Did you mean" not in str(err.value), str(err.value)
    from envs.miniwob.tasks import get_task  # MiniWoBEnv(task=...) says the same

    with pytest.raises(ValueError, match="Did you mean click-button"):
        get_task("click-buton")
    with pytest.raises(ValueError) as err:
        get_task("order-pizza")
    assert "Did you mean" not in str(err.value)


def test_render_mode_goes_only_to_envs_that_take_it():
    envs.register("counter-render-test", Counter)
    assert envs.make("counter-render-test", render_mode=None).reset()[0]["text"] == "0"
    with pytest.raises(ValueError, match="does not render in mode 'ansi': its render modes are none"):
        envs.make("counter-render-test", render_mode="ansi")
    assert gym.make("groupwise/counter-render-test").unwrapped.metadata["render_modes"] == []
    assert envs.make("sokoban", render_mode="ansi").render_mode == "ansi"  # an env that renders gets it


def test_unknown_option_names_it():
    with pytest.raises(TypeError, match="dim_rooom"):
        envs.make("sokoban", dim_rooom=(6, 6))


def test_gymnasium_make_reaches_registered_envs():
    env = gym.make("groupwise/sokoban", max_steps=7)
    obs, info = env.reset(seed=1)
    assert set(obs) == {"text", "images", "anchor"}
    assert env.unwrapped.max_steps == 7
    assert "sokoban" in envs.list_envs()


class Counter(AgentEnv):
    """Count to three."""

    observation_space = observation_space()

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.n = 0
        return self.make_obs("0"), self.make_info()

    def step(self, action):
        self.n += 1
        done = self.n >= 3
        return self.make_obs(str(self.n)), 1.0, done, False, self.make_info(won=done)


def test_register_at_runtime_and_make_with_defaults():
    envs.register("counter-test", Counter, description="count")
    env = envs.make("counter-test")
    assert env.reset(seed=0)[0]["anchor"] == "0"
    assert envs.list_envs()["counter-test"] == "count"
    with pytest.raises(ValueError, match="bad env id"):
        envs.register("a/b", Counter)


def test_entry_point_plugin_is_discovered(tmp_path, monkeypatch):
    # A real installed-distribution layout on sys.path: importlib.metadata finds its entry points.
    pkg = tmp_path / "gw_plugin_demo.py"
    pkg.write_text(textwrap.dedent('''
        from envs import AgentEnv, observation_space
        class Plugged(AgentEnv):
            """A plugin environment."""
            observation_space = observation_space()
            def reset(self, seed=None, options=None):
                super().reset(seed=seed)
                return self.make_obs("hi"), self.make_info()
            def step(self, action):
                return self.make_obs("hi"), 0.0, True, False, self.make_info()
    '''))
    dist = tmp_path / "gw_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gw-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[groupwise.envs]\nplugged-demo = gw_plugin_demo:Plugged\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("envs.registry._plugins_loaded", False)
    assert "plugged-demo" in envs.list_envs()
    assert envs.list_envs()["plugged-demo"] == "A plugin environment."
    assert envs.make("plugged-demo").reset()[0]["text"] == "hi"
    sys.modules.pop("gw_plugin_demo", None)


@pytest.mark.parametrize("text,action,ok,reason", [
    ("<think>go</think><action>left</action>", "left", True, ""),
    ("<action> up </action>", "up", True, ""),
    ("I think left", None, False, "no <action>"),
    ("<action></action>", None, False, "empty"),
    ("<action>up</action><action>down</action>", "down", False, "2 <action> blocks"),
])
def test_action_format_reports_why(text, action, ok, reason):
    p = ActionFormat().parse(text)
    assert (p.action, p.well_formed) == (action, ok)
    assert reason in p.reason


def test_action_format_requires_think_when_asked():
    p = ActionFormat(require_think=True).parse("<action>up</action>")
    assert p.action == "up" and not p.well_formed and "think" in p.reason
    assert ActionFormat().parse(None).well_formed is False  # never raises on junk
