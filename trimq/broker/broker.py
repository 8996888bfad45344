"""The broker model's root: virtual hosts and users. Pure state, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from trimq.broker.auth import Users
from trimq.broker.journal import Journal
from trimq.broker.vhost import VHost


@dataclass
class BrokerConfig:
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60
    max_message_size: int = 128 * 1024 * 1024
    handshake_timeout: float = 10.0


class Broker:
    def __init__(self, config: BrokerConfig | None = None, journal: Journal | None = None) -> None:
        self.config = config or BrokerConfig()
        self.journal = journal  # durable state goes here; None keeps everything in memory
        self.vhosts: dict[str, VHost] = {}
        self.users = Users()
        self.add_vhost(self.config.default_vhost)
        self.users.add(self.config.default_user, self.config.default_pass, ["administrator"])

    def add_vhost(self, name: str) -> VHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VHost(name, self.journal)
        return vhost
