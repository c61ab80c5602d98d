"""The API environment: an in-process resource service with six JSON-schema tools."""

from envs.api.env import ApiEnvironment
from envs.api.tasks import build_suite

__all__ = ["ApiEnvironment", "build_suite"]
