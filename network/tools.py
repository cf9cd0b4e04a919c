"""Helpers the network scripts call for what plain shell does badly.

    python network/tools.py patch-core SRC DST BUILDER_DIR
    python network/tools.py issue-tls CA_CERT CA_KEY OUT_DIR HOSTNAME
    python network/tools.py ccaas-package OUT LABEL ADDRESS ROOT_CERT CLIENT_CERT CLIENT_KEY
    python network/tools.py package-id PACKAGE LABEL
    python network/tools.py add-org-update CONFIG_BLOCK ORG_BLOCK MSPID CHANNEL OUT
    python network/tools.py network-json RUN_DIR ORG_NUMBERS...
    python network/tools.py wait-endorsable RUN_DIR [TIMEOUT_SECONDS]

Only the standard library, ``cryptography`` and (for add-org-update) ``fabric_protos``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import ipaddress
import json
import logging
import os
import re
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

from fedledger.chaincode.names import CONTRACT_NAME, DEFAULT_CHANNEL

LOG = logging.getLogger("fedledger.network")
HOST = "127.0.0.1"


# --- core.yaml -------------------------------------------------------------------------------


def patch_core(src: Path, dst: Path, builder_dir: Path) -> None:
    """Copies Fabric's sampleconfig core.yaml with the overrides env vars cannot express.

    ``vm.endpoint`` must be the empty string (an empty CORE_VM_ENDPOINT is ignored), otherwise the
    peer registers a Docker health check that fails /healthz. ``chaincode.externalBuilders`` is a
    list, which is set here to our own ccaas builder only.
    """
    text = src.read_text()
    text, n_vm = re.subn(r"(?m)^(vm:\n(?:[ \t]*#.*\n|[ \t]*\n)*[ \t]+endpoint:).*$", r'\1 ""', text)
    builders = (
        "    externalBuilders:\n"
        "       - name: fedledger_ccaas\n"
        f"         path: {builder_dir}\n"
        "         propagateEnvironment: []\n"
    )
    text, n_eb = re.subn(r"(?m)^    externalBuilders:.*\n(?:^       .*\n|^\s*\n)*", builders + "\n", text, count=1)
    if n_vm != 1 or n_eb != 1:
        raise SystemExit(f"core.yaml layout not recognised (vm.endpoint: {n_vm}, externalBuilders: {n_eb})")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text)


# --- TLS for the chaincode servers -----------------------------------------------------------


def issue_tls(ca_cert: Path, ca_key: Path, out_dir: Path, hostname: str) -> None:
    """Issues a server+client TLS certificate for ``hostname`` from an org's TLS CA (P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca_key} is not an EC private key; Fabric's TLS CAs here are P-256")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(hostname),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address(HOST)),
                ]
            ),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (out_dir / "server.key").write_bytes(key_pem)
    os.chmod(out_dir / "server.key", 0o600)
    (out_dir / "ca.crt").write_bytes(ca_cert.read_bytes())


# --- chaincode package -----------------------------------------------------------------------


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    """A gzip'd tar with fixed metadata, so identical inputs give an identical package ID."""
    buf = io.BytesIO()
    import gzip

    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ccaas_package(out: Path, label: str, address: str, root_cert: Path, client_cert: Path, client_key: Path) -> None:
    """Writes a chaincode-as-a-service package: metadata.json + code.tar.gz{connection.json}.

    The peer dials ``address`` with mutual TLS: it checks the server against ``root_cert`` and
    presents ``client_cert``/``client_key``. ``tls_required`` must be a JSON boolean.
    """
    connection = {
        "address": address,
        "dial_timeout": "10s",
        "tls_required": True,
        "client_auth_required": True,
        "root_cert": root_cert.read_text(),
        "client_key": client_key.read_text(),
        "client_cert": client_cert.read_text(),
    }
    code = _tar_bytes({"connection.json": json.dumps(connection, indent=2, sort_keys=True).encode()})
    metadata = json.dumps({"label": label, "type": "ccaas"}, sort_keys=True).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(_tar_bytes({"code.tar.gz": code, "metadata.json": metadata}))


def package_id(package: Path, label: str) -> str:
    """Fabric's package ID: ``label:hex(sha256(package bytes))``."""
    return f"{label}:{hashlib.sha256(package.read_bytes()).hexdigest()}"


# --- add-org config update -------------------------------------------------------------------


def _block_config(path: Path):  # -> configtx_pb2.Config
    from fabric_protos.common import common_pb2, configtx_pb2

    block = common_pb2.Block.FromString(path.read_bytes())
    envelope = common_pb2.Envelope.FromString(block.data.data[0])
    payload = common_pb2.Payload.FromString(envelope.payload)
    return configtx_pb2.ConfigEnvelope.FromString(payload.data).config


