"""Route tables: the runtime API under the emulator's prefix, Contour's job API, and admin user tokens."""

from __future__ import annotations

from ..context import FakeContext
from ..routing import RouteTable, table
from .handlers import ComputeModuleHandlers
from .hub import Hub
from .store import ComputeModuleStore

EMULATE = "/_emulate/foundry/compute-modules"
CONTOUR = "/contour-backend-multiplexer/api/module-group-multiplexer"

# Every route but creation and inspection needs the runtime's Module-Auth-Token.
RUNTIME_ROUTES = """
    POST    /runtimes                                   create_runtime
    POST    /runtimes/                                  create_runtime
    GET     /runtimes/{runtime_id}/job                  get_job
    POST    /runtimes/{runtime_id}/schemas              post_schemas
    POST    /runtimes/{runtime_id}/results/{job_id}     post_result
    POST    /runtimes/{runtime_id}/restart-notification restart_notification
    GET     /runtimes/{runtime_id}/jobs/{job_id}        inspect
    GET     /runtimes/{runtime_id}                      inspect_runtime
"""
# Bearer token required: the admin token, or a user token from POST /_fake/users.
CONTOUR_ROUTES = """
    POST    /compute-modules/jobs/execute               execute
    POST    /deployed-apps/jobs                         submit
    GET     /jobs/{job_id}/status                       status
    PUT     /jobs/result/v2                             result
"""
ADMIN_ROUTES = """
    POST    /users                                      issue_user_token
"""


def route_tables(ctx: FakeContext) -> list[RouteTable]:
    hub = Hub()
    handlers = ComputeModuleHandlers(ctx, ComputeModuleStore(ctx.storage), hub)
    ctx.seeders["compute_modules"] = handlers.seed
    ctx.shutdown_hooks.append(hub.close)
    return [
        table(("",), handlers, RUNTIME_ROUTES, prefix=EMULATE, head=False),
        table(("",), handlers, CONTOUR_ROUTES, prefix=CONTOUR, head=False),
        table(("/_fake",), handlers, ADMIN_ROUTES, head=False),
    ]
