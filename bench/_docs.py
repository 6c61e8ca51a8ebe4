"""Render docs/BENCHMARKS.md from bench/results.json and bench/peers.json."""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs" / "BENCHMARKS.md"


def render() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Made by `make bench` (rewritten on every run from bench/results.json and",
        "bench/peers.json). Each figure stands beside a floor or a peer measured in the same",
        "run on the same machine (2 cores); `ratio` = value / floor.",
        "",
    ]
    peers_path = HERE / "peers.json"
    if peers_path.exists():
        peers = json.loads(peers_path.read_text())
        t, v, n = peers["timings_us"], peers["qr_versions"], peers["text_lengths"]
        lines += [
            "## Our presentation against the peers, same identity data",
            "",
            "40-character surname and given names, foreigner code, birth date, nationality,",
            "sex, portrait digest, card number, status reference, validity.",
            "",
            "| format | verify (us) | x ours | QR text length | QR version (M) | holder binding |",
            "|---|---:|---:|---:|---:|---|",
            f"| FMC1 id presentation (ours) | {t['ours']:.0f} | 1.0 | {n['ours']} | "
            f"{v['ours']} | device-key proof, renewed every 30 s |",
            f"| SD-JWT VC + key binding (sd-jwt reference implementation) | {t['sd']:.0f} | "
            f"{t['sd'] / t['ours']:.1f} | {n['sd']} | {v['sd']} | KB-JWT (ES256) |",
            f"| COSE_Sign1 CWT, EU DCC style (pycose, zlib, base45) | {t['cose']:.0f} | "
            f"{t['cose'] / t['ours']:.1f} | {n['cose']} | {v['cose']} | none |",
            "",
            "Our figure runs all ten checks (two Ed25519 signatures, status, proof, replay,",
            "policy); SD-JWT's is the reference implementation's signature, disclosure and",
            "key-binding checks (its verifier accepts only ES256 key-binding JWTs); the DCC",
            "figure is base45 + inflate + COSE signature + CBOR, with no holder binding.",
            "",
        ]
    findings = HERE / "findings.md"  # profiles, written by hand (P11)
    if findings.exists():
        lines += [findings.read_text().rstrip(), ""]
    results_path = HERE / "results.json"
    if results_path.exists():
        rows = json.loads(results_path.read_text())
        lines += [
            "## Every row of the last `make bench`",
            "",
            "| name | value | unit | floor / peer | floor value | ratio |",
            "|---|---:|---|---|---:|---:|",
        ]
        lines += [
            f"| {r['name']} | {r['value']:.3f} | {r['unit']} | {r['floor_name']} | "
            f"{r['floor_value']:.3f} | {r['ratio']} |"
            for r in rows
        ]
        lines.append("")
    DOCS.write_text("\n".join(lines))
