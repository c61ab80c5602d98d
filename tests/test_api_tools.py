"""API tools: schemas, argument validation as error observations, short observations."""

import pytest

from envs.api.service import ResourceService
from envs.api.tools import TOOL_NAMES, TOOL_SCHEMAS, run_tool
from envs.core import ToolCall


def _service() -> ResourceService:
    return ResourceService.from_setup(
        {
            "items": [
                {"id": "r1", "name": "a.md", "content": "hello there", "tags": ["team", "ops"]},
                {"id": "r2", "name": "b.txt"},
            ]
        }
    )


def _run(service: ResourceService, tool: str, **arguments: object):
    return run_tool(service, ToolCall(name=tool, arguments=arguments))


def test_schemas_are_in_function_format():
    assert TOOL_NAMES == ("list", "read", "create", "update", "archive", "delete")
    for schema in TOOL_SCHEMAS:
        assert schema["type"] == "function"
        function = schema["function"]
        assert set(function) == {"name", "description", "parameters"}
        parameters = function["parameters"]
        assert parameters["type"] == "object"
        assert set(parameters["required"]) <= set(parameters["properties"])


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("drop", {"id": "r1"}, "error: unknown tool drop"),
        ("read", {}, "error: missing argument id"),
        ("read", {"id": "r1", "force": True}, "error: unexpected argument force"),
        ("read", {"id": 1}, "error: argument id must be a string"),
        ("list", {"archived": "yes"}, "error: argument archived must be a boolean"),
        ("update", {"id": "r1", "tags": [1]}, "error: argument tags must be a list of strings"),
        ("create", {"name": "c", "tags": "ops"}, "error: argument tags must be a list of strings"),
        ("update", {"id": "r1"}, "error: nothing to update"),
        ("archive", {"id": "r7"}, "error: no item r7"),
    ],
)
def test_bad_calls_are_error_observations(name, arguments, message):
    service = _service()
    observation = run_tool(service, ToolCall(name=name, arguments=arguments))
    assert observation.is_error
    assert observation.content == message
    assert [i.model_dump() for i in service.items()] == [i.model_dump() for i in _service().items()]


def test_observations_are_short_plain_text():
    service = _service()
    assert _run(service, "list").content == "r1 a.md [team,ops]\nr2 b.txt"
    assert _run(service, "read", id="r1").content == "hello there"
    assert _run(service, "read", id="r2").content == "(empty)"
    assert _run(service, "create", name="c.md", content="x", tags=["ops"]).content == "created r3"
    assert _run(service, "update", id="r3", name="d.md").content == "updated r3"
    assert _run(service, "archive", id="r1").content == "archived r1"
    assert _run(service, "list", archived=True).content == "r1 a.md [team,ops]"
    assert _run(service, "delete", id="r2").content == "deleted r2"
    assert _run(service, "list").content == "r3 d.md [ops]"
    assert not _run(service, "list").is_error


def test_empty_listing():
    assert _run(ResourceService(), "list").content == "no items"
