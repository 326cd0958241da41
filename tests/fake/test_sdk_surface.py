"""The SDK calls beyond the basic lifecycles: branch deletion and history, views, schema batches, media
metadata, references, clears and temporary uploads, and the platform-only calls, each with its declared
errors; plus name uniqueness, hidden existence, page tokens and job declarations.
"""

from __future__ import annotations

from typing import Any

import foundry_sdk
import pytest
from foundry_sdk.v2.datasets import errors as ds_errors
from foundry_sdk.v2.filesystem import errors as fs_errors

from fake_stream_proxy import FakeServer
from tests.conftest import Admin
from tests.fake.dataset_helpers import parquet_bytes, table
from tests.fake.stream_helpers import SCHEMA
from tests.fake.test_datasets_sdk import client, run

FOLDER = "ri.compass.main.folder.surface"
PREVIEW = {"preview": "true"}

# The SDK methods this module calls against the fake (test_sdk_coverage.py collects them).
SDK_METHODS = {
    "datasets.Dataset.transactions", "datasets.Dataset.get_schema_batch", "datasets.Branch.delete",
    "datasets.Branch.transactions", "datasets.File.delete",
    *(f"datasets.View.{m}" for m in ("create", "get", "add_backing_datasets", "remove_backing_datasets",
                                     "replace_backing_datasets", "add_primary_key")),
    *(f"media_sets.MediaSet.{m}" for m in ("read_original", "metadata", "reference", "clear", "upload_media")),
}  # fmt: skip

# Called too, to prove they answer as documented in docs/fake.md (test_sdk_coverage.py checks the list).
PLATFORM_ONLY = {
    "datasets.Dataset.get_health_check_reports", "datasets.Dataset.get_health_checks",
    "datasets.Dataset.get_schedules", "datasets.Dataset.jobs", "datasets.Transaction.build",
    "datasets.Transaction.job", "media_sets.MediaSet.register",
    *(f"media_sets.MediaSet.{m}" for m in ("calculate", "retrieve", "tile", "transform", "get_result", "get_status")),
}  # fmt: skip

KEY_SCHEMA = {
    "fieldSchemaList": [
        {"name": "id", "type": "LONG", "nullable": False},
        {"name": "name", "type": "STRING", "nullable": True},
        {"name": "gone", "type": "BOOLEAN", "nullable": True},
        {"name": "score", "type": "DOUBLE", "nullable": True},
    ]
}


async def dataset_with_rows(ds: Any, name: str) -> str:
    rid = str((await run(lambda: ds.create(name=name, parent_folder_rid=FOLDER))).rid)
    await run(lambda: ds.File.upload(rid, "part.parquet", parquet_bytes(table(0, 3)), transaction_type="SNAPSHOT"))
    await run(lambda: ds.put_schema(rid, schema=KEY_SCHEMA))
    return rid


async def test_branches_history_and_paging(fake: FakeServer) -> None:
    ds = client(fake, fake.admin_token).datasets.Dataset
    rid = str((await run(lambda: ds.create(name="hist", parent_folder_rid=FOLDER))).rid)
    made = [await run(lambda: ds.Transaction.create(rid, transaction_type="APPEND")) for _ in range(1)]
    await run(lambda: ds.Transaction.commit(rid, made[0].rid))
    await run(lambda: ds.Branch.create(rid, name="dev", transaction_rid=made[0].rid))
    on_dev = await run(lambda: ds.Transaction.create(rid, transaction_type="SNAPSHOT", branch_name="dev"))
    # Newest first, paged one at a time through the SDK's iterator.
    everything = await run(lambda: [t.rid for t in ds.transactions(rid, page_size=1, preview=True)])
    assert everything == [on_dev.rid, made[0].rid]
    dev = await run(lambda: [t.rid for t in ds.Branch.transactions(rid, "dev", page_size=1, preview=True)])
    assert dev == [on_dev.rid, made[0].rid]  # the branch's own and the one it was made from
    assert await run(lambda: [t.rid for t in ds.Branch.transactions(rid, "master", preview=True)]) == [made[0].rid]
    # No listing declares InvalidPageToken, so it arrives as the status class, with the name.
    for listing in (
        lambda: list(ds.Branch.list(rid, page_token="not-a-token")),
        lambda: list(ds.File.list(rid, page_token="bm9wZQ==")),
        lambda: list(ds.transactions(rid, page_token="bm9wZQ==", preview=True)),
    ):
        with pytest.raises(foundry_sdk.BadRequestError) as bad_token:
            await run(listing)
        assert bad_token.value.name == "InvalidPageToken"

    assert await run(lambda: ds.Branch.delete(rid, "dev")) is None
    with pytest.raises(ds_errors.BranchNotFound):
        await run(lambda: ds.Branch.get(rid, "dev"))
    with pytest.raises(ds_errors.BranchNotFound):
        await run(lambda: ds.Branch.delete(rid, "dev"))
    with pytest.raises(ds_errors.BranchNotFound):
        await run(lambda: list(ds.Branch.transactions(rid, "dev", preview=True)))
    assert (await run(lambda: ds.Transaction.get(rid, on_dev.rid))).status == "ABORTED"  # its open one
    with pytest.raises(ds_errors.DatasetNotFound):
        await run(lambda: ds.Branch.delete("ri.foundry.main.dataset.missing", "master"))


