"""ResourceService: the six operations, the logical clock, and refusals."""

import pytest

from envs.api.service import Resource, ResourceError, ResourceService


def _service() -> ResourceService:
    return ResourceService.from_setup(
        {
            "items": [
                {"id": "r1", "name": "a.md", "content": "one", "tags": ["team"], "created": 3},
                {"id": "r4", "name": "b.txt", "content": "two", "created": 5, "updated": 7},
            ]
        }
    )


def test_from_setup_keeps_items_and_starts_clock_at_latest_time():
    service = _service()
    assert [i.id for i in service.list()] == ["r1", "r4"]
    assert service.read("r1") == Resource(
        id="r1", name="a.md", content="one", tags=("team",), created=3
    )
    assert service.clock == 7


def test_create_takes_next_id_after_highest_and_ticks_clock():
    service = _service()
    item = service.create("c.md", "three", ["ops"])
    assert (item.id, item.created, item.updated, item.tags) == ("r5", 8, 8, ("ops",))
    assert service.create("d.md").id == "r6"
    assert service.clock == 9


def test_update_changes_only_given_fields():
    service = _service()
    item = service.update("r1", name="z.md")
    assert (item.name, item.content, item.tags, item.updated) == ("z.md", "one", ("team",), 8)
    item = service.update("r1", content="new", tags=[])
    assert (item.name, item.content, item.tags) == ("z.md", "new", ())


def test_archive_hides_from_default_list_but_stays_readable():
    service = _service()
    service.archive("r1")
    assert [i.id for i in service.list()] == ["r4"]
    assert [i.id for i in service.list(archived=True)] == ["r1"]
    assert service.read("r1").archived
    with pytest.raises(ResourceError, match="r1 is archived"):
        service.update("r1", content="x")
    with pytest.raises(ResourceError, match="r1 is archived"):
        service.archive("r1")


def test_delete_drops_item_for_good():
    service = _service()
    assert service.delete("r4").name == "b.txt"
    assert [i.id for i in service.items()] == ["r1"]
    with pytest.raises(ResourceError, match="no item r4"):
        service.read("r4")
    with pytest.raises(ResourceError, match="no item r4"):
        service.delete("r4")


def test_refusals():
    service = _service()
    with pytest.raises(ResourceError, match="name b.txt is taken"):
        service.create("b.txt")
    with pytest.raises(ResourceError, match="name b.txt is taken"):
        service.update("r1", name="b.txt")
    with pytest.raises(ResourceError, match="name is empty"):
        service.create("  ")
    with pytest.raises(ResourceError, match="nothing to update"):
        service.update("r1")
    with pytest.raises(ResourceError, match="no item r9"):
        service.archive("r9")
    assert service.clock == 7


def test_same_calls_give_same_state():
    def run() -> list[Resource]:
        service = _service()
        service.create("c.md", "x")
        service.update("r1", tags=["ops"])
        service.archive("r4")
        return service.items()

    assert run() == run()


def test_bad_setup_is_rejected():
    with pytest.raises(ValueError):
        ResourceService.from_setup({"items": [{"id": "x1", "name": "a"}]})
    with pytest.raises(ValueError, match="duplicate item id r1"):
        ResourceService([Resource(id="r1", name="a"), Resource(id="r1", name="b")])
