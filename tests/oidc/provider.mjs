// A real OpenID Provider (panva/oidc-provider) for Gatehouse's OIDC end-to-end tests.
//
//   node provider.mjs <port|0> <generation> <out-dir>
//
// Issues RFC 9068 JWT access tokens (client_credentials + resource indicators) carrying
// tenant and role claims, and signs people in to the console (client `console`: authorization
// code + PKCE, a native client so any loopback port of its redirect URI is accepted, the
// provider's own development login and consent pages; any password works, the login name
// picks the account below). Each generation signs with a fresh key set (kids `<gen>-rs`,
// `<gen>-es`, `<gen>-ed`), so a restart with a new generation is a key rotation. The signing
// keys and an attacker key (never published) are written to <out-dir> as PKCS#8 PEM so the
// test can forge tokens with hostile headers. GET /__stats answers how often the JWKS was
// fetched. Prints one JSON line when listening.
import { createServer } from 'node:http';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Provider from 'oidc-provider';

const [portArg = '0', generation = 'g1', outDir = '.'] = process.argv.slice(2);
const AUDIENCE = 'https://gatehouse.test';

function keyPair(kind, kid, alg) {
  const opts = kind === 'rsa' ? { modulusLength: 2048 } : kind === 'ec' ? { namedCurve: 'P-256' } : {};
  const { privateKey } = generateKeyPairSync(kind, opts);
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
  writeFileSync(join(outDir, `${kid}.pem`), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  return jwk;
}

const keys = [
  keyPair('rsa', `${generation}-rs`, 'RS256'),
  keyPair('ec', `${generation}-es`, 'ES256'),
  keyPair('ed25519', `${generation}-ed`, 'EdDSA'),
];
keyPair('rsa', 'attacker', 'RS256');

// Per client: the signing algorithm, lifetime and the claims its tokens carry.
const CLIENTS = {
  workload: { alg: 'RS256', ttl: 300, claims: { org: 'acme', project: 'default', roles: ['inference'] } },
  'es-workload': { alg: 'ES256', ttl: 300, claims: { org: 'acme', project: 'default', roles: ['inference'] } },
  'ed-workload': { alg: 'EdDSA', ttl: 300, claims: { org: 'acme', project: 'default', roles: ['inference'] } },
  'chat-only': { alg: 'RS256', ttl: 300, claims: { org: 'acme', project: 'default', roles: ['chatter'] } },
  stranger: { alg: 'RS256', ttl: 300, claims: { org: 'acme', project: 'default', roles: ['janitor'] } },
  'other-org': { alg: 'RS256', ttl: 300, claims: { org: 'globex', project: 'default', roles: ['inference'] } },
  short: { alg: 'RS256', ttl: 1, claims: { org: 'acme', project: 'default', roles: ['inference'] } },
  'admin-bot': { alg: 'RS256', ttl: 300, claims: { org: 'acme', project: 'default', roles: ['gatehouse-admins'] } },
  'ci-runner': { alg: 'ES256', ttl: 600, claims: { org: 'acme', project: 'default', roles: ['inference'], team: 'ml' } },
};

// People, by login name: what the ID token says about them.
const PEOPLE = {
  ann: { email: 'ann@example.com', email_verified: true, name: 'Ann', org: 'acme', roles: ['console-admins'] },
  vic: { email: 'vic@example.com', email_verified: true, name: 'Vic', org: 'acme', roles: ['console-viewers'] },
  root: { email: 'root@example.com', email_verified: true, name: 'Root', org: 'acme', roles: ['console-root'] },
  eve: { email: 'eve@example.com', email_verified: true, name: 'Eve', org: 'acme', roles: ['janitor'] },
};

let jwksHits = 0;
const server = createServer();
server.listen(Number(portArg), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      ...Object.keys(CLIENTS).map((id) => ({
        client_id: id,
        client_secret: `${id}-secret`,
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        token_endpoint_auth_method: 'client_secret_post',
      })),
      {
        client_id: 'console',
        client_secret: 'console-secret',
        application_type: 'native',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/sign-in/oidc/callback'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys },
    findAccount: async (ctx, sub) => ({
      accountId: sub,
      claims: async () => ({ sub, ...(PEOPLE[sub] ?? { org: 'acme', roles: [] }) }),
    }),
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], gatehouse: ['org', 'roles'] },
    // the console reads its claims from the ID token
    conformIdTokenClaims: false,
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // the console client signs people in: its tokens are for the userinfo endpoint only
        defaultResource: (ctx, client) => (CLIENTS[client.clientId] ? AUDIENCE : undefined),
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => {
          const c = CLIENTS[client.clientId];
          return {
            scope: 'api',
            audience: resource,
            accessTokenTTL: c.ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: c.alg } },
          };
        },
      },
    },
    scopes: ['api', 'openid', 'email', 'profile', 'gatehouse'],
    extraTokenClaims: (ctx, token) => CLIENTS[token.clientId]?.claims,
  });
  provider.proxy = false;
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  const handler = provider.callback();
  server.on('request', (req, res) => {
    if (req.url === '/__stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ jwks: jwksHits }));
      return;
    }
    if (req.url.startsWith('/jwks')) jwksHits += 1;
    handler(req, res);
  });
  console.log(JSON.stringify({ issuer, port }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