async def test_file_delete_and_schema_batch(fake: FakeServer) -> None:
    ds = client(fake, fake.admin_token).datasets.Dataset
    rid = await dataset_with_rows(ds, "files")
    bare = str((await run(lambda: ds.create(name="bare", parent_folder_rid=FOLDER))).rid)
    assert await run(lambda: ds.File.delete(rid, "part.parquet")) is None
    assert await run(lambda: [f.path for f in ds.File.list(rid)]) == []
    with pytest.raises(ds_errors.FileNotFoundOnBranch):
        await run(lambda: ds.File.delete(rid, "part.parquet"))
    append = await run(lambda: ds.Transaction.create(rid, transaction_type="APPEND"))
    with pytest.raises(ds_errors.InvalidTransactionType):
        await run(lambda: ds.File.delete(rid, "x", transaction_rid=append.rid))

    batch = await run(
        lambda: ds.get_schema_batch(
            body=[{"datasetRid": rid}, {"datasetRid": bare}, {"datasetRid": "ri.foundry.main.dataset.missing"}]
        )
    )
    assert list(batch.data) == [rid]
    assert [f.name for f in batch.data[rid].schema_.field_schema_list] == ["id", "name", "gone", "score"]


async def test_views(fake: FakeServer, admin: Admin) -> None:
    ds, views = client(fake, fake.admin_token).datasets.Dataset, client(fake, fake.admin_token).datasets.View
    a, b = await dataset_with_rows(ds, "a"), await dataset_with_rows(ds, "b")
    backing = [{"datasetRid": a, "stopPropagatingMarkingIds": []}]
    view = await run(lambda: views.create(backing_datasets=backing, parent_folder_rid=FOLDER, view_name="v"))
    vrid = view.dataset_rid
    assert (view.view_name, view.branch, [x.dataset_rid for x in view.backing_datasets]) == ("v", "master", [a])
    assert (await run(lambda: ds.get(vrid))).name == "v"  # a view is a dataset
    assert (await run(lambda: views.get(vrid))).primary_key is None
    with pytest.raises(fs_errors.ResourceNameAlreadyExists):
        await run(lambda: views.create(backing_datasets=[], parent_folder_rid=FOLDER, view_name="v"))
    with pytest.raises(ds_errors.InvalidViewBackingDataset):
        await run(
            lambda: views.create(
                backing_datasets=[{"datasetRid": "ri.foundry.main.dataset.missing", "stopPropagatingMarkingIds": []}],
                parent_folder_rid=FOLDER, view_name="w",
            )
        )  # fmt: skip
    with pytest.raises(ds_errors.ViewNotFound):
        await run(lambda: views.get(vrid, branch="dev"))

    more = [{"datasetRid": b, "stopPropagatingMarkingIds": []}]
    added = await run(lambda: views.add_backing_datasets(vrid, backing_datasets=more))
    assert [x.dataset_rid for x in added.backing_datasets] == [a, b]
    removed = await run(lambda: views.remove_backing_datasets(vrid, backing_datasets=backing))
    assert [x.dataset_rid for x in removed.backing_datasets] == [b]
    with pytest.raises(ds_errors.InvalidViewBackingDataset):
        await run(lambda: views.remove_backing_datasets(vrid, backing_datasets=backing))
    replaced = await run(lambda: views.replace_backing_datasets(vrid, backing_datasets=backing))
    assert [x.dataset_rid for x in replaced.backing_datasets] == [a]

    def key(columns: list[str], **resolution: Any) -> dict[str, Any]:
        return {"columns": columns, "resolution": {"type": "unique", **resolution}}

    for bad, error in [
        (key([]), ds_errors.ViewPrimaryKeyMustContainAtLeastOneColumn),
        (key(["nope"]), ds_errors.NotAllColumnsInPrimaryKeyArePresent),
        (key(["score"]), ds_errors.InvalidViewPrimaryKeyColumnType),
        ({**key(["id"]), "resolution": {"type": "duplicate", "deletionColumn": "x",
                                        "resolutionStrategy": {"type": "latestWins", "columns": ["id"]}}},
         ds_errors.ViewPrimaryKeyDeletionColumnNotInDatasetSchema),
        ({**key(["id"]), "resolution": {"type": "duplicate", "deletionColumn": "name",
                                        "resolutionStrategy": {"type": "latestWins", "columns": ["id"]}}},
         ds_errors.InvalidViewPrimaryKeyDeletionColumn),
    ]:  # fmt: skip
        with pytest.raises(error):
            await run(lambda: views.add_primary_key(vrid, primary_key=bad))  # noqa: B023 (awaited at once)
    keyed = await run(lambda: views.add_primary_key(vrid, primary_key=key(["id", "name"])))
    assert keyed.primary_key is not None and keyed.primary_key.columns == ["id", "name"]
    with pytest.raises(ds_errors.ViewPrimaryKeyCannotBeModified):
        await run(lambda: views.add_primary_key(vrid, primary_key=key(["id"])))
    with pytest.raises(ds_errors.ViewPrimaryKeyRequiresBackingDatasets):
        await run(
            lambda: views.create(backing_datasets=[], parent_folder_rid=FOLDER, view_name="k", primary_key=key(["id"]))
        )

    # A job sees only what it declared: the view is an input here, so it may read it and change nothing.
    job = await admin.job({"view": vrid}, {})
    scoped_views = client(fake, job["token"]).datasets.View
    assert (await run(lambda: scoped_views.get(vrid))).view_name == "v"
    with pytest.raises(ds_errors.AddBackingDatasetsPermissionDenied):
        await run(lambda: scoped_views.add_backing_datasets(vrid, backing_datasets=more))
    with pytest.raises(ds_errors.RemoveBackingDatasetsPermissionDenied):
        await run(lambda: scoped_views.remove_backing_datasets(vrid, backing_datasets=backing))
    with pytest.raises(ds_errors.ReplaceBackingDatasetsPermissionDenied):
        await run(lambda: scoped_views.replace_backing_datasets(vrid, backing_datasets=more))
    with pytest.raises(ds_errors.AddPrimaryKeyPermissionDenied):
        await run(lambda: scoped_views.add_primary_key(vrid, primary_key=key(["id"])))
    with pytest.raises(ds_errors.CreateViewPermissionDenied):
        await run(lambda: scoped_views.create(backing_datasets=[], parent_folder_rid=FOLDER, view_name="j"))
    with pytest.raises(ds_errors.ViewNotFound):
        await run(lambda: scoped_views.get(a))


