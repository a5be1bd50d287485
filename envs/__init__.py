"""groupwise environments: the AgentEnv contract, the registry, the pool, and the built-in envs."""

from envs.base import ActionFormat, AgentEnv, AnyText, ParsedAction, image_anchor, observation_space
from envs.registry import UnknownEnvError, list_envs, list_tags, make, register, spec
from envs.pool import EnvPool, EnvFailure
from envs.ray_pool import make_pool
from envs.check import EnvContractError, check_env

register("sokoban", "envs.sokoban:SokobanEnv",
         description="Push boxes onto targets on a procedurally generated grid (text and/or image).")
register("alfworld", "envs.alfworld:AlfworldEnv", eval_split="eval_out",
         description="ALFWorld household tasks on the real engine: generated games or the ALFWorld data.")
register("webshop", "envs.webshop.env:WebShopEnv", eval_split="eval",
         description="Shop for the product an instruction describes on a WebShop site served over HTTP.")
register("search", "envs.search.env:SearchEnv", eval_split="eval",
         description="Question answering with a search tool over a corpus (generated knowledge base by default).")
register("math", "envs.math_env:MathEnv", eval_split="eval",
         description="Generated multi-step math problems solved with a sandboxed Python tool.")
register("textworld", "envs.textworld_env:TextWorldEnv", eval_split="test",
         description="TextWorld's generated games (cooking, coin collector, treasure hunter).")
register("ezpoints", "envs.cards:EZPointsEnv",
         description="EZPoints (gym-cards): make 12 from two cards, token by token (image/text).")
register("points24", "envs.cards:Points24Env",
         description="Points24 (gym-cards): make 24 from four cards with + - * / ( ) (image/text).")
register("numberline", "envs.cards:NumberLineEnv",
         description="NumberLine (gym-cards): move current to target with + / - (image/text).")
register("blackjack", "envs.cards:BlackjackEnv",
         description="Blackjack (gym-cards): hit or stand against the dealer (image/text).")
register("vision-qa", "envs.vision_qa:VisionQAEnv", eval_split="eval",
         description="Questions about generated charts, shape counts, geometry figures and tables (exact-match reward).")

from envs.miniwob import register_all as _register_miniwob  # noqa: E402

_register_miniwob()

__all__ = [
    "ActionFormat", "AgentEnv", "AnyText", "EnvContractError", "EnvFailure", "EnvPool", "ParsedAction",
    "UnknownEnvError", "check_env", "image_anchor", "list_envs", "list_tags", "make", "make_pool", "observation_space",
    "register", "spec",
]
