"""INFRA: the observability and admin nodes (group `infra`, identity `infra_seq`).

The core issue only needs the identity rules; the nginx portal, Victoria stack, DNS and
chrony server artifacts are added by the INFRA issue.
"""

from __future__ import annotations

from ..bundle import HostBundle
from ..errors import Report
from ..model import Fleet, Host
from ..module import FleetModule


class InfraModule(FleetModule):
    name = "infra"

    def is_member(self, host: Host, fleet: Fleet) -> bool:
        return "infra" in host.groups

    def derive(self, fleet: Fleet, report: Report) -> None:
        seen: dict[int, Host] = {}
        members: list[tuple[int, Host]] = []
        for host in fleet.hosts.values():
            if "infra" not in host.modules:
                continue
            seq = host.params.get("infra_seq")
            if seq is None:
                report.error(f"{host.path}.infra_seq", "infra nodes need infra_seq, a unique non-negative integer")
                continue
            if seq in seen:
                report.error(host.pp("infra_seq"), f"infra_seq {seq} is already used by {seen[seq].ip}")
                continue
            seen[seq] = host
            members.append((seq, host))
        fleet.derived["infra"] = [h for _, h in sorted(members, key=lambda m: m[0])]

    def render(self, host: Host, fleet: Fleet, b: HostBundle) -> None:
        seq = host.params.get("infra_seq")
        b.info["infra"] = {"seq": seq, "name": f"infra-{seq}"}
