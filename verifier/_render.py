"""Human-readable output of the CLI (rich): the verdict, the reason, the disclosed fields."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from verifier._outside_text import outside
from verifier.checkpoint import CheckOutcome
from verifier.federation_sync import FederationSyncReport
from verifier.messages import (
    ENTITLEMENT_NAMES,
    FIELD_LABELS,
    SCAN_AGAIN,
    SERVICE_NAMES,
    Bilingual,
    reason,
    verdict,
)
from verifier.sync import SyncReport


def _inline(text: Bilingual, lang: str | None) -> str:
    if lang in ("en", "zh"):
        return text.pick(lang)
    return f"{text.en} / {text.zh}"


def _label(name: str, lang: str | None) -> str:
    return _inline(FIELD_LABELS[name], lang)


def _entitlement(value: str, lang: str | None) -> str:
    name = ENTITLEMENT_NAMES.get(value)
    if name is None:
        return value
    return name.pick(lang) if lang in ("en", "zh") else f"{name.en} {name.zh}"


def age_words(seconds: int) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``40 s``: short enough to read at a glance."""
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86_400
    if days:
        return f"{days} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes % 60} min"
    return f"{minutes} min"


def when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_outcome(console: Console, outcome: CheckOutcome, lang: str | None) -> None:
    ok = outcome.ok
    rescan = outcome.scan_error is not None  # no code read: neither accepted nor refused
    word = SCAN_AGAIN if rescan else verdict(ok)
    headline = Text(justify="center")
    mark = "  ↻  " if rescan else ("  ✔  " if ok else "  ✘  ")
    style = "yellow" if rescan else ("green" if ok else "red")
    headline.append(mark + _inline(word, lang) + "  ", style=f"bold black on {style}" if rescan
                    else f"bold white on {style}")
    plain = reason(outcome.code)
    why = Text(plain.pick(lang), style="bold")
    console.print(Panel(Group(headline, Text(""), why), border_style=style, padding=(1, 2),
                        title=outside(outcome.code), title_align="right"))

    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    service = SERVICE_NAMES.get(outcome.policy.service)
    service_text = _inline(service, lang) if service else outside(outcome.policy.service)
    table.add_row(_label("service", lang), service_text)
    asked = outcome.policy.entitlement
    table.add_row(_label("asked", lang),
                  outside(_entitlement(asked.value, lang) if asked
                          else f"{outcome.policy.purpose} code"))
    credential = outcome.result.credential
    issuer = outcome.result.issuer_json()  # only once the signature passed
    if issuer is not None:
        names = [n for n in ((issuer["name_zh"], issuer["name_en"]) if lang != "en" else
                             (issuer["name_en"],)) if n] if lang != "zh" else (
            [issuer["name_zh"]] if issuer["name_zh"] else [])
        table.add_row(_label("issuer", lang),
                      outside(" ".join([*names, f"({issuer['code']})"]) if names
                              else str(issuer["code"])))
    if ok and credential is not None:
        if credential.surname is not None:
            table.add_row(_label("name", lang),
                          outside(f"{credential.surname}, {credential.given_names}", "bold"))
            table.add_row(_label("foreigner_code", lang),
                          outside(credential.foreigner_code, "bold"))
            table.add_row(_label("nationality", lang), outside(credential.nationality))
            table.add_row(_label("birth_date", lang), outside(credential.birth_date))
            table.add_row(_label("sex", lang), outside(credential.sex))
        granted = [_entitlement(e.value, lang) for e in credential.granted_entitlements]
        table.add_row(_label("entitlements", lang), outside(", ".join(granted) or "-"))
        table.add_row(_label("card", lang), outside(credential.card_number))
        if credential.portrait_digest is not None:
            table.add_row(_label("portrait", lang),
                          "in cache (shown by `verifier serve`)" if outcome.portrait
                          else _inline(FIELD_LABELS["no_portrait"], lang))
    elif outcome.result.detail:
        table.add_row("detail", outside(outcome.result.detail))
    age = Text(f"{when(outcome.synced_at)} ({age_words(outcome.cache_age_seconds)} ago),"
               f" trust list v{outcome.trust_list_version}")
    if outcome.code in ("TRUST_LIST_STALE", "STATUS_UNAVAILABLE"):
        age.stylize("bold red")
    table.add_row(_label("cache_age", lang), age)
    if outcome.cache_fallback:
        table.add_row("", Text("current cache damaged: the previous good one was used",
                               style="bold yellow"))
    console.print(table)


def render_sync(console: Console, report: SyncReport) -> None:
    changed = "updated" if report.trust_list_updated else "unchanged"
    console.print(outside(f"Synced from {report.server}", "bold green"))
    console.print(outside(f"  trust list v{report.trust_list_version} ({changed}),"
                          f" valid until {when(report.trust_list_expires_at)}"))
    for list_id, state in report.status_lists.items():
        console.print(outside(f"  status list {list_id}: {state}"))
    for list_id in report.removed_status_lists:
        console.print(outside(f"  status list {list_id}: no longer published, removed"))
    if report.timestamp_version is not None:
        console.print(f"  signed timestamp v{report.timestamp_version}")
    console.print(f"  {report.bytes_received} bytes of signed lists received")


def render_federation_sync(console: Console, report: FederationSyncReport) -> None:
    changed = "updated" if report.federation_updated else "unchanged"
    console.print(outside(f"Synced nationally from {report.federation_source}", "bold green"))
    console.print(outside(f"  federation list v{report.federation_version} ({changed}),"
                          f" valid until {when(report.federation_expires_at)}"))
    for code, city in report.cities.items():
        lists = ", ".join(f"{list_id} {state}" for list_id, state in city.lists.items())
        line = f"  {code} ({city.state}): {city.outcome}" + (f" [{lists}]" if lists else "")
        console.print(outside(line, "yellow" if city.outcome == "kept" else ""))
        if city.error:
            console.print(outside(f"    {city.error}", "dim"))
    console.print(f"  {report.bytes_received} bytes of signed lists received")


def render_error(console: Console, code: str, detail: str, lang: str | None = None) -> None:
    plain = reason(code)
    console.print(Text("error [", style="bold red") + outside(code, "bold red")
                  + Text("]: ", style="bold red") + outside(detail))
    console.print(Text(plain.pick(lang)))
