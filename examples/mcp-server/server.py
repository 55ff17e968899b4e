"""A small MCP server that enforces trustpath's decisions on every call.

The protocol is the `mcp` SDK's (streamable HTTP); what this file adds is
the enforcement point in front of it:

1. `GET /.well-known/oauth-protected-resource/mcp`: RFC 9728 metadata naming
   the authorization server and the scopes this resource knows.
2. Every request to `/mcp` needs an access token from that AS: a JWT it
   signed, for this resource, carrying trustpath's grant id. Without one:
   401 with `resource_metadata` and the scopes to ask for.
3. Before `tools/call`, `resources/read` and `prompts/get` run, trustpath is
   asked (`POST /v1/tool-calls`, by grant id). A denial that names
   `required_scopes` becomes 403 `insufficient_scope`, so the client can
   step up at the AS; any other denial, or trustpath not answering, a
   JSON-RPC error. Nothing runs unless trustpath said allow.

Environment: PORT, ISSUER (the AS), TRUSTPATH_URL, TRUSTPATH_TOKEN (a caller
of role `enforce`).
"""

import json
import logging
import os

import anyio.to_thread
import httpx2
import jwt
import uvicorn

from mcp.server.mcpserver import MCPServer

PORT = int(os.environ.get("PORT", "8001"))
ISSUER = os.environ.get("ISSUER", "http://127.0.0.1:4000")
TRUSTPATH_URL = os.environ.get("TRUSTPATH_URL", "http://127.0.0.1:8080").rstrip("/")
TRUSTPATH_TOKEN = os.environ.get("TRUSTPATH_TOKEN")

RESOURCE = f"http://127.0.0.1:{PORT}/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource/mcp"
METADATA_URL = f"http://127.0.0.1:{PORT}{METADATA_PATH}"
SCOPES_SUPPORTED = ["files:read", "files:write", "tickets:read"]
# What a new connection asks for; tickets need a step-up.
BASELINE_SCOPE = "files:read files:write"
# MCP methods that act on something and so are checked one by one.
CHECKED_METHODS = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}

log = logging.getLogger("mcp-server")

# ---------------------------------------------------------------- the tools

files: dict[str, str] = {"/reports/q3.txt": "revenue up"}
tickets = ["VPN is down", "Printer out of toner"]

mcp = MCPServer("trustpath-example-files")


@mcp.tool()
def list_files() -> list[str]:
    """List the stored files."""
    return sorted(files)


@mcp.tool()
def read_file(path: str) -> str:
    """Read one file."""
    return files.get(path, "")


@mcp.tool()
def write_file(path: str, content: str) -> str:
    """Write one file."""
    files[path] = content
    return f"wrote {len(content)} bytes to {path}"


@mcp.tool()
def search_tickets(query: str) -> list[str]:
    """Search the ticket queue."""
    return [t for t in tickets if query.lower() in t.lower()]


# ---------------------------------------------------------------- the access token


class AccessTokens:
    """Checks the AS's JWT access tokens against its published keys."""

    def __init__(self) -> None:
        self._keys: jwt.PyJWKClient | None = None

    def _key_set(self) -> jwt.PyJWKClient:
        if self._keys is None:
            with httpx2.Client(timeout=5) as client:
                meta = client.get(f"{ISSUER}/.well-known/openid-configuration").json()
            self._keys = jwt.PyJWKClient(meta["jwks_uri"], cache_keys=True)
        return self._keys

    def _verify(self, token: str) -> dict:
        key = self._key_set().get_signing_key_from_jwt(token)
        return jwt.decode(
            token,
            key.key,
            algorithms=["ES256"],
            audience=RESOURCE,
            issuer=ISSUER,
            options={"require": ["exp", "aud", "iss"]},
        )

    async def verify(self, token: str) -> dict | None:
        try:
            claims = await anyio.to_thread.run_sync(self._verify, token)
        except (jwt.PyJWTError, httpx2.HTTPError, KeyError, ValueError) as e:
            log.info("access token refused: %s", e)
            return None
        if not isinstance(claims.get("trustpath"), dict) or "grant_id" not in claims["trustpath"]:
            log.info("access token refused: no trustpath grant")
            return None
        return claims