async def test_hidden_existence_and_unique_names(fake: FakeServer, admin: Admin) -> None:
    sdk = client(fake, fake.admin_token)
    ds = sdk.datasets.Dataset
    mine = await dataset_with_rows(ds, "mine")
    secret = await dataset_with_rows(ds, "secret")
    with pytest.raises(fs_errors.ResourceNameAlreadyExists) as taken:
        await run(lambda: ds.create(name="mine", parent_folder_rid=FOLDER))
    assert taken.value.parameters == {"parentFolderRid": FOLDER, "displayName": "mine"}
    assert (await run(lambda: ds.create(name="mine", parent_folder_rid=FOLDER + "2"))).name == "mine"
    with pytest.raises(foundry_sdk.ConflictError) as stream_taken:  # a stream may not take a dataset's name
        await run(
            lambda: sdk.streams.Dataset.create(name="mine", parent_folder_rid=FOLDER, schema=SCHEMA, preview=True)
        )
    assert stream_taken.value.name == "ResourceNameAlreadyExists"
    status, body = await admin.call(
        "POST", "/_fake/resources", json={"type": "media_set", "name": "mine", "parentFolderRid": FOLDER}
    )
    assert status == 409 and body["errorName"] == "ResourceNameAlreadyExists"

    job = await admin.job({"mine": mine}, {})
    scoped = client(fake, job["token"]).datasets.Dataset
    assert (await run(lambda: scoped.get(mine))).name == "mine"
    for call in (
        lambda: scoped.get(secret),
        lambda: list(scoped.Branch.list(secret)),
        lambda: scoped.Branch.get(secret, "master"),
        lambda: list(scoped.File.list(secret)),
        lambda: scoped.File.get(secret, "part.parquet"),
        lambda: list(scoped.transactions(secret, preview=True)),
    ):
        with pytest.raises(ds_errors.DatasetNotFound) as hidden:
            await run(call)
        assert hidden.value.parameters["datasetRid"] == secret
    with pytest.raises(ds_errors.GetBranchTransactionHistoryPermissionDenied):
        await run(lambda: list(scoped.Branch.transactions(secret, "master", preview=True)))
    with pytest.raises(ds_errors.DeleteBranchPermissionDenied):
        await run(lambda: scoped.Branch.delete(mine, "master"))
    batch = await run(lambda: scoped.get_schema_batch(body=[{"datasetRid": mine}, {"datasetRid": secret}]))
    assert list(batch.data) == [mine]

    # A method a path does not serve is a 404 the SDK types by status, not a bare 405.
    status, body = await admin.call("PATCH", f"/api/v2/datasets/{mine}")
    assert status == 404 and body["errorCode"] == "NOT_FOUND" and body["parameters"]["method"] == "PATCH"


