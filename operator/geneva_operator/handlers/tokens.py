"""The Ray token policy: where it comes from (spec.auth.tokenSecretRef, else the operator's
GENEVA_RAY_TOKEN_SECRET), how long a read is trusted (caches.TokenCache), and the one retry
with a freshly read token when Ray refuses the cached one (a rotated Secret)."""
from __future__ import annotations

from typing import Awaitable, Callable, Optional, TypeVar

from ..api.models import BackfillSpec
from ..cluster import token_secret_ref
from ..kube import SecretProblem
from ..lifecycle import SecretMissing
from ..rayjobs import BearerToken, RayUnauthorized
from ..settings import OperatorSettings
from .caches import TokenCache

T = TypeVar("T")


class RayTokens:
    def __init__(self, read: Callable[[str, str, str], Awaitable[str]], settings: OperatorSettings):
        self.settings = settings
        self.cache = TokenCache(read, settings.token_cache_seconds)

    async def get(self, namespace: str, spec: BackfillSpec) -> tuple[Optional[BearerToken], Optional[SecretMissing]]:
        ref = token_secret_ref(spec, self.settings)
        if ref is None:
            return None, None
        try:
            return BearerToken(await self.cache.get(namespace, ref.name, ref.key)), None
        except SecretProblem as e:
            field = "spec.auth.tokenSecretRef" if spec.auth.token_secret_ref is not None else "GENEVA_RAY_TOKEN_SECRET"
            return None, SecretMissing(field, str(e), may_clear=e.may_clear)

    async def fresh(self, namespace: str, spec: Optional[BackfillSpec]) -> Optional[BearerToken]:
        """The token read from its Secret now, bypassing (and refilling) the cache."""
        ref = token_secret_ref(spec, self.settings) if spec is not None else None
        if ref is None:
            return None
        self.cache.forget(namespace, ref.name, ref.key)
        token, _ = await self.get(namespace, spec)
        return token

    async def with_fresh(self, namespace: str, spec: Optional[BackfillSpec], token: Optional[BearerToken],
                         call: Callable[[Optional[BearerToken]], Awaitable[T]]) -> T:
        """`call(token)`; if Ray refuses the token, once more with the token re-read from its
        Secret (the cached copy may predate a rotation). A refusal of a fresh token stands."""
        try:
            return await call(token)
        except RayUnauthorized:
            fresh = await self.fresh(namespace, spec)
            if fresh is None or fresh == token:
                raise
            return await call(fresh)
