"""Parse `getfacl` output and decide POSIX ACL access for a principal, as the kernel would.

The access check follows acl(5): the owner gets `user::`; a named user gets its entry
masked by `mask::`; otherwise, if the principal is in the owning group or a named group,
access is granted when one of those entries (masked) holds every requested permission and
denied otherwise; everyone else gets `other::`. Directory search permissions on the path
leading to the file are not considered.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FileAcl:
    """The access ACL of one path: owner, owning group and entries `(tag, qualifier) -> perms`.

    `tag` is user, group, mask or other; `qualifier` is "" for the owner, owning-group,
    mask and other entries; `perms` holds the granted letters of "rwx".
    """

    path: str
    owner: str
    group: str
    entries: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)

    def perms(self, tag: str, qualifier: str = "") -> frozenset[str]:
        """The letters of one entry; empty if the entry is missing."""
        return self.entries.get((tag, qualifier), frozenset())


@dataclass(frozen=True)
class Principal:
    """Who asks for access: a user name (None for an anonymous group member) and groups."""

    user: str | None
    groups: frozenset[str]


def _letters(text: str) -> frozenset[str]:
    return frozenset(letter for letter in text if letter in "rwx")


def parse_getfacl(text: str) -> dict[str, FileAcl]:
    """Parse the output of `getfacl -p PATH...` into path -> access ACL (defaults ignored)."""
    acls: dict[str, FileAcl] = {}
    for block in text.split("\n\n"):
        header: dict[str, str] = {}
        entries: dict[tuple[str, str], frozenset[str]] = {}
        for raw in block.splitlines():
            line = raw.strip()
            if line.startswith("#"):
                key, _, value = line[1:].partition(":")
                header[key.strip()] = value.strip()
                continue
            entry = line.split("#", 1)[0].strip()
            parts = entry.split(":")
            if len(parts) == 3 and parts[0] in ("user", "group", "mask", "other"):
                entries[(parts[0], parts[1])] = _letters(parts[2])
        if {"file", "owner", "group"} <= header.keys():
            acls[header["file"]] = FileAcl(
                header["file"], header["owner"], header["group"], entries
            )
    return acls


def grants(acl: FileAcl, principal: Principal, perms: str) -> bool:
    """Whether `principal` gets every letter of `perms` on the file described by `acl`."""
    wanted = _letters(perms)
    has_mask = ("mask", "") in acl.entries
    mask = acl.perms("mask") if has_mask else frozenset("rwx")
    if principal.user is not None and principal.user == acl.owner:
        return wanted <= acl.perms("user")
    if principal.user is not None and ("user", principal.user) in acl.entries:
        return wanted <= acl.perms("user", principal.user) & mask
    matching = [
        acl.perms("group", name) for name in principal.groups if ("group", name) in acl.entries
    ]
    if acl.group in principal.groups:
        matching.append(acl.perms("group"))
    if matching:
        return any(wanted <= entry & mask for entry in matching)
    return wanted <= acl.perms("other")


def world_access(acl: FileAcl) -> dict[str, bool]:
    """Whether everyone (the `other::` entry) may read, write or execute."""
    other = acl.perms("other")
    return {"readable": "r" in other, "writable": "w" in other, "executable": "x" in other}
