// Who is logged in, the login with an API token, the logout, and the warning of a web app open to
// everyone (--insecure). Plain ES module, shared by the pages; it needs only #session in the page.
const box = document.getElementById('session');

function show(...children) {
  box.replaceChildren(...children);
  box.hidden = false;
}

function element(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function loginForm(message) {
  const input = element('input', { id: 'login-token', type: 'password', autocomplete: 'off', required: true, placeholder: 'zrv_…' });
  const status = element('span', { className: 'session-status', role: 'status' }, message ?? '');
  const form = element(
    'form',
    { id: 'login', className: 'login' },
    element('label', { htmlFor: 'login-token' }, 'API token '),
    input,
    element('button', { type: 'submit' }, 'Log in'),
    status,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const res = await fetch('/api/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: input.value }) });
    if (res.ok) {
      location.reload();
      return;
    }
    const body = await res.json().catch(() => ({}));
    status.textContent = `${body.error?.code ?? res.status}: ${body.error?.message ?? res.statusText}`;
  });
  return form;
}

async function loadSession() {
  const res = await fetch('/api/session');
  if (res.status === 401) {
    const body = await res.json().catch(() => ({}));
    const sso = body.error?.details?.login;
    document.body.dataset.session = 'logged-out';
    show(
      element('p', {}, 'This web app asks who you are. Log in with an API token (zerve tokens create).'),
      ...(sso ? [element('a', { id: 'login-sso', href: sso, className: 'login-sso' }, 'Log in with single sign-on')] : []),
      loginForm(),
    );
    return;
  }
  const session = await res.json();
  if (!session.auth) {
    document.body.dataset.session = 'open';
    if (session.insecure) {
      show(element('p', { className: 'insecure', role: 'alert' }, 'Warning: this web app is open to anyone who can reach it (--insecure, auth off).'));
    }
    return;
  }
  document.body.dataset.session = 'logged-in';
  const logout = element('button', { type: 'button', id: 'logout' }, 'Log out');
  logout.addEventListener('click', async () => {
    await fetch('/api/session', { method: 'DELETE' });
    location.reload();
  });
  show(element('span', { id: 'whoami' }, `${session.user} (${session.role}: ${session.scopes.join(', ')}) `), logout);
}

void loadSession();
