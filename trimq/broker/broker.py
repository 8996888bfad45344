"""The broker model's root: virtual hosts, users and permissions. Pure state, no I/O.

Changes to users, vhosts and permissions are journaled (when the broker keeps durable state)
like any other durable definition. Refusals raise `AdminError` with the kind of failure, which
the control socket maps to rabbitmqctl's exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trimq.admin_errors import AdminError, ErrorKind
from trimq.broker.auth import (
    HASHING_ALGORITHM,
    Permission,
    User,
    Users,
    hash_password,
    regex_problem,
)
from trimq.broker.journal import Journal
from trimq.broker.limits import LimitsError, parse_limits
from trimq.broker.policy import PolicyError, make_policy
from trimq.broker.records import (
    Definition,
    PermissionDef,
    PolicyDef,
    TopicPermissionDef,
    UserDef,
    VHostDef,
    VHostLimitsDef,
)
from trimq.broker.reply_to import ReplyTo
from trimq.broker.stats import EXCHANGE_SIDE, Totals
from trimq.broker.timers import Timers
from trimq.broker.vhost import VHost


@dataclass
class BrokerConfig:
    default_user: str = "guest"
    default_pass: str = "guest"
    default_vhost: str = "/"
    default_user_tags: list[str] = field(default_factory=lambda: ["administrator"])
    loopback_users: list[str] = field(default_factory=lambda: ["guest"])
    # login mechanisms offered (EXTERNAL: on TLS connections only, the user from the client
    # certificate as ssl_cert_login_from says: "distinguished_name" or "common_name")
    auth_mechanisms: list[str] = field(default_factory=lambda: ["PLAIN", "AMQPLAIN"])
    ssl_cert_login_from: str = "distinguished_name"
    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60
    max_message_size: int = 128 * 1024 * 1024
    handshake_timeout: float = 10.0
    connection_max: int = 0  # open connections allowed (0: no limit)
    handshake_max: int = 1000  # sockets not yet authenticated (0: no limit)
    channel_unacked_max: int = 0  # unacked deliveries a channel may hold (0: no limit)
    connection_output_buffer: int = 4 * 1024 * 1024  # deliveries to a connection pause above
    consumer_timeout: int = 1_800_000  # ms an unacked delivery may wait (0: forever)
    memory_high_watermark: float = 0.4  # fraction of RAM: above it publishers are blocked
    memory_high_watermark_absolute: int = 0  # bytes, instead of the fraction when set
    disk_free_limit: int = 50_000_000  # bytes free on the data directory's disk, at least
    # message paging (trimq/server/pager.py): ready bodies in memory are kept under the
    # watermark times paging_ratio (or paging_budget bytes when set); a queue keeps its first
    # paging_head_messages / paging_head_bytes in memory; runs are written this big
    paging_enabled: bool = True
    paging_ratio: float = 0.5
    paging_budget: int = 0
    paging_head_messages: int = 2000
    paging_head_bytes: int = 8 * 2**20
    paging_run_bytes: int = 4 * 2**20


def check_permissions(
    vhost: str,
    user: str,
    configure: object,
    write: object,
    read: object,
) -> None:
    """Refuse (before anything else, as RabbitMQ) an expression that cannot be used, naming
    the user, the vhost and the expression."""
    for expression in (configure, write, read):
        problem = regex_problem(expression)
        if problem is not None:
            raise AdminError(
                ErrorKind.ERROR,
                f"Failed to set permissions for '{user}' in virtual host "
                f"'{vhost}': regular expression '{expression}' cannot be "
                f"used: {problem}",
            )


class Broker:
    def __init__(
        self,
        config: BrokerConfig | None = None,
        journal: Journal | None = None,
        bootstrap: bool = True,
    ) -> None:
        self.config = config or BrokerConfig()
        self.journal = journal  # durable state goes here; None keeps everything in memory
        self.vhosts: dict[str, VHost] = {}
        self.users = Users()
        self.timers = Timers()
        self.reply_to = ReplyTo()
        self.totals = Totals()  # connections, channels and queues counted since start
        if bootstrap:
            self.bootstrap()

    def bootstrap(self) -> None:
        """A new broker: the default vhost, and the default user with full permissions on it."""
        config = self.config
        self.add_vhost(config.default_vhost)
        self.add_user(config.default_user, config.default_pass, config.default_user_tags)
        self.set_permissions(config.default_vhost, config.default_user, ".*", ".*", ".*")

    # -- vhosts -------------------------------------------------------------------------

    def add_vhost(
        self, name: str, description: str = "", tags: list[str] | None = None, loading: bool = False
    ) -> VHost:
        """`loading`: the vhost comes from storage (recovery): an existing one (made for a
        definition inside it) takes the description and tags, nothing is journaled again."""
        if loading:
            vhost = self.loading_vhost(name)
        elif name in self.vhosts:
            raise AdminError(ErrorKind.EXISTS, f'Virtual host "{name}" already exists')
        else:
            vhost = self.vhosts[name] = VHost(name, self.journal, self.timers, self.totals)
        vhost.description = description
        vhost.tags = list(tags or [])
        if not loading:
            self._put(VHostDef(name, description, vhost.tags))
        return vhost

    def update_vhost(self, name: str, description: str, tags: list[str]) -> VHost:
        """Change an existing vhost's description and tags."""
        vhost = self.get_vhost(name)
        vhost.description = description
        vhost.tags = list(tags)
        self._put(VHostDef(name, description, vhost.tags))
        return vhost

    def loading_vhost(self, name: str) -> VHost:
        """The vhost a definition loaded from storage belongs to, made if need be."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VHost(name, self.journal, self.timers, self.totals)
        return vhost

    def get_vhost(self, name: str) -> VHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            raise AdminError(ErrorKind.VHOST_NOT_FOUND, f'Virtual host "{name}" does not exist')
        return vhost

    def delete_vhost(self, name: str) -> VHost:
        """Remove a vhost with its queues, exchanges and permissions. The caller closes its
        connections first."""
        vhost = self.get_vhost(name)
        for queue in list(vhost.queues.values()):
            vhost.delete_queue(queue)
        vhost.deleted = True
        del self.vhosts[name]
        # The broker's totals keep its messages: what its queues (deleted above) and
        # exchanges counted; its channels add theirs as they close.
        for exchange in vhost.exchanges.values():
            vhost.stats.add(exchange.stats, EXCHANGE_SIDE)
        self.totals.retired.add(vhost.stats)
        for key in [k for k in self.users.permissions if k[0] == name]:
            del self.users.permissions[key]
        for topic in [k for k in self.users.topic_permissions if k[0] == name]:
            del self.users.topic_permissions[topic]
        self._drop(VHostDef.KIND, VHostDef.make_key(name))  # storage drops all inside it
        return vhost

    def set_vhost_limits(self, vhost: str, definition: Any, loading: bool = False) -> None:
        """Replace the vhost's limits (RabbitMQ's set_vhost_limits: no merge). `loading`:
        `definition` is the limits stored (recovery): taken as they are, not journaled."""
        if loading:
            self.loading_vhost(vhost).limits = dict(definition)
            return
        target = self.get_vhost(vhost)
        try:
            limits = parse_limits(definition)
        except LimitsError as exc:
            raise AdminError(ErrorKind.ERROR, str(exc)) from None
        self._put(VHostLimitsDef(vhost, limits))
        target.limits = limits

    def clear_vhost_limits(self, vhost: str) -> None:
        target = self.vhosts.get(vhost)
        if target is None or target.limits is None:
            raise AdminError(ErrorKind.NOT_FOUND, "Parameter does not exist")
        target.limits = None
        self._drop(VHostLimitsDef.KIND, VHostLimitsDef.make_key(vhost))

    # -- users --------------------------------------------------------------------------

    def get_user(self, name: str) -> User:
        user = self.users.users.get(name)
        if user is None:
            raise AdminError(ErrorKind.USER_NOT_FOUND, f'User "{name}" does not exist')
        return user

    def add_user(
        self,
        name: str,
        password: str | None,
        tags: list[str] | None = None,
        password_hash: str | None = None,
        loading: bool = False,
    ) -> User:
        """`loading`: the user comes from storage (recovery): not journaled again."""
        if not loading and name in self.users.users:
            raise AdminError(ErrorKind.EXISTS, f'User "{name}" already exists')
        user = self.users.add(name, password, tags)
        if password_hash is not None:
            user.password_hash = password_hash
        if not loading:
            self._save_user(user)
        return user

    def delete_user(self, name: str) -> None:
        self.get_user(name)
        del self.users.users[name]
        self._drop(UserDef.KIND, UserDef.make_key(name))
        for key in [k for k in self.users.permissions if k[1] == name]:
            del self.users.permissions[key]
            self._drop(PermissionDef.KIND, PermissionDef.make_key(*key))
        for topic in [k for k in self.users.topic_permissions if k[1] == name]:
            del self.users.topic_permissions[topic]
            self._drop(TopicPermissionDef.KIND, TopicPermissionDef.make_key(*topic))

    def change_password(self, name: str, password: str) -> None:
        user = self.get_user(name)
        user.password_hash = hash_password(password)
        self._save_user(user)

    def clear_password(self, name: str) -> None:
        user = self.get_user(name)
        user.password_hash = ""
        self._save_user(user)

    def set_user_tags(self, name: str, tags: list[str]) -> None:
        user = self.get_user(name)
        user.tags = list(tags)
        self._save_user(user)

    def _save_user(self, user: User) -> None:
        self._put(UserDef(user.name, user.password_hash, list(user.tags), HASHING_ALGORITHM))

    # -- permissions --------------------------------------------------------------------

    def set_permissions(
        self, vhost: str, user: str, configure: str, write: str, read: str, loading: bool = False
    ) -> None:
        """`loading`: the permissions come from storage (recovery): not checked against the
        vhosts and users, not journaled again; an expression this version cannot use raises
        PatternError."""
        if not loading:
            check_permissions(vhost, user, configure, write, read)
            self.get_vhost(vhost)
            self.get_user(user)
        self.users.permissions[(vhost, user)] = Permission(configure, write, read)
        if not loading:
            self._put(PermissionDef(vhost, user, configure, write, read))

    def clear_permissions(self, vhost: str, user: str) -> None:
        self.get_vhost(vhost)
        self.get_user(user)
        if self.users.permissions.pop((vhost, user), None) is not None:
            self._drop(PermissionDef.KIND, PermissionDef.make_key(vhost, user))

    def set_topic_permissions(
        self,
        vhost: str,
        user: str,
        exchange: str,
        write: str,
        read: str,
        loading: bool = False,
    ) -> None:
        """A user's topic permissions on one exchange of a vhost (RabbitMQ's
        set_topic_permissions). `loading`: from storage, not checked, not journaled."""
        if not loading:
            for expression in (write, read):
                problem = regex_problem(expression)
                if problem is not None:
                    raise AdminError(
                        ErrorKind.ERROR,
                        f"Failed to set topic permissions for '{user}' in virtual host "
                        f"'{vhost}': regular expression '{expression}' cannot be used: "
                        f"{problem}",
                    )
            self.get_vhost(vhost)
            self.get_user(user)
        if not loading:  # journaled first: a record that cannot be written changes nothing
            self._put(TopicPermissionDef(vhost, user, exchange, write, read))
        self.users.topic_permissions[(vhost, user, exchange)] = (write, read)

    def clear_topic_permissions(self, vhost: str, user: str, exchange: str | None = None) -> int:
        """Remove a user's topic permissions in a vhost (on one exchange, or all); how many."""
        self.get_vhost(vhost)
        self.get_user(user)
        keys = [
            k
            for k in self.users.topic_permissions
            if k[0] == vhost and k[1] == user and exchange in (None, k[2])
        ]
        for key in keys:
            self._drop(TopicPermissionDef.KIND, TopicPermissionDef.make_key(*key))
            del self.users.topic_permissions[key]
        return len(keys)

    # -- policies -----------------------------------------------------------------------

    def set_policy(
        self,
        vhost: str,
        name: str,
        pattern: str,
        definition: Any,
        priority: int = 0,
        apply_to: str = "all",
        loading: bool = False,
    ) -> None:
        """`loading`: the policy comes from storage (recovery): a value that no longer
        validates raises PolicyError; it is not journaled again, and is applied once all
        definitions are loaded (VHost.apply_policies)."""
        if loading:
            self.loading_vhost(vhost).policies[name] = make_policy(
                vhost, name, pattern, definition, priority, apply_to
            )
            return
        target = self.get_vhost(vhost)
        try:
            policy = make_policy(vhost, name, pattern, definition, priority, apply_to)
        except PolicyError as exc:
            raise AdminError(ErrorKind.USAGE, str(exc)) from None
        target.policies[name] = policy
        self._put(
            PolicyDef(
                vhost, name, policy.pattern, policy.definition, policy.priority, policy.apply_to
            )
        )
        target.apply_policies()

    def clear_policy(self, vhost: str, name: str) -> None:
        target = self.get_vhost(vhost)
        if target.policies.pop(name, None) is None:
            raise AdminError(ErrorKind.NOT_FOUND, "Parameter does not exist")
        self._drop(PolicyDef.KIND, PolicyDef.make_key(vhost, name))
        target.apply_policies()

    def _put(self, record: Definition) -> None:
        if self.journal is not None:
            self.journal.put(record)

    def _drop(self, kind: str, key: list[str]) -> None:
        if self.journal is not None:
            self.journal.drop(kind, key)
