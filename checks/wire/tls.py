"""The registrar's TLS certificate as evidence: subject, SAN, issuer, validity (cryptography)."""

from __future__ import annotations

import datetime as dt
import hashlib
import ssl
from typing import Any


def certificate_details(
    der: bytes | None, verified: bool, verify_error: str | None, now: float
) -> dict[str, Any]:
    """What a support engineer needs to see of the peer's certificate, for the report."""
    info: dict[str, Any] = {
        "subject": None,
        "subject_cn": None,
        "san": [],
        "issuer": None,
        "self_signed": None,
        "not_before": None,
        "not_after": None,
        "days_left": None,
        "sha256": hashlib.sha256(der).hexdigest() if der else None,
        "verified": verified,
        "verify_error": verify_error,
    }
    if not der:
        return info
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return info
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        san_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        kinds: dict[type, str] = {
            x509.DNSName: "DNS",
            x509.IPAddress: "IP",
            x509.UniformResourceIdentifier: "URI",
        }
        # In the certificate's own order, as a support engineer would see it with openssl.
        san = [f"{kinds.get(type(n), type(n).__name__)}:{n.value}" for n in san_ext]
    except x509.ExtensionNotFound:
        san = []
    not_after = cert.not_valid_after_utc
    info.update(
        subject=cert.subject.rfc4514_string(),
        subject_cn=str(cn[0].value) if cn else None,
        san=san,
        issuer=cert.issuer.rfc4514_string(),
        self_signed=cert.subject == cert.issuer,
        not_before=_stamp(cert.not_valid_before_utc),
        not_after=_stamp(not_after),
        days_left=int((not_after.timestamp() - now) // 86400),
    )
    return info


def peer_chain(tls: ssl.SSLSocket) -> list[bytes]:
    """The certificates the server sent, leaf first, as DER (whether or not they verified)."""
    public = getattr(tls, "get_unverified_chain", None)  # Python 3.13+
    if public is not None:
        return [bytes(c) for c in public()]
    private = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)  # 3.10-3.12
    if private is None:
        return []
    import _ssl

    return [c.public_bytes(_ssl.ENCODING_DER) for c in (private() or [])]


def chain_details(chain: list[bytes]) -> list[dict[str, Any]]:
    """Subject, issuer and expiry of each certificate the server sent, leaf first."""
    from cryptography import x509

    out: list[dict[str, Any]] = []
    for der in chain:
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            out.append({"subject": None, "issuer": None, "not_after": None})
            continue
        out.append(
            {
                "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(),
                "not_after": _stamp(cert.not_valid_after_utc),
            }
        )
    return out


def _stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
