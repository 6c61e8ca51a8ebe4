"""Policies per service type (docs/DESIGN.md section 7): which purpose and entitlement a
counter asks for, and the time windows it accepts.

Example::

    policy = POLICIES["hospital"]      # svc credential with healthcare
    custom = Policy(service="pharmacy", purpose=Purpose.SVC,
                    entitlement=Entitlement.HEALTHCARE)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from schemas.credential import Entitlement, Purpose

__all__ = ["POLICIES", "Policy", "PolicyError"]


class PolicyError(ValueError):
    """A policy that would accept anything (fail closed)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What a service requires. All windows are in seconds."""

    service: str
    purpose: Purpose
    entitlement: Entitlement | None
    proof_window: int = 60  # a holder proof older than this is stale (61 s: refused)
    leeway: int = 5  # how far a phone's clock may run ahead of the counter's
    status_grace: int = 0  # accept a status list this long past iat + ttl
    trust_grace: int = 0  # accept a trust list this long past its exp

    def __post_init__(self) -> None:
        if not self.service:
            raise PolicyError("a policy needs a service name")
        if not isinstance(self.purpose, Purpose):
            raise PolicyError("a policy needs a purpose")
        if self.purpose is not Purpose.ID and self.entitlement is None:
            raise PolicyError(f"a {self.purpose} policy must name an entitlement")
        if self.purpose is Purpose.ID and self.entitlement is not None:
            raise PolicyError("id credentials carry no entitlements")
        if self.proof_window <= 0 or self.leeway < 0:
            raise PolicyError("the proof window must be positive")
        if self.status_grace < 0 or self.trust_grace < 0:
            raise PolicyError("grace periods cannot be negative")

    def replay_expires_at(self, proof_time: int) -> int:
        """How long a seen code must be remembered: until it is stale anyway. The one rule
        for the counter's replay cache and the terminal's (a code is fresh while
        ``now <= proof_time + proof_window``)."""
        return proof_time + self.proof_window + 1


POLICIES = MappingProxyType(
    {
        "counter": Policy("counter", Purpose.ID, None),
        "hospital": Policy("hospital", Purpose.SVC, Entitlement.HEALTHCARE),
        "school": Policy("school", Purpose.SVC, Entitlement.EDUCATION),
        "social": Policy("social", Purpose.SVC, Entitlement.SOCIAL_INSURANCE),
        "transport": Policy("transport", Purpose.SVC, Entitlement.PUBLIC_TRANSPORT),
        "government": Policy("government", Purpose.SVC, Entitlement.GOVERNMENT_SERVICES),
        "payment": Policy("payment", Purpose.PAY, Entitlement.PAYMENT),
    }
)
