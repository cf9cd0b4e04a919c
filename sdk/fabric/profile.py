"""Where the peers are: build a :class:`FabricGatewayBackend` from a network description.

Three descriptions are understood, so that the same client code runs against the native network
of this repository and against a Fabric network someone else brought up:

1. **This repository's network** (``make network-up``): ``run/network/network.json``, written by
   the network scripts together with ``run/network/READY``. Pass ``--network-dir run/network``.

2. **A fabric-samples test-network** brought up with Docker on another machine. The test-network
   writes its crypto material to ``fabric-samples/test-network/organizations/``; pass that folder
   (or ``test-network/`` itself) as ``--network-dir``. Steps there::

       cd fabric-samples/test-network
       ./network.sh up createChannel -c mychannel -ca
       ./network.sh deployCCAAS -ccn fedledger -ccp <path to this repo>/chaincode ...
       #   (or deploy however you like; the chaincode name is given to the client)
       fedledger ... --network-dir fabric-samples/test-network/organizations --org Org1

   Peers are expected at ``localhost`` on test-network's ports (Org1 7051, Org2 9051, Org3
   11051) unless a ``connection-orgN.json`` in the organisation folder says otherwise; TLS
   server names are ``peer0.orgN.example.com``; MSP IDs are ``OrgNMSP``; identities come from
   ``users/<User>@orgN.example.com/msp`` (with ``-ca`` their key is ``keystore/<ski>_sk``).
   This path is written from test-network's documented layout and **has not been run here**:
   no Docker engine exists on the machines this project is developed on.

3. **A common connection profile** (JSON, or YAML when PyYAML is installed), as used by the
   Fabric SDKs: ``organizations.<org>.mspid/peers``, ``peers.<name>.url/tlsCACerts/grpcOptions``.
   It does not say where the signing identities are, so give ``msp_dirs``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedledger.chaincode.names import CONTRACT_NAME as DEFAULT_CHAINCODE
from fedledger.chaincode.names import DEFAULT_CHANNEL
from fedledger.identity import Identity, Signer, load_msp_identity
from fedledger.sdk.fabric.backend import FabricGatewayBackend
from fedledger.sdk.fabric.endpoints import GatewayEndpoint

__all__ = [
    "NetworkProfile",
    "OrgConnection",
    "add_network_arguments",
    "backend_from_args",
    "load_connection_profile",
    "load_network_dir",
]

logger = logging.getLogger(__name__)

TEST_NETWORK_PORTS = {"org1": 7051, "org2": 9051, "org3": 11051}


@dataclass(frozen=True)
class OrgConnection:
    """How to reach one organisation's gateway peer (and its other peers, if the profile names more),
    and where its users' MSP folders are."""

    name: str
    mspid: str
    endpoint: str
    tls_root_cert: bytes | None
    server_name_override: str | None = None
    msp_dirs: Mapping[str, Path] = field(default_factory=dict)
    other_peers: tuple[GatewayEndpoint, ...] = ()

    @property
    def gateways(self) -> tuple[GatewayEndpoint, ...]:
        """This organisation's gateway peers, the preferred one first."""
        first = GatewayEndpoint(self.endpoint, self.tls_root_cert, self.server_name_override, self.mspid)
        return (first, *self.other_peers)

    def msp_dir(self, user: str) -> Path:
        """The MSP folder of ``user`` ("User1", "Admin", or any name the profile lists)."""
        for key, path in self.msp_dirs.items():
            if key.lower() == user.lower() or key.lower().startswith(user.lower() + "@"):
                return path
        raise KeyError(f"{self.name} has no MSP folder for user {user!r}; known: {sorted(self.msp_dirs)}.")

    def backend(self, identity: Identity, signer: Signer, **options: Any) -> FabricGatewayBackend:
        """A backend on this organisation's gateway peer signing as ``identity``, failing over to its
        other peers (and to ``fallbacks=`` after them); ``options`` go to :class:`FabricGatewayBackend`
        (timeouts, retries, ``clock``...)."""
        options["fallbacks"] = (*self.other_peers, *options.get("fallbacks", ()))
        return FabricGatewayBackend(
            identity,
            signer,
            endpoint=self.endpoint,
            tls_root_cert=self.tls_root_cert,
            server_name_override=self.server_name_override,
            **options,
        )