# ---------------------------------------------------------------- the enforcement point


async def send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
            + (headers or []),
        }
    )
    await send({"type": "http.response.body", "body": data})


def challenge(error: str | None, scope: str) -> list:
    parts = [f'resource_metadata="{METADATA_URL}"', f'scope="{scope}"']
    if error:
        parts.insert(0, f'error="{error}"')
    return [(b"www-authenticate", ("Bearer " + ", ".join(parts)).encode())]


class Enforcement:
    """ASGI middleware: authenticate the caller, ask trustpath per call."""

    def __init__(self, app) -> None:
        self.app = app
        self.tokens = AccessTokens()
        headers = {"authorization": f"Bearer {TRUSTPATH_TOKEN}"} if TRUSTPATH_TOKEN else {}
        self.trustpath = httpx2.AsyncClient(base_url=TRUSTPATH_URL, headers=headers, timeout=5)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == METADATA_PATH:
            return await send_json(
                send,
                200,
                {
                    "resource": RESOURCE,
                    "authorization_servers": [ISSUER],
                    "scopes_supported": SCOPES_SUPPORTED,
                    "bearer_methods_supported": ["header"],
                },
            )
        if not scope["path"].startswith("/mcp"):
            return await send_json(send, 404, {"error": "not_found"})

        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode()
        claims = None
        if authorization.lower().startswith("bearer "):
            claims = await self.tokens.verify(authorization[7:])
        if claims is None:
            return await send_json(
                send, 401, {"error": "invalid_token"}, challenge("invalid_token", BASELINE_SCOPE)
            )

        body = await read_body(receive)
        denial = await self.check_calls(claims, body)
        if denial is not None:
            return await denial(send)

        # Hand the body we consumed on to the MCP app.
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def check_calls(self, claims: dict, body: bytes):
        """None when every checked call in the body may run, else the answer to send."""
        try:
            message = json.loads(body) if body else None
        except ValueError:
            return None  # the MCP app answers malformed JSON-RPC itself
        messages = message if isinstance(message, list) else [message]
        for m in messages:
            if not isinstance(m, dict) or m.get("method") not in CHECKED_METHODS:
                continue
            params = m.get("params") or {}
            target = params.get(CHECKED_METHODS[m["method"]])
            answer = await self.ask(claims, m["method"], target, params.get("arguments"))
            if answer is None:
                return rpc_error(m.get("id"), "authorization check unavailable")
            if answer["allow"]:
                continue
            if answer.get("required_scopes"):
                scope = " ".join(answer["required_scopes"])
                return lambda send: send_json(
                    send,
                    403,
                    {"error": "insufficient_scope", "error_description": "; ".join(answer["reasons"])},
                    challenge("insufficient_scope", scope),
                )
            return rpc_error(m.get("id"), "denied: " + "; ".join(answer["reasons"]))
        return None

    async def ask(self, claims: dict, method: str, target, arguments) -> dict | None:
        ids = claims["trustpath"]
        request = {
            "grant_id": ids["grant_id"],
            "session_id": ids.get("session_id"),
            "tool": str(target or ""),
            "method": method,
        }
        if isinstance(arguments, dict):
            request["arguments"] = arguments
        try:
            response = await self.trustpath.post("/v1/tool-calls", json=request)
        except httpx2.HTTPError as e:
            log.warning("trustpath unreachable: %s", e)
            return None
        if response.status_code != 200:
            # Not logged means not allowed (fail closed).
            log.warning("trustpath answered %s: %s", response.status_code, response.text)
            return None
        answer = response.json()
        log.info("tool call %s %s: allow=%s", method, target, answer["allow"])
        return answer


async def read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def rpc_error(request_id, message: str):
    return lambda send: send_json(
        send, 200, {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32001, "message": message}}
    )


app = Enforcement(mcp.streamable_http_app())

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="mcp-server %(levelname)s %(message)s")
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
