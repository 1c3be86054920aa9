"""Where integration tests get a real Kafka broker from.

In order: ``KAFKA_BOOTSTRAP_SERVERS`` when set (an existing cluster); testcontainers'
Kafka module when a Docker engine answers; else Apache Kafka from Maven Central jars,
started by ``deploy/kafka/kafka.sh`` on a free port for this test session only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from cayg_campaign.processes import KAFKA_SH, REPO_ROOT, LocalBroker, free_port

__all__ = [
    "KAFKA_SH",
    "REPO_ROOT",
    "SecuredBroker",
    "free_port",
    "kafka_broker",
    "secured_kafka_broker",
]


def _docker_answers() -> bool:
    if shutil.which("docker") is None and not os.environ.get("DOCKER_HOST"):
        return False
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False
    return True


@contextlib.contextmanager
def kafka_broker(workdir: Path) -> Iterator[str]:
    """Yield a bootstrap address for a real broker, stopping it afterwards if we started it."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with LocalBroker(workdir) as broker:
        yield broker.bootstrap


@dataclasses.dataclass(frozen=True)
class SecuredBroker:
    """A local broker with a SCRAM-SHA-512 user on SASL_PLAINTEXT and SASL_SSL listeners
    (and the PLAINTEXT one it uses itself)."""

    plaintext: str
    sasl_plaintext: str
    sasl_ssl: str
    username: str
    password_file: Path
    #: The CA that signed the broker's certificate (clients trust it for SASL_SSL).
    cafile: Path


def _broker_certificates(directory: Path) -> tuple[Path, Path]:
    """A throwaway CA and a broker certificate for 127.0.0.1/localhost, signed by it:
    (the CA's certificate, a PEM keystore with the broker's key and certificate chain)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cayg test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cafile = directory / "ca.pem"
    cafile.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    keystore = directory / "broker-keystore.pem"
    keystore.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
        + ca.public_bytes(serialization.Encoding.PEM)
    )
    return cafile, keystore


@contextlib.contextmanager
def secured_kafka_broker(workdir: Path) -> Iterator[SecuredBroker]:
    """Start a broker of its own (always from the local jars: the listeners and the SCRAM
    user are set when its storage is formatted) and stop it afterwards."""
    cafile, keystore = _broker_certificates(workdir / "tls")
    password_file = workdir / "scram-password"
    password_file.write_text(secrets.token_hex(16))
    username = "cayg-operator"
    port = free_port(pairs=2)
    sasl_port, ssl_port = free_port(), free_port()
    run_dir = workdir / f"kafka-secured-{port}"
    command = [
        "bash", str(KAFKA_SH), "start", "--port", str(port), "--dir", str(run_dir),
        "--sasl-port", str(sasl_port), "--scram-user", username,
        "--scram-password-file", str(password_file),
        "--ssl-port", str(ssl_port), "--ssl-keystore", str(keystore),
    ]  # fmt: skip
    started = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        raise RuntimeError(f"local secured Kafka did not start:\n{started.stderr}")
    try:
        yield SecuredBroker(
            plaintext=f"127.0.0.1:{port}",
            sasl_plaintext=f"127.0.0.1:{sasl_port}",
            sasl_ssl=f"127.0.0.1:{ssl_port}",
            username=username,
            password_file=password_file,
            cafile=cafile,
        )
    finally:
        subprocess.run(
            ["bash", str(KAFKA_SH), "stop", "--dir", str(run_dir)],
            check=False,
            capture_output=True,
            timeout=120,
        )