@dataclass(frozen=True)
class NetworkProfile:
    """A channel, the chaincode on it, and the organisations whose peers can be used."""

    channel: str
    chaincode: str
    orgs: Mapping[str, OrgConnection]

    def org(self, name: str) -> OrgConnection:
        """Looks an organisation up by its name (``Org1``, case-insensitive) or MSP ID."""
        for org in self.orgs.values():
            if name.lower() in (org.name.lower(), org.mspid.lower()):
                return org
        raise KeyError(f"Unknown organisation {name!r}; known: {sorted(self.orgs)}.")

    def backend(self, org: str, identity: Identity, signer: Signer, **options: Any) -> FabricGatewayBackend:
        """A backend on ``org``'s gateway peer that fails over to its other peers, then to the other
        organisations' peers, when the current one cannot be reached. ``options`` go to
        :class:`FabricGatewayBackend`; ``fallbacks=()`` keeps it on ``org``'s own peers."""
        connection = self.org(org)
        others = [other for other in self.orgs.values() if other is not connection]
        options.setdefault("fallbacks", [gateway for other in others for gateway in other.gateways])
        return connection.backend(identity, signer, **options)

    def connect(
        self,
        org: str = "Org1",
        *,
        user: str = "User1",
        msp_dir: Path | str | None = None,
        **options: Any,
    ) -> FabricGatewayBackend:
        """A backend on ``org``'s peer signing as ``user`` (or the identity in ``msp_dir``).

        ``options`` go to :class:`FabricGatewayBackend` (timeouts, retries...).
        """
        connection = self.org(org)
        identity, signer = load_msp_identity(msp_dir or connection.msp_dir(user), connection.mspid)
        return self.backend(org, identity, signer, **options)


