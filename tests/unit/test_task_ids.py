"""Task IDs made at send are UUID4 text, as ``str(uuid.uuid4())`` makes them."""

from __future__ import annotations

import uuid

from taskq.sending import _new_task_id


def test_a_new_task_id_is_version_4_uuid_text() -> None:
    ids = {_new_task_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    for text in list(ids)[:1000]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text
