// A real OpenID provider (npm oidc-provider) for envhub's tests, on loopback.
//
// Started by tests/identity/oidc_provider.py with:
//   OP_PORT     the port to listen on (issuer http://127.0.0.1:<port>)
//   OP_CONFIG   a JSON file: {"clients": [...], "accounts": {"<email>": {...}}}
//
// It serves discovery, JWKS, authorization code with PKCE (required), refresh
// tokens, the device grant and RP-initiated logout. People "sign in" on a small
// form by typing an account's email (a browser test fills it, an HTTP test
// posts it). POST /__control (JSON) lets a test add or remove accounts, and
// make the next ID token misbehave ("nonce", "expired", "issuer", "audience",
// "signature") to prove that envhub refuses it.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, exportJWK, generateKeyPair } from 'jose';

const port = Number(process.env.OP_PORT);
const issuer = `http://127.0.0.1:${port}`;
const config = JSON.parse(readFileSync(process.env.OP_CONFIG, 'utf8'));
const state = { accounts: { ...config.accounts }, tamper: null };

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const { privateKey: strangerKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'envhub-test-op', alg: 'RS256', use: 'sig' };

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head>
<body style="font-family:sans-serif;max-width:420px;margin:60px auto"><h1>Test OP</h1>${body}</body></html>`;

async function findAccount(_ctx, sub) {
  const account = state.accounts[sub];
  if (!account) return undefined;
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        email: account.email ?? sub,
        email_verified: account.email_verified ?? true,
        name: account.name ?? sub,
        preferred_username: account.preferred_username ?? String(sub).split('@')[0],
        groups: account.groups ?? [],
      };
    },
  };
}

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: { keys: [jwk] },
  findAccount,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  // Claims go in the ID token itself, as most enterprise providers do.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = page('Sign out', `${form}<button id="op-logout" type="submit" form="op.logoutForm" value="yes" name="logout">Sign out of the test OP</button>`);
      },
    },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  // First-party clients: no consent screen; grant what was asked.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.params.scope ?? 'openid');
    await grant.save();
    return grant;
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, RefreshToken: 86400, Interaction: 600, Session: 86400, Grant: 86400, DeviceCode: 600 },
  cookies: { keys: ['envhub-test-op-cookie-key'] },
});

// Misbehaviour on demand: the next ID token is re-signed with one thing wrong.
const issue = provider.IdToken.prototype.issue;
provider.IdToken.prototype.issue = async function patched(options) {
  const token = await issue.call(this, options);
  if (options?.use !== 'idtoken' || !state.tamper) return token;
  const mode = state.tamper;
  state.tamper = null;
  const claims = decodeJwt(token);
  const now = Math.floor(Date.now() / 1000);
  if (mode === 'nonce') claims.nonce = 'not-the-nonce-envhub-sent';
  if (mode === 'expired') Object.assign(claims, { iat: now - 7200, exp: now - 3600 });
  if (mode === 'issuer') claims.iss = 'http://127.0.0.1:1/not-this-provider';
  if (mode === 'audience') claims.aud = 'some-other-client';
  const key = mode === 'signature' ? strangerKey : privateKey;
  return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: jwk.kid }).sign(key);
};

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (req.method === 'POST' && action === 'login') {
    const email = new URLSearchParams(await readBody(req)).get('email')?.trim().toLowerCase() ?? '';
    if (!state.accounts[email]) {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(page('Sign in', `<p id="op-error">No account ${escape(email)}</p>`));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: email } }, { mergeWithLastSubmission: false });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/html' });
  res.end(page('Sign in', `<form method="post" action="/interaction/${escape(uid)}/login">
    <label>Email <input id="op-email" name="email" type="email" autofocus></label>
    <button id="op-submit" type="submit">Sign in</button></form>`));
}

const callback = provider.callback();
createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    const match = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (match) return await interaction(req, res, match[1], match[2]);
    if (url.pathname === '/__control' && req.method === 'POST') {
      const change = JSON.parse((await readBody(req)) || '{}');
      if ('tamper' in change) state.tamper = change.tamper;
      Object.assign(state.accounts, change.accounts ?? {});
      for (const email of change.remove ?? []) delete state.accounts[email];
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ accounts: Object.keys(state.accounts), tamper: state.tamper }));
    }
    return callback(req, res);
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(error?.stack ?? error));
  }
}).listen(port, '127.0.0.1', () => console.log(`test OP listening on ${issuer}`));
