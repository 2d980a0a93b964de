// The dashboard: a sign-in page, then the pages under a navigation bar, routed by the URL's hash (#/devices/3) so
// every page has an address and the browser's back button works without the server knowing any of them.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { signIn, signOut, token, whenSignedOut } from './api.js';
import { ErrorBox, html } from './components.js';
import { Overview } from './pages/overview.js';
import { Devices, DevicePage } from './pages/devices.js';
import { Keys, KeyPage } from './pages/keys.js';
import { Pools, PoolPage } from './pages/pools.js';
import { Enroll } from './pages/enroll.js';

const NAV = [
  ['#/', 'Overview'],
  ['#/devices', 'Devices'],
  ['#/keys', 'Keys'],
  ['#/pools', 'Pools'],
  ['#/enroll', 'Enroll'],
];

/** The page for a hash: `#/keys/4` → the key page of key 4. */
function route(hash) {
  const [, section = '', id] = hash.replace(/^#/, '').split('/');
  const n = id !== undefined && /^[1-9][0-9]*$/.test(id) ? Number(id) : undefined;
  switch (section) {
    case '':
      return html`<${Overview} />`;
    case 'devices':
      return n ? html`<${DevicePage} id=${n} key=${n} />` : html`<${Devices} />`;
    case 'keys':
      return n ? html`<${KeyPage} id=${n} key=${n} />` : html`<${Keys} />`;
    case 'pools':
      return n ? html`<${PoolPage} id=${n} key=${n} />` : html`<${Pools} />`;
    case 'enroll':
      return html`<${Enroll} />`;
    default:
      return html`<h1>Not found</h1><p>There is no page at ${hash}. <a href="#/">Go to the overview</a>.</p>`;
  }
}

function useHash() {
  const [hash, setHash] = useState(location.hash || '#/');
  useEffect(() => {
    const changed = () => setHash(location.hash || '#/');
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return hash;
}

function SignIn({ message, onSignedIn }) {
  const [error, setError] = useState(message ? new Error(message) : undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const field = event.currentTarget.elements.namedItem('token');
    setBusy(true);
    setError(undefined);
    try {
      await signIn(field.value.trim());
      field.value = '';
      onSignedIn();
    } catch (e) {
      setError(e);
      setBusy(false);
      field.focus();
    }
  };
  return html`<main class="signin">
    <h1>tailgate</h1>
    <form onSubmit=${submit}>
      <label for="token">Admin token</label>
      <input id="token" name="token" type="password" autocomplete="off" required autofocus aria-describedby="token-help" />
      <p id="token-help" class="hint">TAILGATE_ADMIN_TOKEN. Kept in this browser tab until you sign out or close it.</p>
      <${ErrorBox} error=${error} />
      <button type="submit" class="primary" disabled=${busy}>Sign in</button>
    </form>
  </main>`;
}

function App() {
  const [signedIn, setSignedIn] = useState(token() !== null);
  const [message, setMessage] = useState(undefined);
  const hash = useHash();
  useEffect(() => {
    whenSignedOut((why) => {
      setMessage(`Signed out: ${why}`);
      setSignedIn(false);
    });
  }, []);
  if (!signedIn) return html`<${SignIn} message=${message} onSignedIn=${() => setSignedIn(true)} />`;
  const section = `#/${hash.replace(/^#\/?/, '').split('/')[0]}`;
  const out = () => {
    signOut();
    setMessage(undefined);
    setSignedIn(false);
  };
  return html`<a class="skip" href="#main" onClick=${(e) => (e.preventDefault(), document.getElementById('main').focus())}>Skip to content</a>
    <header>
      <span class="brand">tailgate</span>
      <nav aria-label="Pages">
        ${NAV.map(([href, text]) => html`<a href=${href} aria-current=${section === href ? 'page' : undefined}>${text}</a>`)}
      </nav>
      <button type="button" class="signout" onClick=${out}>Sign out</button>
    </header>
    <main id="main" tabindex="-1">${route(hash)}</main>`;
}

render(html`<${App} />`, document.getElementById('app'));
