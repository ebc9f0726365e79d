"""After a rotation of the secret key, what was stored under a previous key is still met.

``AMELI_PREVIOUS_SECRET_KEYS`` lists the keys in use before the current one;
``Keyring`` computes their digests but never issues one. As the service meets
each thing again, it moves it under the current key:

- a NIR's store state (locks, suspensions, failure and ceiling counts, the code
  quota) is merged under its current ref before anything of the NIR is checked
  or counted (``nir_ref``), so a rotation neither lifts a lock nor resets a count;
- a client address's state likewise (``ClientRegulation.admit``);
- a login made before the rotation keeps its id, but its locks and counts are
  those of the current ref from then on (``rebased``);
- a trusted device found by a previous hash of its token is stored again under
  the current hash, its dates kept (``find_device``);
- a code emailed just before the rotation still matches (``Keyring.code_matches``).

Without previous keys each step is the plain lookup under the current key,
nothing more. Setup tokens and provisional codes do not depend on the key.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from ameli_grpc.domain.model import Login, TrustedDevice
from ameli_grpc.domain.ports import ChallengeStore, TrustedDeviceRepository
from ameli_grpc.domain.tokens import Keyring


class KeyRotation:
    """The current key's refs and hashes, with what previous keys left behind moved to them."""

    def __init__(
        self, keyring: Keyring, store: ChallengeStore, devices: TrustedDeviceRepository
    ) -> None:
        self._keyring = keyring
        self._store = store
        self._devices = devices

    async def nir_ref(self, nir: str, now: datetime) -> str:
        """The NIR's current ref, holding whatever its previous refs held."""
        ref = self._keyring.nir_ref(nir)
        if self._keyring.rotating:
            await self._store.adopt(ref, self._keyring.previous_nir_refs(nir), now)
        return ref

    async def rebased(self, login: Login, nir: str, now: datetime) -> Login:
        """The login, counted under the NIR's current ref (``nir`` is its account's).

        A login made under a previous key would otherwise keep counting wrong
        codes, and looking for locks, under a ref that ``nir_ref`` empties.
        """
        if not self._keyring.rotating:
            return login
        ref = self._keyring.nir_ref(nir)
        if ref == login.nir_ref:
            return login
        await self._store.adopt(ref, self._keyring.previous_nir_refs(nir), now)
        return replace(login, nir_ref=ref)

    async def find_device(self, token: str) -> TrustedDevice | None:
        """The device of that token, expired or not; one trusted under a previous key is
        stored under the current hash first (the same for every NIR: the familiarity
        check still costs the same for known and unknown ones)."""
        current = self._keyring.token_hash(token)
        device = await self._devices.find(current)
        if device is not None or not self._keyring.rotating:
            return device
        for previous in self._keyring.previous_token_hashes(token):
            device = await self._devices.find(previous)
            if device is not None:
                await self._devices.rehash(previous, current)
                return replace(device, token_hash=current)
        return None
