"""A KeyedState connector for the state tests: running totals per account, checkpointed to `totals_state` and
snapshotted to `totals_snapshots` every `TOTALS_SNAPSHOT_EVERY` changes; each payment publishes its account's
total after it (at-least-once: a re-read payment publishes the total again, unchanged)."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict
from structlog.stdlib import BoundLogger

from framework import Connector, Environment, FoundryClient, KeyedState, StreamInput, StreamOutput

SPEC = "tests.e2e.state_totals:RunningTotals"


class Payment(BaseModel):
    account: str
    amount: int


class Total(BaseModel):
    amount: int = 0
    payments: int = 0


class AccountTotal(BaseModel):
    account: str
    amount: int
    payments: int


class TotalsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TOTALS_")
    snapshot_every: int = 100_000


class RunningTotals(Connector):
    settings_model = TotalsSettings
    settings: TotalsSettings

    payments = StreamInput[Payment]("payments")
    totals_out = StreamOutput[AccountTotal]("totals")
    totals = KeyedState[Total]("totals_state", snapshots="totals_snapshots")

    def __init__(self, env: Environment, client: FoundryClient, log: BoundLogger | None = None) -> None:
        super().__init__(env, client, log)
        self.totals.configure(snapshot_every=self.settings.snapshot_every)

    async def transform(self, payment: Payment) -> AccountTotal | None:
        total = await self.totals.update(
            payment.account,
            lambda t: Total(amount=t.amount + payment.amount, payments=t.payments + 1),
            default=Total,
        )
        assert total is not None
        return AccountTotal(account=payment.account, amount=total.amount, payments=total.payments)
