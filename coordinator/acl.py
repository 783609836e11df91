"""The least-privilege Redis ACL for one coordinator prefix: its own keys, kombu's bindings and
the worker control mailboxes, its pub/sub channels, and no dangerous commands."""

from __future__ import annotations

from coordinator.keys import CoordinatorKeys


def acl_rules(prefix: str, db: int = 0) -> list[str]:
    """Rules for ``ACL SETUSER <user> on ><password> <rules...>``.

    Keys: the prefix (registry, broker lists, results, beat), kombu's binding sets, and the
    pidbox lists of worker control. Channels: kombu's fanout channels of the prefix's control
    and event exchanges; PSUBSCRIBE needs its pattern listed literally, hence the second one.
    INFO lets health and workers see persistence and eviction settings; CONFIG stays denied.
    """
    control = CoordinatorKeys(prefix).control_exchange
    return [
        "resetkeys", "resetchannels",
        f"~{prefix}:*", "~_kombu.*", f"~*.{control}.pidbox*",
        f"&/{db}.{prefix}.*", f"&/{db}.{control}.pidbox",
        "-@all", "+@read", "+@write", "+@keyspace", "+@list", "+@hash", "+@sortedset", "+@string",
        "+@stream", "+@set", "+@pubsub", "+@scripting", "+@transaction", "+@connection",
        "-@dangerous", "+time", "+info",
    ]


def acl_setuser_line(prefix: str, user: str = "jqc", db: int = 0) -> str:
    """The whole ACL SETUSER command, with a password placeholder, as the README shows it."""
    return f"ACL SETUSER {user} on >PASSWORD {' '.join(acl_rules(prefix, db))}"
