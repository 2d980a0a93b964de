// Approving a device waiting in Headscale: its registration key (or the URL `tailscale up` printed, which ends in it)
// becomes the device's proxy key, as POST /register does for devices that enroll themselves.
import { useState } from 'preact/hooks';
import { call } from '../api.js';
import { ErrorBox, Title, html } from '../components.js';

/** The registration key from what was pasted: the key itself, or a URL whose last path segment it is. */
export function registrationKey(pasted) {
  const text = pasted.trim();
  if (!/^https?:\/\//i.test(text)) return text;
  const segments = new URL(text).pathname.split('/').filter((s) => s !== '');
  return decodeURIComponent(segments.at(-1) ?? '');
}

export function Enroll() {
  const [error, setError] = useState(undefined);
  const [done, setDone] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const f = new FormData(form);
    setError(undefined);
    setDone(null);
    setBusy(true);
    try {
      const key = registrationKey(String(f.get('registration') ?? ''));
      const name = String(f.get('name') ?? '').trim();
      const answer = await call('POST', '/register', name === '' ? { key } : { key, name });
      form.reset();
      setDone(answer);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Title}>Enroll a device<//>
    <p>On the device, run <code>tailscale up --login-server=https://your-headscale</code>. Paste the URL it prints (or just the
      registration key at its end) here: the device is approved in Headscale and the key becomes its proxy key.</p>
    <form class="stack" onSubmit=${submit}>
      <label for="registration">Registration key or URL</label>
      <input id="registration" name="registration" required autocomplete="off" placeholder="https://headscale.example.com/register/…" />
      <label for="device-name">Name <span class="hint">(optional)</span></label>
      <input id="device-name" name="name" maxlength="128" />
      <${ErrorBox} error=${error} />
      <div class="buttons"><button type="submit" class="primary" disabled=${busy}>Approve device</button></div>
    </form>
    ${done &&
    html`<p role="status" class="ok">Approved: ${done.node.name ?? 'device'} at <code>${done.ip}</code>.
      <a href=${`#/keys/${done.node.id}`}>Its key</a> · <a href="#/devices">Devices</a></p>`}`;
}
