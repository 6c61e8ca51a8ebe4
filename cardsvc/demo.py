"""``python -m cardsvc.demo``: the authority on SQLite with a small demo data set (``make run``).

Initialises the data dir if needed, seeds officers of every role, a few foreigners (one
pair that looks like the same person) with cards and provisioning codes, a shop with a
registered terminal, and a cashier's top-up on every card (all through the services, so
the audit log records them); prints the tokens and codes once, with the values that fill
the ``<PLACEHOLDERS>`` of the README's walk-through, and serves.

Example::

    python -m cardsvc.demo --data-dir .data --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import argparse
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cardsvc.db import Database
from cardsvc.logs import configure_logging
from cardsvc.models import Officer, Person
from cardsvc.payments import charges, merchants
from cardsvc.roles import Role
from cardsvc.services import cards, officers, persons
from cardsvc.services.audit import Actor
from cardsvc.services.bootstrap import initialise
from cardsvc.settings import Settings, get_settings

__all__ = ["main", "seed"]


@dataclass(frozen=True)
class _Foreigner:
    surname: str
    given_names: str
    nationality: str
    birth: date
    sex: str
    passport: str
    entitlements: tuple[str, ...]
    colour: tuple[int, int, int]


_FOREIGNERS = (
    _Foreigner("OKONKWO", "Chiamaka Adaeze", "NGA", date(1988, 11, 23), "F", "A07654321",
               ("healthcare", "education", "social_insurance", "public_transport",
                "government_services", "payment"), (176, 120, 90)),
    _Foreigner("AL-HASHIMI", "Mohammed Ibrahim", "YEM", date(1979, 6, 30), "M", "04512877",
               ("healthcare", "government_services", "payment"), (150, 110, 80)),
    # The same name in another transliteration, same nationality and birth date: a
    # registrar decided they are two people (confirm_new); the console shows the pair.
    _Foreigner("AL HASHIMI", "Muhammad Ibrahim", "YEM", date(1979, 6, 30), "M", "07730415",
               ("healthcare", "payment"), (140, 100, 70)),
    _Foreigner("IVANOVA", "Olga Sergeyevna", "RUS", date(1992, 2, 14), "F", "753318204",
               ("healthcare", "public_transport", "payment"), (225, 190, 170)),
    _Foreigner("NGUYỄN", "Văn An", "VNM", date(1985, 7, 1), "M", "C4417825",
               ("healthcare", "education", "payment"), (200, 160, 120)),
    _Foreigner("KHAN", "Imran", "PAK", date(1983, 9, 9), "M", "AB5523871",
               ("healthcare", "social_insurance", "payment"), (160, 120, 90)),
    _Foreigner("SANTOS", "Maria Fernanda", "BRA", date(1990, 12, 5), "F", "FX662013",
               ("healthcare", "education", "payment"), (210, 170, 140)),
)
# A terminal token belongs to a merchant: the demo registers one instead of a bare officer.
_ROLES = tuple(role for role in Role if role is not Role.terminal)
_SHOP = "Demo Shop, Futian Market"
_TERMINAL = "till 1"
_TERMINAL_FLOOR_FEN = 20_000  # 200 yuan per offline payment
_TOP_UP_FEN = 50_000  # 500 yuan paid in at the cashier's desk for every card


@dataclass(frozen=True)
class SeededCard:
    name: str
    foreigner_code: str
    card_number: str
    provisioning_code: str


@dataclass(frozen=True)
class Seeded:
    tokens: dict[Role, str]
    cards: list[SeededCard]
    shop: str
    terminal_token: str

    def walkthrough_values(self, fingerprint: str) -> dict[str, str]:
        """What fills the README walk-through's ``<PLACEHOLDERS>``, by name."""
        first, duplicate = self.cards[0], self.cards[1]
        return {
            "FINGERPRINT": fingerprint,
            "CODE": first.provisioning_code,
            "CARD": first.card_number,
            "FOREIGNER_CODE": first.foreigner_code,
            "DUPLICATE_OF": duplicate.foreigner_code,
            "TERMINAL_TOKEN": self.terminal_token,
            "REGISTRAR_TOKEN": self.tokens[Role.registrar],
            "SUPERVISOR_TOKEN": self.tokens[Role.supervisor],
            "VERIFIER_TOKEN": self.tokens[Role.verifier],
        }


