"""The emulator's error answers: `{"error", "error_description"}`, with the status codes we chose for them."""

from __future__ import annotations

from aiohttp import web

from ..errors import ApiError

FAILED_MESSAGE = "Compute module job failed."


class ComputeModuleError(ApiError):
    """An error in the emulator's `{"error", "error_description"}` shape (not Foundry's envelope)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(status, error)
        self.error = error
        self.description = description

    def to_response(self) -> web.Response:
        return web.json_response({"error": self.error, "error_description": self.description}, status=self.status)


def invalid_token() -> ComputeModuleError:
    return ComputeModuleError(401, "invalid_module_auth_token", "The Module-Auth-Token header is invalid.")


def runtime_not_found(runtime_id: str) -> ComputeModuleError:
    return ComputeModuleError(404, "not_found", f"No compute-module runtime '{runtime_id}'.")


def job_not_found(job_id: str) -> ComputeModuleError:
    return ComputeModuleError(404, "not_found", f"No compute-module job '{job_id}'.")


def no_binding(rid: str) -> ComputeModuleError:
    return ComputeModuleError(404, "not_found", f"No active compute-module runtime is bound to '{rid}'.")


def job_not_ready(job_id: str) -> ComputeModuleError:
    return ComputeModuleError(409, "job_not_ready", f"Compute-module job '{job_id}' has not completed successfully.")


def job_failed() -> ComputeModuleError:
    return ComputeModuleError(500, "job_failed", FAILED_MESSAGE)


def job_timeout(job_id: str) -> ComputeModuleError:
    return ComputeModuleError(504, "job_timeout", f"Timed out waiting for compute-module job '{job_id}'.")


def bad_body(description: str) -> ComputeModuleError:
    return ComputeModuleError(400, "invalid_request", description)
