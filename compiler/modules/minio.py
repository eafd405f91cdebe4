"""MINIO: S3-compatible object storage (single node or multi-node multi-drive). Membership by `minio_cluster`."""

from __future__ import annotations

from ..bundle import HostBundle
from ..errors import Report
from ..model import Fleet, Host
from ..module import FleetModule


class MinioModule(FleetModule):
    name = "minio"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return bool(host.params.raw("minio_cluster"))

    def derive(self, fleet: Fleet, report: Report) -> None:
        pass

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        pass