async def test_job_declarations_are_checked(fake: FakeServer, admin: Admin) -> None:
    rid = (await admin.create("dataset", "d"))["rid"]
    stream = (await admin.create("stream", "s"))["rid"]
    cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
        ({"x": "ri.foundry.main.dataset.missing"}, {}, "UnknownResource"),
        ({}, {"x": {"rid": rid, "branch": "nope"}}, "UnknownBranch"),
        ({}, {"x": {"rid": stream, "branch": "nope"}}, "UnknownBranch"),
        ({"x": rid}, {"y": {"rid": rid, "branch": "master"}}, "OutputDeclaredAsInput"),
    ]
    for inputs, outputs, name in cases:
        status, body = await admin.call("POST", "/_fake/jobs", json={"inputs": inputs, "outputs": outputs})
        assert status == 400 and body["errorName"] == name, body
    assert (await admin.job({"x": stream}, {"y": rid}))["token"]


async def test_media_set_extras(fake: FakeServer, admin: Admin) -> None:
    plain = (await admin.create("media_set", "plain"))["rid"]
    txd = (await admin.create("media_set", "txd", transactional=True))["rid"]
    ms = client(fake, fake.admin_token).media_sets.MediaSet
    pdf = await run(lambda: ms.upload(plain, b"%PDF-1.7 doc", media_item_path="a.pdf", preview=True))
    png = await run(lambda: ms.upload(plain, b"\x89PNG", media_item_path="b.png", preview=True))
    assert await run(lambda: ms.read_original(plain, pdf.media_item_rid)) == b"%PDF-1.7 doc"
    meta = await run(lambda: ms.metadata(plain, pdf.media_item_rid))
    assert meta.type == "document" and meta.format == "PDF" and meta.size_bytes_long == 12
    assert (await run(lambda: ms.metadata(plain, png.media_item_rid))).type == "untyped"
    ref = await run(lambda: ms.reference(plain, pdf.media_item_rid, preview=True))
    assert ref.mime_type == "application/pdf"
    assert ref.reference.media_set_view_item.media_item_rid == pdf.media_item_rid
    assert ref.reference.media_set_view_item.media_set_view_rid == pdf.media_set_view_rid

    assert await run(lambda: ms.clear(plain, media_item_path="a.pdf", preview=True)) is None
    assert (await run(lambda: ms.get_rid_by_path(plain, media_item_path="a.pdf", preview=True))).media_item_rid is None
    # The SDK's media-set methods declare no typed errors: they arrive as the status classes, with the name.
    with pytest.raises(foundry_sdk.NotFoundError, match="MediaItemNotFound"):
        await run(lambda: ms.info(plain, pdf.media_item_rid))
    with pytest.raises(foundry_sdk.BadRequestError):  # a transactional set clears in a transaction
        await run(lambda: ms.clear(txd, media_item_path="i.png", preview=True))
    txn = await run(lambda: ms.create(txd, preview=True))
    old = await run(lambda: ms.upload(txd, b"old", media_item_path="i.png", transaction_id=txn, preview=True))
    await run(lambda: ms.clear(txd, media_item_path="i.png", transaction_id=txn, preview=True))
    new = await run(lambda: ms.upload(txd, b"new", media_item_path="i.png", transaction_id=txn, preview=True))
    await run(lambda: ms.commit(txd, txn, preview=True))
    at_path = await run(lambda: ms.get_rid_by_path(txd, media_item_path="i.png", preview=True))
    assert at_path.media_item_rid == new.media_item_rid
    with pytest.raises(foundry_sdk.NotFoundError, match="MediaItemNotFound"):
        await run(lambda: ms.info(txd, old.media_item_rid))

    temp = await run(lambda: ms.upload_media(b"%PDF-1.4 t", filename="t.pdf"))
    item = temp.reference.media_set_view_item
    assert temp.mime_type == "application/pdf"
    assert await run(lambda: ms.read(item.media_set_rid, item.media_item_rid)) == b"%PDF-1.4 t"

    job = await admin.job({"plain": plain}, {})
    scoped = client(fake, job["token"]).media_sets.MediaSet
    with pytest.raises(foundry_sdk.PermissionDeniedError):
        await run(lambda: scoped.clear(plain, media_item_path="b.png", preview=True))
    assert (await run(lambda: scoped.upload_media(b"x", filename="x.bin"))).mime_type == "application/octet-stream"