def _compute_group_update(original, updated):  # port of configtxlator's compute_update
    from fabric_protos.common import configtx_pb2 as ctx

    def maps(kind: str, orig_map, upd_map, make_read, differs):
        read, write, same, members_updated = {}, {}, {}, False
        for name, orig in orig_map.items():
            if name not in upd_map:
                members_updated = True
                continue
            upd = upd_map[name]
            if kind == "groups":
                g_read, g_write, g_updated = _compute_group_update(orig, upd)
                if g_updated:
                    read[name], write[name] = g_read, g_write
                else:
                    same[name] = g_read
            elif differs(orig, upd):
                write[name] = make_read(upd, orig.version + 1)
            else:
                same[name] = make_read(None, orig.version)
        for name, upd in upd_map.items():
            if name in orig_map:
                continue
            members_updated = True
            if kind == "groups":
                _, g_write, _ = _compute_group_update(ctx.ConfigGroup(), upd)
                write[name] = ctx.ConfigGroup(
                    version=0,
                    mod_policy=upd.mod_policy,
                    policies=g_write.policies,
                    values=g_write.values,
                    groups=g_write.groups,
                )
            else:
                write[name] = make_read(upd, 0)
        return read, write, same, members_updated

    def policy(src, version):
        if src is None:
            return ctx.ConfigPolicy(version=version)
        return ctx.ConfigPolicy(version=version, mod_policy=src.mod_policy, policy=src.policy)

    def value(src, version):
        if src is None:
            return ctx.ConfigValue(version=version)
        return ctx.ConfigValue(version=version, mod_policy=src.mod_policy, value=src.value)

    def differs(a, b) -> bool:
        return a.SerializeToString(deterministic=True) != b.SerializeToString(deterministic=True)

    pr, pw, ps, pu = maps(
        "policies",
        original.policies,
        updated.policies,
        policy,
        lambda a, b: a.mod_policy != b.mod_policy or differs(a.policy, b.policy),
    )
    vr, vw, vs, vu = maps(
        "values",
        original.values,
        updated.values,
        value,
        lambda a, b: a.mod_policy != b.mod_policy or a.value != b.value,
    )
    gr, gw, gs, gu = maps("groups", original.groups, updated.groups, None, None)

    if not (pu or vu or gu or original.mod_policy != updated.mod_policy):
        if not (pr or pw or vr or vw or gr or gw):
            return ctx.ConfigGroup(version=original.version), ctx.ConfigGroup(version=original.version), False
        return (
            ctx.ConfigGroup(version=original.version, policies=pr, values=vr, groups=gr),
            ctx.ConfigGroup(version=original.version, policies=pw, values=vw, groups=gw),
            True,
        )
    for src, r, w in ((ps, pr, pw), (vs, vr, vw), (gs, gr, gw)):
        for name, same in src.items():
            r[name] = same
            w[name] = same
    return (
        ctx.ConfigGroup(version=original.version, policies=pr, values=vr, groups=gr),
        ctx.ConfigGroup(version=original.version + 1, policies=pw, values=vw, groups=gw, mod_policy=updated.mod_policy),
        True,
    )


def add_org_update(config_block: Path, org_block: Path, mspid: str, channel: str, out: Path) -> None:
    """Writes an unsigned CONFIG_UPDATE envelope adding ``mspid``'s group (taken from a block that
    configtxgen rendered for it) to the channel's Application group."""
    from fabric_protos.common import common_pb2, configtx_pb2

    current = _block_config(config_block)
    org_group = _block_config(org_block).channel_group.groups["Application"].groups[mspid]
    if mspid in current.channel_group.groups["Application"].groups:
        raise SystemExit(f"{mspid} is already a member of {channel}")
    updated = configtx_pb2.Config()
    updated.CopyFrom(current)
    updated.channel_group.groups["Application"].groups[mspid].CopyFrom(org_group)

    read_set, write_set, changed = _compute_group_update(current.channel_group, updated.channel_group)
    assert changed
    update = configtx_pb2.ConfigUpdate(channel_id=channel, read_set=read_set, write_set=write_set)
    update_envelope = configtx_pb2.ConfigUpdateEnvelope(config_update=update.SerializeToString())
    channel_header = common_pb2.ChannelHeader(type=common_pb2.CONFIG_UPDATE, channel_id=channel)
    payload = common_pb2.Payload(
        header=common_pb2.Header(channel_header=channel_header.SerializeToString()),
        data=update_envelope.SerializeToString(),
    )
    out.write_bytes(common_pb2.Envelope(payload=payload.SerializeToString()).SerializeToString())


def block_orgs(config_block: Path) -> list[str]:
    return sorted(_block_config(config_block).channel_group.groups["Application"].groups)


# --- network.json ----------------------------------------------------------------------------


def ports(offset: int = 0) -> dict[str, Callable[[int], int]]:
    """The port table of network/lib.sh (keep the two in step)."""
    return {
        "orderer": lambda i: offset + 7050 + (i - 1) * 100,
        "orderer_admin": lambda i: offset + 7053 + (i - 1) * 100,
        "orderer_ops": lambda i: offset + 9443 + i - 1,
        "peer": lambda n: offset + 5051 + n * 2000,
        "peer_ops": lambda n: offset + 9445 + n,
        "ccserver": lambda n: offset + 5999 + n * 2000,
    }