def _read_optional(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None


def _resolve(base: Path, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else (base / path)


def _first(mapping: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if key in mapping and mapping[key] not in (None, ""):
            return mapping[key]
    return default


_SERVER_NAME_KEYS = ("server_name_override", "tls_host_override", "ssl_target_name_override")


def _load_network_json(path: Path) -> NetworkProfile:
    """Reads this repository's ``network.json`` (written by ``make network-up``)."""
    data = json.loads(path.read_text())
    base = path.parent
    raw_orgs = data.get("orgs") or data.get("organizations") or {}
    if isinstance(raw_orgs, list):
        raw_orgs = {str(_first(o, "name", "mspid")): o for o in raw_orgs}
    orgs: dict[str, OrgConnection] = {}
    for name, raw in raw_orgs.items():
        peer = raw.get("peer") if isinstance(raw.get("peer"), Mapping) else {}
        if not peer and isinstance(raw.get("peers"), list) and raw["peers"]:
            peer = raw["peers"][0]
        merged = {**peer, **raw}
        endpoint = _first(merged, "gateway_endpoint", "peer_endpoint", "endpoint", "address", "url")
        if endpoint is None:
            raise ValueError(f"{path}: organisation {name!r} names no peer endpoint.")
        endpoint = re.sub(r"^grpcs?://", "", str(endpoint))
        tls = _resolve(base, _first(merged, "tls_root_cert", "tls_ca_cert", "tls_ca", "tlsca"))
        msp_dirs: dict[str, Path] = {}
        for key, value in (raw.get("msp_dirs") or raw.get("users") or {}).items():
            resolved = _resolve(base, value if isinstance(value, str) else value.get("msp_dir"))
            if resolved is not None:
                msp_dirs[key] = resolved
        for key, user in (
            ("admin_msp", "Admin"),
            ("admin_msp_dir", "Admin"),
            ("user_msp", "User1"),
            ("user_msp_dir", "User1"),
        ):
            resolved = _resolve(base, raw.get(key))
            if resolved is not None:
                msp_dirs.setdefault(user, resolved)
        mspid = str(_first(raw, "mspid", "msp_id", default=f"{name}MSP"))
        if name == mspid and name.endswith("MSP"):
            name = name[: -len("MSP")]  # keyed by MSP ID ("Org1MSP"): also known as "Org1"
        orgs[name] = OrgConnection(
            name=name,
            mspid=mspid,
            endpoint=endpoint,
            tls_root_cert=_read_optional(tls),
            server_name_override=_first(raw, *_SERVER_NAME_KEYS) or _first(peer, *_SERVER_NAME_KEYS, "name"),
            msp_dirs=msp_dirs,
        )
    return NetworkProfile(
        channel=_first(data, "channel", "channel_name", default=DEFAULT_CHANNEL),
        chaincode=_first(data, "chaincode", "chaincode_name", default=DEFAULT_CHAINCODE),
        orgs=orgs,
    )


def _organizations_folder(path: Path) -> Path | None:
    for candidate in (path, path / "organizations"):
        if (candidate / "peerOrganizations").is_dir():
            return candidate
    return None


def _load_test_network(organizations: Path, *, channel: str, chaincode: str) -> NetworkProfile:
    """Reads a fabric-samples test-network ``organizations/`` folder (see the module doc)."""
    orgs: dict[str, OrgConnection] = {}
    for org_dir in sorted((organizations / "peerOrganizations").iterdir()):
        if not org_dir.is_dir():
            continue
        domain = org_dir.name  # org1.example.com
        short = domain.split(".")[0]  # org1
        name = short[:1].upper() + short[1:]  # Org1
        peer_name = f"peer0.{domain}"
        endpoint = f"localhost:{TEST_NETWORK_PORTS.get(short, 7051)}"
        tls_path: Path | None = org_dir / "peers" / peer_name / "tls" / "ca.crt"
        if not tls_path.is_file():
            tls_path = org_dir / "tlsca" / f"tlsca.{domain}-cert.pem"
        tls = _read_optional(tls_path if tls_path.is_file() else None)
        connection_file = org_dir / f"connection-{short}.json"
        mspid = f"{name}MSP"
        if connection_file.is_file():
            profile = _load_connection_profile_data(json.loads(connection_file.read_text()), org_dir)
            if profile.orgs:
                found = next(iter(profile.orgs.values()))
                endpoint, mspid = found.endpoint, found.mspid
                tls = found.tls_root_cert or tls
                peer_name = found.server_name_override or peer_name
        msp_dirs = {
            user_dir.name.split("@")[0]: user_dir / "msp"
            for user_dir in sorted((org_dir / "users").glob("*@*"))
            if (user_dir / "msp").is_dir()
        }
        orgs[name] = OrgConnection(name, mspid, endpoint, tls, peer_name, msp_dirs)
    return NetworkProfile(channel=channel, chaincode=chaincode, orgs=orgs)


def _load_connection_profile_data(data: Mapping[str, Any], base: Path) -> NetworkProfile:
    peers = data.get("peers") or {}
    orgs: dict[str, OrgConnection] = {}
    for name, org in (data.get("organizations") or {}).items():
        gateways: list[GatewayEndpoint] = []
        for peer_name in org.get("peers") or ():
            peer = peers.get(peer_name)
            if not peer or "url" not in peer:
                continue
            tls_section = peer.get("tlsCACerts") or {}
            tls: bytes | None = None
            if tls_section.get("pem"):
                tls = tls_section["pem"].encode()
            elif tls_section.get("path"):
                tls = Path(_resolve(base, tls_section["path"]) or "").read_bytes()
            options = peer.get("grpcOptions") or {}
            server_name = options.get("ssl-target-name-override") or options.get("hostnameOverride") or peer_name
            gateways.append(GatewayEndpoint(re.sub(r"^grpcs?://", "", peer["url"]), tls, server_name, org["mspid"]))
        if gateways:
            first = gateways[0]
            orgs[name] = OrgConnection(
                name=name,
                mspid=org["mspid"],
                endpoint=first.address,
                tls_root_cert=first.tls_root_cert if isinstance(first.tls_root_cert, bytes) else None,
                server_name_override=first.server_name_override,
                msp_dirs={},
                other_peers=tuple(gateways[1:]),
            )
    channels = list((data.get("channels") or {}).keys())
    return NetworkProfile(channel=channels[0] if channels else DEFAULT_CHANNEL, chaincode=DEFAULT_CHAINCODE, orgs=orgs)


def load_connection_profile(
    path: Path | str,
    *,
    msp_dirs: Mapping[str, Mapping[str, Path | str]] | None = None,
    channel: str | None = None,
    chaincode: str | None = None,
) -> NetworkProfile:
    """Reads a common connection profile; ``msp_dirs`` maps org name → user → MSP folder."""
    file = Path(path)
    text = file.read_text()
    if file.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:
            raise ImportError("Reading a YAML connection profile needs PyYAML: pip install pyyaml") from error
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    profile = _load_connection_profile_data(data, file.parent)
    orgs = {
        name: OrgConnection(
            org.name,
            org.mspid,
            org.endpoint,
            org.tls_root_cert,
            org.server_name_override,
            {user: Path(p) for user, p in (msp_dirs or {}).get(name, {}).items()},
            org.other_peers,
        )
        for name, org in profile.orgs.items()
    }
    return NetworkProfile(channel or profile.channel, chaincode or profile.chaincode, orgs)


def load_network_dir(
    network_dir: Path | str, *, channel: str | None = None, chaincode: str | None = None
) -> NetworkProfile:
    """Reads ``network.json`` of ``make network-up``, or a test-network ``organizations/``.

    ``channel``/``chaincode`` override what the folder says (a test-network folder says
    neither: defaults are ``mychannel`` and ``fedledger``).
    """
    path = Path(network_dir)
    if path.is_file():
        profile = _load_network_json(path)
    elif (path / "network.json").is_file():
        profile = _load_network_json(path / "network.json")
    elif (organizations := _organizations_folder(path)) is not None:
        profile = _load_test_network(
            organizations,
            channel=channel or DEFAULT_CHANNEL,
            chaincode=chaincode or DEFAULT_CHAINCODE,
        )
    else:
        raise FileNotFoundError(
            f"{path} holds neither network.json (run `make network-up`) nor a test-network "
            "organizations/peerOrganizations folder."
        )
    if not profile.orgs:
        raise ValueError(f"{path} describes no organisation with a peer.")
    return NetworkProfile(channel or profile.channel, chaincode or profile.chaincode, profile.orgs)


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--network-dir``/``--connection-profile``/``--org``/``--user``/``--msp-dir``."""
    group = parser.add_argument_group("Fabric network")
    source = group.add_mutually_exclusive_group()
    source.add_argument(
        "--network-dir",
        type=Path,
        help="run/network of `make network-up`, or a test-network organizations/ folder",
    )
    source.add_argument("--connection-profile", type=Path, help="common connection profile (JSON/YAML)")
    group.add_argument("--org", default="Org1", help="organisation whose peer to use (name or MSP ID)")
    group.add_argument("--user", default="User1", help="user of that organisation to sign as")
    group.add_argument("--msp-dir", type=Path, help="MSP folder of the signing identity (overrides --user)")
    group.add_argument("--channel", help="channel name (default from the profile, else mychannel)")
    group.add_argument("--chaincode", help="chaincode name (default from the profile, else fedledger)")


def backend_from_args(args: argparse.Namespace, **options: Any) -> tuple[NetworkProfile, FabricGatewayBackend]:
    """The profile and a connected backend for arguments added by :func:`add_network_arguments`."""
    if args.connection_profile is not None:
        if args.msp_dir is None:
            raise ValueError("--connection-profile needs --msp-dir: a profile does not say where keys are.")
        profile = load_connection_profile(args.connection_profile, channel=args.channel, chaincode=args.chaincode)
    elif args.network_dir is not None:
        profile = load_network_dir(args.network_dir, channel=args.channel, chaincode=args.chaincode)
    else:
        raise ValueError("Give --network-dir or --connection-profile to use a Fabric network.")
    return profile, profile.connect(args.org, user=args.user, msp_dir=args.msp_dir, **options)
