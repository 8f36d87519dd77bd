import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Provider from 'oidc-provider';
import { SqliteAuthStore } from '../shared/store/sqlite-auth-store.ts';
import { WebApp } from '../webapp/web-app.ts';
import { SAMPLES, startWebCluster, testLogger, type WebCluster } from './fixtures/webapp-cluster.ts';
import type { Request } from 'playwright-core';
import { launchBrowser, SCREENSHOTS, type Browser } from './helpers/browser.ts';
import { TEST_HEARTBEAT_MS } from './helpers/cluster.ts';

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('web app login through OpenID Connect', function () {
  this.timeout(120_000);
  let cluster: WebCluster;
  let web: WebApp;
  let browser: Browser;
  const servers: Server[] = [];
  let issuer: string;

  function startWeb(oidcIssuer: string): Promise<WebApp> {
    const app = new WebApp(
      {
        broker: cluster.broker.frontendEndpoint,
        http: 0,
        samples: SAMPLES,
        heartbeatIntervalMs: TEST_HEARTBEAT_MS,
        auth: 'oidc',
        data: cluster.data,
        oidcIssuer,
        oidcClientId: 'zerve',
        oidcClientSecret: 'zerve-test-secret',
        oidcAdmins: 'admins',
        oidcMembers: '@example.org',
        oidcAllowHttp: true,
        maxAuthFailures: 100_000,
      },
      testLogger,
    );
    return app.start().then(() => app);
  }

  before(async () => {
    cluster = await startWebCluster();
    const providerServer = createServer();
    servers.push(providerServer);
    issuer = await listen(providerServer);
    web = await startWeb(issuer);
    const provider = new Provider(issuer, {
      clients: [{ client_id: 'zerve', client_secret: 'zerve-test-secret', redirect_uris: [`${web.url}auth/callback`], grant_types: ['authorization_code'], response_types: ['code'] }],
      findAccount: async (_ctx, id) => ({
        accountId: id,
        claims: async () => ({ sub: id, email: `${id}@example.org`, groups: id === 'boss' ? ['admins'] : [] }),
      }),
      claims: { openid: ['sub'], email: ['email'], profile: ['groups'] },
      conformIdTokenClaims: false,
      cookies: { keys: ['zerve-test-cookie-key'] },
    });
    providerServer.on('request', provider.callback());
    browser = await launchBrowser({ width: 1000, height: 800 });
  });
  after(async () => {
    await browser?.close();
    await web?.close();
    for (const server of servers) server.closeAllConnections(), server.close();
    await cluster?.close();
  });

  it('logs in through the provider with PKCE, creates the user with the role of their domain, and logs out; a replayed code is refused', async () => {
    const page = await browser.context.newPage();
    let callback: Request | undefined;
    page.on('request', (request) => {
      if (request.url().startsWith(`${web.url}auth/callback`)) callback = request;
    });
    try {
      await page.goto(web.url);
      await page.waitForSelector('body[data-session="logged-out"] #login-sso');
      await page.click('#login-sso');
      await page.waitForSelector('input[name="login"]');
      await page.fill('input[name="login"]', 'alice');
      await page.fill('input[name="password"]', 'any');
      await page.click('button[type="submit"]');
      await page.waitForSelector('button[type="submit"]:has-text("Continue")');
      await page.click('button[type="submit"]');
      await page.waitForSelector('body[data-session="logged-in"]');
      assert.match((await page.textContent('#whoami')) ?? '', /^alice@example\.org \(member: /);
      await page.screenshot({ path: join(SCREENSHOTS, 'auth-oidc-logged-in.png'), fullPage: true });
      assert.ok(callback && /[?&]code=/.test(callback.url()), 'the callback was seen');
      // Cookies are left out of request.headers(); allHeaders() has them.
      const cookie = (await callback.allHeaders()).cookie ?? '';
      assert.match(cookie, /zerve_oidc=/);
      const replay = await fetch(callback.url(), { headers: { cookie }, redirect: 'manual' });
      assert.equal(replay.status, 401, 'a code is good once');
      await Promise.all([page.waitForEvent('load'), page.click('#logout')]);
      await page.waitForSelector('body[data-session="logged-out"]');
    } finally {
      await page.close();
    }
    const store = SqliteAuthStore.inDataDir(cluster.data);
    try {
      assert.equal((await store.userByName('alice@example.org'))?.role, 'member');
    } finally {
      await store.close();
    }
  });

  it('refuses a callback whose state is not the one this browser started with', async () => {
    const start = await fetch(new URL('/auth/login', web.url), { redirect: 'manual' });
    assert.equal(start.status, 303);
    assert.ok(start.headers.get('location')?.startsWith(issuer), 'sent to the provider');
    const pending = (start.headers.get('set-cookie') ?? '').split(';')[0]!;
    const forged = await fetch(new URL('/auth/callback?code=abc&state=forged', web.url), { headers: { cookie: pending }, redirect: 'manual' });
    const body = (await forged.json()) as { error: { code: string } };
    assert.deepEqual([forged.status, body.error.code], [401, 'UNAUTHENTICATED']);
    const none = await fetch(new URL('/auth/callback?code=abc&state=x', web.url), { redirect: 'manual' });
    assert.equal(none.status, 401, 'no login started in this browser');
  });

  it('refuses a provider whose discovery document names another issuer', async () => {
    const document = await (await fetch(`${issuer}/.well-known/openid-configuration`)).text();
    const impostor = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(document);
    });
    servers.push(impostor);
    const wrong = await startWeb(await listen(impostor));
    try {
      const res = await fetch(new URL('/auth/login', wrong.url), { redirect: 'manual' });
      const body = (await res.json()) as { error: { code: string } };
      assert.deepEqual([res.status, body.error.code], [401, 'UNAUTHENTICATED']);
    } finally {
      await wrong.close();
    }
  });
});
