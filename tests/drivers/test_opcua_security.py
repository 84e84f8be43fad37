"""OPC UA security: Basic256Sha256 with a trust list, over real sockets.

Certificates are generated into a temporary folder for the test; the server and the
trusted client are configured the way a plant file does it (paths relative to it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.plant import load_plant
from drivers import DevicePool, Disconnected, DriverError, ProfileError
from simulators.bioreactor.certs import make_certificates
from simulators.launch import start_simulators

PROFILE = "rocking_bioreactor_opcua"
PLANT = """
[plant]
mode = "simulation"

[[simulators]]
name = "secure"
kind = "opcua-bioreactor"
listen = "opc.tcp://127.0.0.1:0/sec"
vessels = ["BR-S"]

[simulators.security]
certificate = "pki/server-cert.der"
private_key = "pki/server-key.pem"
trusted = "pki/trusted"
policies = ["Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]
users = { operator = "s3cret" }

[[units]]
name = "BR-S"
class = "rocking_bioreactor"
profile = "rocking_bioreactor_opcua"
endpoint = "opc.tcp://127.0.0.1:0/sec"
address = { vessel = "BR-S" }

[units.connection]
security_policy = "Basic256Sha256"
security_mode = "SignAndEncrypt"
certificate = "pki/client-cert.der"
private_key = "pki/client-key.pem"
identity = "username"
username = "operator"
password_env = "CELLBATCH_TEST_OPCUA_PASSWORD"
"""


def _connection(cert: Path, key: Path, mode: str = "SignAndEncrypt") -> dict[str, object]:
    return {
        "security_policy": "Basic256Sha256",
        "security_mode": mode,
        "certificate": str(cert),
        "private_key": str(key),
    }


@pytest.mark.slow
async def test_trusted_client_reads_and_writes_untrusted_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = make_certificates(tmp_path / "pki", untrusted=True)
    assert certs.rogue_cert is not None and certs.rogue_key is not None
    (tmp_path / "plant.toml").write_text(PLANT, encoding="utf-8")
    plant = load_plant(tmp_path / "plant.toml")
    monkeypatch.setenv("CELLBATCH_TEST_OPCUA_PASSWORD", "s3cret")
    sims = await start_simulators(plant.simulators, 1.0)
    server = sims.servers["secure"]
    try:
        # A trusted client under SignAndEncrypt, logged in as a user: reads and writes.
        pool = DevicePool(timeout=2.0)
        try:
            unit = plant.unit("BR-S")
            device = pool.open(
                unit.name, unit.profile, server.endpoint, unit.address, unit.connection
            )
            await device.connect()
            assert await device.write("temperature.sp", 36.5) == 36.5
            (reading,) = await device.read(["temperature.sp"])
            assert reading.value == 36.5
        finally:
            await pool.close()

        # Certificate identity under Sign.
        pool = DevicePool(timeout=2.0)
        try:
            conn = _connection(certs.client_cert, certs.client_key, "Sign") | {
                "identity": "certificate"
            }
            device = pool.open("BR-S", PROFILE, server.endpoint, {"vessel": "BR-S"}, conn)
            await device.connect()
            (reading,) = await device.read(["temperature.sp"])
            assert reading.value == 36.5
        finally:
            await pool.close()

        # An untrusted certificate is refused with a typed error (a refusal, not a timeout).
        pool = DevicePool(timeout=2.0)
        try:
            conn = _connection(certs.rogue_cert, certs.rogue_key)
            device = pool.open("BR-S", PROFILE, server.endpoint, {"vessel": "BR-S"}, conn)
            with pytest.raises(Disconnected):
                await device.connect()
        finally:
            await pool.close()

        # A wrong password is refused too; no security at all finds no endpoint.
        for conn in (
            _connection(certs.client_cert, certs.client_key)
            | {"identity": "username", "username": "operator", "password": "wrong"},
            {},
        ):
            pool = DevicePool(timeout=2.0)
            try:
                device = pool.open("BR-S", PROFILE, server.endpoint, {"vessel": "BR-S"}, conn)
                with pytest.raises(DriverError):
                    await device.connect()
                    await device.read(["temperature.sp"])
            finally:
                await pool.close()
    finally:
        await sims.stop()


def test_bad_security_settings_name_the_key(tmp_path: Path) -> None:
    pool = DevicePool()
    with pytest.raises(ProfileError, match="security_mode"):
        pool.open(
            "X",
            PROFILE,
            "opc.tcp://127.0.0.1:9/x",
            {"vessel": "X"},
            {"security_policy": "Basic256Sha256", "security_mode": "Encrypt"},
        )
    with pytest.raises(ProfileError, match="certificate"):
        pool.open(
            "X",
            PROFILE,
            "opc.tcp://127.0.0.1:9/x",
            {"vessel": "X"},
            {"security_policy": "Basic256Sha256"},
        )
    with pytest.raises(ProfileError, match="not a file"):
        pool.open(
            "X",
            PROFILE,
            "opc.tcp://127.0.0.1:9/x",
            {"vessel": "X"},
            {
                "security_policy": "Basic256Sha256",
                "certificate": str(tmp_path / "no"),
                "private_key": str(tmp_path / "no"),
            },
        )
