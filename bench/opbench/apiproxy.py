"""A counting reverse proxy between the operator and the kube-apiserver (loopback only).

    python -m bench.opbench.apiproxy --listen-port P --upstream https://127.0.0.1:6443 \
        --ca ca.crt --cert admin.crt --key admin.key

The operator's kubeconfig points at http://127.0.0.1:P (no credentials); the proxy forwards
every request over TLS with the admin client certificate and streams the response back
(watches included). It records one row per request: arrival time (time.time()), method,
path, whether it is a watch, the user agent, the status, the seconds until the response
headers, and, for a GenevaBackfill status PATCH, the phase it writes (the instant the
API server answered it is when the status became terminal, whoever watches it and however
late). GET /__proxy/requests?since=T returns the rows as JSON (never forwarded);
GET /__proxy/refusals the first answers other than 2xx, 404 and 409 with the request that
earned them (what to look at when a client's write is refused). Nothing in the operator changes: this is how the
benchmark counts the API requests the operator makes.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "content-length", "host"}


MAX_REFUSALS = 100


def _phase_written(body: bytes) -> str | None:
    try:
        patch = json.loads(body)
    except ValueError:
        return None
    status = patch.get("status") if isinstance(patch, dict) else None
    return status.get("phase") if isinstance(status, dict) else None


class Proxy:
    def __init__(self, upstream: str, ssl_ctx: ssl.SSLContext):
        self.upstream = upstream.rstrip("/")
        self.ssl_ctx = ssl_ctx
        self.rows: list[list] = []  # [t, method, path, watch, agent, status, seconds, phase written]
        self.refusals: list[dict] = []
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl_ctx, limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=10),
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/__proxy/refusals":
            return web.json_response(self.refusals)
        if request.path.startswith("/__proxy/"):
            since = float(request.query.get("since", "0"))
            return web.json_response([r for r in self.rows if r[0] >= since])
        t = time.time()
        watch = request.query.get("watch") in ("true", "1")
        row = [t, request.method, request.path, watch, request.headers.get("User-Agent", ""), 0, None, None]
        self.rows.append(row)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "authorization"}
        body = await request.read()
        if request.method == "PATCH" and request.path.endswith("/status") and "/genevabackfills/" in request.path:
            row[7] = _phase_written(body)
        url = self.upstream + request.rel_url.path_qs
        try:
            async with self.session.request(request.method, url, headers=headers, data=body or None,
                                            allow_redirects=False) as up:
                row[5] = up.status
                row[6] = time.time() - t  # seconds until the response headers
                if up.status >= 300 and up.status not in (404, 409) and len(self.refusals) < MAX_REFUSALS:
                    answer = await up.read()
                    self.refusals.append({"t": t, "method": request.method, "path": request.path_qs,
                                          "agent": row[4], "status": up.status,
                                          "request": body[:4000].decode(errors="replace"),
                                          "answer": answer[:4000].decode(errors="replace")})
                    return web.Response(status=up.status, body=answer, headers={
                        k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP})
                resp = web.StreamResponse(status=up.status, reason=up.reason)
                for k, v in up.headers.items():
                    if k.lower() not in HOP_BY_HOP:
                        resp.headers.add(k, v)
                await resp.prepare(request)
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionResetError) as e:
            row[5] = -1
            if request.transport is None or request.transport.is_closing():
                raise
            return web.Response(status=502, text=f"proxy: {type(e).__name__}: {e}")


async def main_async(args: argparse.Namespace) -> None:
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    proxy = Proxy(args.upstream, ctx)
    await proxy.start()
    server = web.Server(proxy.handle)
    runner = web.ServerRunner(server, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.listen_port)
    await site.start()
    print(json.dumps({"listening": args.listen_port}), flush=True)
    await asyncio.Event().wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
