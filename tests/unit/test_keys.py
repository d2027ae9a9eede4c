"""ed25519 keys: deterministic derivation, signing, verification, key files."""

import json
import stat
from pathlib import Path

import blake3
import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devnet.address import decode_address, spawn_address, template_address
from devnet.errors import DevnetError, KeyFileError
from devnet.keys import (
    KeyPair,
    derive_test_key,
    dumps_key_file,
    load_key_file,
    loads_key_file,
    save_key_file,
    verify,
    wallet_address,
)

WALLET = template_address(b"wallet template")


def test_test_keys_are_deterministic_and_distinct() -> None:
    a0 = derive_test_key("devnet", 0)
    assert a0 == derive_test_key("devnet", 0)
    assert a0.seed == blake3.blake3(b"devnet:0").digest()
    assert a0.public_key == bytes(nacl.signing.SigningKey(a0.seed).verify_key)
    others = {derive_test_key("devnet", i).public_key for i in range(1, 5)}
    others.add(derive_test_key("other", 0).public_key)
    assert a0.public_key not in others and len(others) == 5
    with pytest.raises(KeyFileError):
        derive_test_key("devnet", -1)


def test_repr_hides_the_private_key() -> None:
    key = derive_test_key("devnet", 0)
    assert key.seed.hex() not in repr(key)


def test_bad_seed() -> None:
    with pytest.raises(KeyFileError):
        KeyPair.from_seed(bytes(31))
    assert issubclass(KeyFileError, DevnetError)


@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=200))
def test_sign_verify(seed: bytes, message: bytes) -> None:
    key = KeyPair.from_seed(seed)
    sig = key.sign(message)
    assert len(sig) == 64
    assert verify(key.public_key, message, sig)
    assert not verify(key.public_key, message + b"x", sig)
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify(key.public_key, message, flipped)


def test_verify_never_raises_on_garbage() -> None:
    key = derive_test_key("devnet", 1)
    sig = key.sign(b"m")
    assert not verify(key.public_key[:31], b"m", sig)
    assert not verify(key.public_key, b"m", sig[:63])
    assert not verify(b"\xff" * 32, b"m", sig)


def test_generate_is_random() -> None:
    assert KeyPair.generate().seed != KeyPair.generate().seed


def test_wallet_address() -> None:
    key = derive_test_key("devnet", 2)
    assert key.wallet_address(WALLET) == spawn_address(WALLET, key.public_key)
    assert wallet_address(key.public_key, WALLET)[:4] == bytes(4)
    with pytest.raises(KeyFileError):
        wallet_address(bytes(31), WALLET)


def test_key_file_round_trip(tmp_path: Path) -> None:
    key = derive_test_key("devnet", 3)
    address = key.wallet_address(WALLET)
    path = tmp_path / "alice.json"
    save_key_file(path, key, address)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert doc["private_key"] == key.seed.hex()
    assert doc["public_key"] == key.public_key.hex()
    assert decode_address(doc["address"]) == address
    loaded = load_key_file(path)
    assert loaded.key == key and loaded.address == address
    save_key_file(path, key)
    assert load_key_file(path).address is None


def test_key_file_accepts_go_layout() -> None:
    key = derive_test_key("devnet", 4)
    doc = json.loads(dumps_key_file(key))
    doc["private_key"] = (key.seed + key.public_key).hex()
    assert loads_key_file(json.dumps(doc)).key == key


def _doc(**changes: object) -> str:
    key = derive_test_key("devnet", 5)
    doc = json.loads(dumps_key_file(key, key.wallet_address(WALLET)))
    doc.update(changes)
    return json.dumps(doc)


OTHER = derive_test_key("devnet", 6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        (_doc(version=2), "version"),
        (_doc(private_key="zz"), "not valid hex"),
        (_doc(private_key=7), "hex string"),
        (_doc(private_key="00" * 31), "32 or 64"),
        (_doc(public_key=OTHER.public_key.hex()), "does not match"),
        (_doc(private_key=(derive_test_key("devnet", 5).seed + bytes(32)).hex()), "end with"),
        (_doc(address="sm1qqqqqqqpqgpsgpgxquyqjzstpsxsurcszyfpx9qtkr9er"), "network 'sm'"),
        (_doc(address=5), "string or null"),
    ],
)
def test_key_file_rejections(text: str, message: str) -> None:
    with pytest.raises(KeyFileError, match=message):
        loads_key_file(text)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read"):
        load_key_file(tmp_path / "absent.json")


def test_deeply_nested_json_is_a_key_file_error() -> None:
    with pytest.raises(KeyFileError, match="not JSON"):
        loads_key_file("[" * 100_000)


@given(
    text=st.one_of(
        st.text(max_size=200),
        st.dictionaries(
            st.sampled_from(["version", "private_key", "public_key", "address"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=70), st.just(1)),
        ).map(json.dumps),
    )
)
def test_random_key_files_raise_only_key_file_error(text: str) -> None:
    try:
        loads_key_file(text)
    except KeyFileError:
        pass
