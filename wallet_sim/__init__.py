"""The wallet simulator: the foreigner's phone (docs/DESIGN.md sections 4, 5 and 8).

It makes a device key per card on the phone, redeems a provisioning code over HTTP,
keeps the cards in a PIN-encrypted wallet file written atomically, and shows dynamic
``FMC1:`` presentations as QR codes (terminal, PNG, or a phone-sized web page).

Example::

    from wallet_sim import create_wallet, present, provision, qr_png
    wallet = create_wallet(Path("phone.wallet"), pin="482913")
    wallet.put(provision("http://127.0.0.1:8000", "K7QM-4XPA-9TZC", now=now))
    png = qr_png(present(wallet.card(), Purpose.PAY, now=now))
"""

from wallet_sim.authority import provision, refresh
from wallet_sim.card import Card, Freshness, HolderDisplay, present
from wallet_sim.errors import WalletError, WalletErrorCode
from wallet_sim.qr import MAX_QR_VERSION, QrCode, qr_code, qr_halfblocks, qr_png
from wallet_sim.wallet import KdfLimits, Wallet, create_wallet, open_wallet, with_card

__all__ = [
    "MAX_QR_VERSION",
    "Card",
    "Freshness",
    "HolderDisplay",
    "KdfLimits",
    "QrCode",
    "Wallet",
    "WalletError",
    "WalletErrorCode",
    "create_wallet",
    "open_wallet",
    "present",
    "provision",
    "qr_code",
    "qr_halfblocks",
    "qr_png",
    "refresh",
    "with_card",
]
