"""Where a study's cells run: `local` (this machine, `--jobs` processes) or `ray` (tasks on a
Ray cluster); chosen by name with `python -m audit.study --executor NAME` (see `base`)."""

from audit.study.executors import local, ray_cluster
from audit.study.executors.base import Executor, ExecutorOptions, executor_names, get_executor

__all__ = ["Executor", "ExecutorOptions", "executor_names", "get_executor", "local", "ray_cluster"]