def network_json(run: Path, orgs: list[int], *, port_offset: int = 0) -> dict:
    """The machine-readable description of the running network for SDK clients and tests."""
    organizations = run / "organizations"
    port = ports(port_offset)

    def peer_org(n: int) -> dict:
        domain = f"org{n}.example.com"
        base = organizations / "peerOrganizations" / domain
        return {
            "mspid": f"Org{n}MSP",
            "peer": {
                "name": f"peer0.{domain}",
                "endpoint": f"{HOST}:{port['peer'](n)}",
                "tls_host_override": f"peer0.{domain}",
                "tls_root_cert": str(base / "tlsca" / f"tlsca.{domain}-cert.pem"),
                "operations": f"http://{HOST}:{port['peer_ops'](n)}",
            },
            "chaincode_server": f"{HOST}:{port['ccserver'](n)}",
            "users": {
                user: {
                    "msp_dir": str(base / "users" / f"{user}@{domain}" / "msp"),
                    "tls_dir": str(base / "users" / f"{user}@{domain}" / "tls"),
                }
                for user in ("Admin", "User1")
            },
        }

    orderer_base = organizations / "ordererOrganizations" / "example.com"
    return {
        "channel": DEFAULT_CHANNEL,
        "chaincode": CONTRACT_NAME,
        "endorsement_policy": "MAJORITY Endorsement (/Channel/Application/Endorsement)",
        "organizations": {f"Org{n}MSP": peer_org(n) for n in orgs},
        "orderers": [
            {
                "name": f"orderer{i}.example.com",
                "endpoint": f"{HOST}:{port['orderer'](i)}",
                "admin": f"{HOST}:{port['orderer_admin'](i)}",
                "operations": f"http://{HOST}:{port['orderer_ops'](i)}",
                "tls_host_override": f"orderer{i}.example.com",
                "tls_root_cert": str(orderer_base / "tlsca" / "tlsca.example.com-cert.pem"),
            }
            for i in (1, 2, 3)
        ],
    }


def wait_endorsable(run: Path, timeout: float = 90.0) -> None:
    """Returns once every org's gateway can plan an endorsement of the chaincode by all orgs.

    Peers learn about each other through gossip some seconds after they start; until then a gateway
    answers "failed to find any endorsing peers for org(s)". A proposal for an unknown function that
    comes back as the contract's own NOT_FOUND error proves the whole path works.
    """
    import time

    from fedledger.chaincode.errors import ContractError
    from fedledger.identity import load_msp_identity
    from fedledger.sdk.backend import Proposal
    from fedledger.sdk.errors import EndorseError
    from fedledger.sdk.fabric.profile import load_network_dir

    profile = load_network_dir(run)
    orgs = list(profile.orgs.values())
    deadline = time.monotonic() + timeout
    for org in orgs:
        backend = org.backend(*load_msp_identity(org.msp_dir("Admin"), org.mspid))
        try:
            while True:
                proposal = Proposal(profile.channel, profile.chaincode, "__ping__", (), {}, [o.mspid for o in orgs])
                try:
                    backend.endorse(proposal)
                except ContractError:
                    break
                except EndorseError as exc:
                    if time.monotonic() > deadline:
                        message = f"{org.mspid}'s gateway still cannot endorse after {timeout} s: {exc}"
                        raise SystemExit(message) from None
                    time.sleep(0.2)
        finally:
            backend.close()
        LOG.info("%s: endorsements by %s can be planned", org.mspid, ", ".join(o.mspid for o in orgs))


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "patch-core":
        patch_core(Path(args[0]), Path(args[1]), Path(args[2]))
    elif cmd == "issue-tls":
        issue_tls(Path(args[0]), Path(args[1]), Path(args[2]), args[3])
    elif cmd == "ccaas-package":
        ccaas_package(Path(args[0]), args[1], args[2], Path(args[3]), Path(args[4]), Path(args[5]))
    elif cmd == "package-id":
        print(package_id(Path(args[0]), args[1]))
    elif cmd == "add-org-update":
        add_org_update(Path(args[0]), Path(args[1]), args[2], args[3], Path(args[4]))
    elif cmd == "block-orgs":
        print(" ".join(block_orgs(Path(args[0]))))
    elif cmd == "wait-endorsable":
        wait_endorsable(Path(args[0]), float(args[1]) if len(args) > 1 else 90.0)
    elif cmd == "network-json":
        run = Path(args[0]).resolve()
        offset = int(os.environ.get("FEDLEDGER_PORT_OFFSET", "0"))
        doc = network_json(run, [int(n) for n in args[1:]], port_offset=offset)
        tmp = run / "network.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        tmp.replace(run / "network.json")
    else:
        print(f"unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