def _portrait(colour: tuple[int, int, int], initials: str) -> bytes:
    """A plain placeholder portrait (head and shoulders) so the counter has a picture."""
    image = Image.new("RGB", (240, 320), (228, 234, 242))
    draw = ImageDraw.Draw(image)
    draw.ellipse((70, 50, 170, 170), fill=colour)
    draw.rounded_rectangle((40, 180, 200, 340), radius=60, fill=(60, 80, 120))
    draw.text((104, 100), initials, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def seed(session: Session, *, settings: Settings, now: datetime) -> Seeded | None:
    """Seed once: returns what to print, or None when the data dir already has people."""
    if session.scalar(select(func.count()).select_from(Person)):
        return None
    actor = Actor.cli()
    tokens: dict[Role, str] = {}
    staff: dict[Role, Officer] = {}
    for role in _ROLES:
        staff[role], tokens[role] = officers.create_officer(
            session, name=f"Demo {role}", roles=[role], actor=actor, now=now)
    shop = merchants.create_merchant(session, name=_SHOP, actor=actor, now=now)
    _, terminal_token = merchants.register_terminal(
        session, merchant_id=shop.id, name=_TERMINAL, offline_floor_fen=_TERMINAL_FLOOR_FEN,
        actor=actor, now=now)
    seeded = []
    for person in _FOREIGNERS:
        outcome = persons.enrol_person(
            session,
            details=persons.PersonDetails(person.surname, person.given_names,
                                          person.nationality, person.birth, person.sex),
            passport=persons.PassportDetails(person.passport, person.nationality,
                                             now.date() + timedelta(days=5 * 365)),
            portrait=_portrait(person.colour, person.surname[0] + person.given_names[0]),
            actor=actor, now=now, confirm_new=True, issuer=settings.issuer,
        )
        issued = cards.issue_card(
            session, foreigner_code=outcome.person.foreigner_code,
            entitlements=person.entitlements, valid_until=now.date() + timedelta(days=3 * 365),
            actor=actor, now=now, offline_limit_fen=settings.default_offline_limit_fen,
            provisioning_ttl_seconds=settings.provisioning_ttl_seconds,
            status_list_size=settings.status_list_size,
        )
        # Paid in at the desk by the demo cashier, as the API's top-up would record it.
        charges.top_up(session, card_number=issued.card.card_number, amount_fen=_TOP_UP_FEN,
                       idempotency_key=f"demo-{issued.card.card_number}",
                       cashier=staff[Role.cashier], now=now)
        seeded.append(SeededCard(f"{person.surname} {person.given_names}",
                                 outcome.person.foreigner_code, issued.card.card_number,
                                 issued.provisioning_code))
    return Seeded(tokens, seeded, shop.name, terminal_token)


def _print_next_steps(settings: Settings, fingerprint: str, admin: str | None,
                      seeded: Seeded | None, data_dir: Path) -> None:
    url = settings.public_base
    line = "-" * 78
    print(line)
    print(f"Foreign Merchant Card authority (demo, SQLite in {data_dir.resolve()})")
    print(f"  API        {url}/v1    docs {url}/docs")
    print(f"  Console    {url}/    (officers: sign in with a token below)")
    print(f"  root fingerprint (pin it in verifiers): {fingerprint}")
    if admin:
        print(f"  admin token (every role; shown once): {admin}")
    if seeded is None:
        print("  demo data was seeded on an earlier run; its tokens and codes were shown then.")
        print("  New officer: .venv/bin/cardsvc officer add --data-dir "
              f"{data_dir} --name NAME --role registrar")
        print("  Start over:  rm -rf " + str(data_dir) + " && make run")
        print(line, flush=True)
        return
    print("\nOfficer tokens (shown once, stored only as hashes):")
    for role, token in seeded.tokens.items():
        print(f"  {role:<11} {token}")
    print(f"\nPayment terminal {_TERMINAL!r} of {seeded.shop!r} (offline floor "
          f"{_TERMINAL_FLOOR_FEN / 100:.2f} yuan): token {seeded.terminal_token}")
    print(f"\nCards waiting for a phone (provisioning codes valid "
          f"{settings.provisioning_ttl_seconds // 3600} h, single use; "
          f"each topped up with {_TOP_UP_FEN / 100:.2f} yuan):")
    for card in seeded.cards:
        print(f"  {card.name:<30} {card.foreigner_code}  card {card.card_number}  "
              f"code {card.provisioning_code}")
    print('\nNext: README.md, "A walk through, by hand", in another terminal. '
          "Its <PLACEHOLDERS> are:")
    for name, value in seeded.walkthrough_values(fingerprint).items():
        print(f"  {'<' + name + '>':<19} {value}")
    print(line, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cardsvc.demo",
                                     description="the authority with demo data (SQLite)")
    parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    import uvicorn

    from cardsvc.api import create_app
    from cardsvc.cli import prepare_to_serve

    data_dir: Path = args.data_dir
    # The demo is always SQLite in the data dir, whatever CARDSVC_DATABASE_URL says.
    settings = get_settings(data_dir=data_dir,
                            database_url=f"sqlite:///{(data_dir / 'cardsvc.db').resolve()}",
                            public_url=f"http://{args.host}:{args.port}")
    now = datetime.now(UTC)
    result = initialise(settings, now=now)
    if result.passphrase_file is not None:
        print(f"warning: key passphrase written to {result.passphrase_file} "
              "(development only; set CARDSVC_KEY_PASSPHRASE in production)")
    fingerprint = prepare_to_serve(settings)
    database = Database.from_settings(settings)
    try:
        seeded = database.transact(lambda session: seed(session, settings=settings, now=now))
    finally:
        database.dispose()
    _print_next_steps(settings, fingerprint, result.admin_token, seeded, data_dir)
    configure_logging("text")  # a person reads the demo's terminal
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
