// A real OpenID provider (oidc-provider) for Postern's authorization tests,
// started by tests/support/oidc.rs: `node provider.mjs` listens on a free
// loopback port and prints `listening PORT` once it serves.
//
// Clients (client_credentials grant, secrets fixed for tests):
//   app        scopes MAIL $DATA $SETUP $DECRYPT; realm role "user"
//   admin-app  the same scopes; realm roles "user" and "admin",
//              client role "ops" under resource_access.domino
//   postern    the gateway's own client, for token introspection
// Resources (RFC 8707 resource indicators, `resource=` in the token request):
//   urn:postern:domino  opaque access tokens, aud "Domino"
//   urn:postern:mail    opaque access tokens, aud "Mail"
//   urn:postern:jwt     JWT access tokens (RS256), aud "Domino", with the
//                       roles above and `scp` (the scopes as an array)
// GET /_test/counts answers {"introspections": N}: calls to the
// introspection endpoint so far. INTROSPECTION_DELAY_MS (environment) holds
// each introspection answer back that long, so concurrent checks overlap.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const SCOPES = 'MAIL $DATA $SETUP $DECRYPT';
const ROLES = {
  app: { realm_access: { roles: ['user'] } },
  'admin-app': {
    realm_access: { roles: ['user', 'admin'] },
    resource_access: { domino: { roles: ['ops'] }, account: { roles: ['view-profile'] } },
  },
};
const RESOURCES = {
  'urn:postern:domino': { audience: 'Domino', accessTokenFormat: 'opaque' },
  'urn:postern:mail': { audience: 'Mail', accessTokenFormat: 'opaque' },
  'urn:postern:jwt': { audience: 'Domino', accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } },
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

const client = (id, secret) => ({
  client_id: id,
  client_secret: secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: SCOPES,
});

async function main() {
  // Bind first so the issuer carries the real port.
  const { createServer } = await import('node:http');
  const server = createServer();
  await new Promise((resolve) => server.listen(Number(process.env.PORT || 0), '127.0.0.1', resolve));
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: [client('app', 'app-secret'), client('admin-app', 'admin-secret'), client('postern', 'postern-secret')],
    jwks: { keys: [signingKey] },
    scopes: SCOPES.split(' '),
    cookies: { keys: ['a test cookie key, nothing secret'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:postern:domino',
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => {
          const info = RESOURCES[resource];
          if (!info) throw new Error(`unknown resource ${resource}`);
          return { scope: SCOPES, accessTokenTTL: 300, ...info };
        },
      },
    },
    extraTokenClaims: (ctx, token) => {
      const extra = { ...(ROLES[token.clientId] || {}) };
      if (token.scope) extra.scp = token.scope.split(' ');
      return extra;
    },
  });

  let introspections = 0;
  provider.use(async (ctx, next) => {
    if (ctx.path === '/_test/counts') {
      ctx.body = { introspections };
      return;
    }
    if (ctx.path === '/token/introspection') {
      introspections += 1;
      console.log(`introspection call ${introspections}`);
      const delay = Number(process.env.INTROSPECTION_DELAY_MS || 0);
      if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    }
    await next();
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));

  server.on('request', provider.callback());
  console.log(`listening ${port}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