async def test_platform_only_calls(fake: FakeServer, admin: Admin) -> None:
    ds = client(fake, fake.admin_token).datasets.Dataset
    rid = await dataset_with_rows(ds, "platform")
    txn = (await run(lambda: ds.Transaction.create(rid, transaction_type="APPEND"))).rid
    denied = [
        (
            lambda: ds.get_health_check_reports(rid, preview=True),
            ds_errors.GetDatasetHealthCheckReportsPermissionDenied,
        ),
        (lambda: ds.get_health_checks(rid, preview=True), ds_errors.GetDatasetHealthChecksPermissionDenied),
        (lambda: list(ds.get_schedules(rid)), ds_errors.GetDatasetSchedulesPermissionDenied),
        (lambda: list(ds.jobs(rid, order_by=[], preview=True)), ds_errors.GetDatasetJobsPermissionDenied),
        (lambda: ds.Transaction.build(rid, txn, preview=True), ds_errors.BuildTransactionPermissionDenied),
        (lambda: ds.Transaction.job(rid, txn, preview=True), ds_errors.JobTransactionPermissionDenied),
    ]
    for call, error in denied:
        with pytest.raises(error) as caught:
            await run(call)
        raised: Any = caught.value
        assert raised.parameters["datasetRid"] == rid
    with pytest.raises(ds_errors.DatasetNotFound):
        await run(lambda: ds.get_health_checks("ri.foundry.main.dataset.missing", preview=True))

    plain = (await admin.create("media_set", "plain"))["rid"]
    ms = client(fake, fake.admin_token).media_sets.MediaSet
    item = (await run(lambda: ms.upload(plain, b"\x89PNG", media_item_path="b.png", preview=True))).media_item_rid
    transformation = {"type": "image", "encoding": {"type": "png"}, "operations": []}
    for call in (
        lambda: ms.calculate(plain, item, preview=True),
        lambda: ms.retrieve(plain, item, preview=True),
        lambda: ms.transform(plain, item, transformation=transformation, preview=True),
        lambda: ms.get_result(plain, item, "job-1", preview=True),
        lambda: ms.get_status(plain, item, "job-1", preview=True),
    ):
        with pytest.raises(foundry_sdk.PermissionDeniedError, match="TransformationPermissionDenied"):
            await run(call)
    # SDK 1.111's tile cannot build its URL (it quotes the integer z/x/y): it fails before sending anything,
    # so the route is proven by hand.
    with pytest.raises(foundry_sdk.SDKInternalError, match="quote_from_bytes"):
        await run(lambda: ms.tile(plain, item, 0, 0, 0, preview=True))
    status, body = await admin.call("GET", f"/api/v2/mediasets/{plain}/items/{item}/tiles/0/0/0", params=PREVIEW)
    assert status == 403 and body["errorName"] == "TransformationPermissionDenied"
    with pytest.raises(foundry_sdk.PermissionDeniedError):
        await run(lambda: ms.register(plain, physical_item_name="p", media_item_path="p.png", preview=True))
