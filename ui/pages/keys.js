// Customer keys: the list with each key's quota use; creating one (its secret shown once, with ready-made curl lines);
// and a page per key to change its target and limits, rotate, disable or delete it, with its usage chart.
import { useState } from 'preact/hooks';
import { call } from '../api.js';
import { ActionButton, Confirm, Dialog, ErrorBox, Title, UsageBar, UsageChart, html, usePatch, useResource } from '../components.js';
import { count, parseSize, rate, when } from '../format.js';

const LIMIT_FIELDS = [
  ['maxTunnels', 'Max open tunnels', 'per gateway'],
  ['tunnelsPerSecond', 'New tunnels per second', 'may be a fraction'],
  ['tunnelBurst', 'Burst', 'tunnels at once after a quiet spell'],
  ['bytesPerSecondDown', 'Bytes per second down', 'at least 1024'],
  ['bytesPerSecondUp', 'Bytes per second up', 'at least 1024'],
];

function limitsText(limits) {
  const parts = [];
  if (limits.maxTunnels !== undefined) parts.push(`${count(limits.maxTunnels)} tunnels`);
  if (limits.tunnelsPerSecond !== undefined) parts.push(`${limits.tunnelsPerSecond}/s`);
  if (limits.bytesPerSecondDown !== undefined) parts.push(`${rate(limits.bytesPerSecondDown)} down`);
  if (limits.bytesPerSecondUp !== undefined) parts.push(`${rate(limits.bytesPerSecondUp)} up`);
  return parts.length === 0 ? 'none' : parts.join(', ');
}

/** What a key's target is called, linked. */
function TargetName({ target, devices, pools }) {
  if (target.device !== undefined) {
    const d = devices?.find((x) => x.id === target.device);
    return html`device <a href=${`#/devices/${target.device}`}>${d?.name ?? target.device}</a>`;
  }
  const p = pools?.find((x) => x.id === target.pool);
  return html`pool <a href=${`#/pools/${target.pool}`}>${p?.name ?? target.pool}</a>`;
}

function status(k) {
  if (k.disabled) return 'disabled';
  if (k.expiresAt !== null && Date.parse(k.expiresAt) <= Date.now()) return 'expired';
  return 'active';
}

/** `YYYY-MM-DDTHH:MM` for a datetime-local field, in the browser's time zone. */
function localInput(iso) {
  if (iso === null) return '';
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

/**
 * An option chosen when the form is drawn. The form's fields are initial values only (defaultValue, selected), so
 * the page's periodic refresh never overwrites what is being typed.
 */
function option(value, text, chosen) {
  return html`<option value=${value} selected=${value === chosen}>${text}</option>`;
}

/**
 * The fields of a key, for creating one (`key` absent: empty fields leave a limit out) or changing one (an emptied
 * field removes that limit).
 */
function KeyForm({ current: existing, devices, pools, submitLabel, onSubmit }) {
  const [error, setError] = useState(undefined);
  const [busy, setBusy] = useState(false);
  const target = existing ? (existing.target.device !== undefined ? `device:${existing.target.device}` : `pool:${existing.target.pool}`) : '';
  const submit = async (event) => {
    event.preventDefault();
    const f = new FormData(event.currentTarget);
    const text = (name) => String(f.get(name) ?? '').trim();
    setError(undefined);
    setBusy(true);
    try {
      const body = {};
      const name = text('name');
      if (name !== '' || existing) body.name = name === '' ? null : name;
      const [kind, id] = text('target').split(':');
      if (!kind) throw new Error('target: choose a device or a pool');
      if (!existing || text('target') !== target) body[kind] = Number(id);
      const expires = text('expiresAt');
      if (expires !== '' || (existing && existing.expiresAt !== null)) body.expiresAt = expires === '' ? null : new Date(expires).toISOString();
      const limits = {};
      for (const [field] of LIMIT_FIELDS) {
        const v = text(field);
        if (v !== '') limits[field] = Number(v);
        else if (existing?.limits[field] !== undefined) limits[field] = null;
      }
      const quota = text('quotaBytes');
      if (quota !== '') limits.quota = { bytes: parseSize(quota, 'quota'), period: text('quotaPeriod') };
      else if (existing?.limits.quota !== undefined) limits.quota = null;
      if (Object.keys(limits).length > 0) body.limits = limits;
      await onSubmit(body);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const l = existing?.limits ?? {};
  return html`<form class="stack" onSubmit=${submit}>
    <div class="fields">
      <label>Name <input name="name" defaultValue=${existing?.name ?? ''} maxlength="128" /></label>
      <label>Target
        <select name="target" required>
          <option value="" disabled selected=${target === ''}>choose…</option>
          <optgroup label="Devices">${(devices ?? []).map((d) => option(`device:${d.id}`, d.name ?? `device ${d.id}`, target))}</optgroup>
          <optgroup label="Pools">${(pools ?? []).map((p) => option(`pool:${p.id}`, p.name, target))}</optgroup>
        </select>
      </label>
      <label>Expires <input name="expiresAt" type="datetime-local" defaultValue=${localInput(existing?.expiresAt ?? null)} /></label>
    </div>
    <fieldset>
      <legend>Limits <span class="hint">(empty: no limit)</span></legend>
      <div class="fields">
        ${LIMIT_FIELDS.map(
          ([field, label, hint]) => html`<label>${label} <input name=${field} type="number" min="0" step="any" defaultValue=${l[field] ?? ''} aria-describedby=${`${field}-hint`} />
            <small class="hint" id=${`${field}-hint`}>${hint}</small></label>`,
        )}
        <label>Quota <input name="quotaBytes" defaultValue=${l.quota ? String(l.quota.bytes) : ''} placeholder="e.g. 10 GB" aria-describedby="quota-hint" />
          <small class="hint" id="quota-hint">bytes up + down, or 10 GB, 512 MiB</small></label>
        <label>Quota period
          <select name="quotaPeriod">
            ${option('day', 'day (UTC)', l.quota?.period ?? 'month')}${option('month', 'month (UTC)', l.quota?.period ?? 'month')}${option('total', 'total', l.quota?.period ?? 'month')}
          </select>
        </label>
      </div>
    </fieldset>
    <${ErrorBox} error=${error} />
    <div class="buttons"><button type="submit" class="primary" disabled=${busy}>${submitLabel}</button></div>
  </form>`;
}

/**
 * The secret, shown this once, with the client commands that use it. Closing the dialog drops it: it is in no state,
 * storage or element after that.
 */
function SecretDialog({ created, onClose }) {
  const stats = useResource('/stats');
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  const ports = stats.data?.listeners ?? { http: 8081, socks5: 1080 };
  const k = encodeURIComponent(created.key);
  // Only the listeners this gateway runs: with the plain ones turned off, the TLS ones.
  const lines = [
    ports.http && ['HTTP proxy', `curl -x http://${k}:${k}@${host}:${ports.http} https://example.com/`],
    ports.socks5 && ['SOCKS5', `curl --socks5-hostname ${k}:${k}@${host}:${ports.socks5} https://example.com/`],
    ports.https && ['HTTPS proxy', `curl --proxy https://${k}:${k}@${host}:${ports.https} https://example.com/`],
  ].filter(Boolean);
  const copy = async (text, event) => {
    const field = event.currentTarget.previousElementSibling;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // Without a secure context there is no clipboard API: leave the text selected for Ctrl+C.
      field.select();
    }
  };
  return html`<${Dialog} title=${`Key ${created.name ?? created.keyPrefix}: copy the secret now`} onClose=${onClose}>
    <p>This is the only time the secret is shown. It is stored only as a hash; rotate the key if it is lost.</p>
    <div class="copy">
      <label for="secret">Secret</label>
      <input id="secret" class="secret" readonly value=${created.key} onFocus=${(e) => e.currentTarget.select()} />
      <button type="button" onClick=${(e) => copy(created.key, e)}>Copy</button>
    </div>
    ${lines.map(
      ([label, line], i) => html`<div class="copy">
        <label for=${`line-${i}`}>${label}</label>
        <input id=${`line-${i}`} class="command" readonly value=${line} onFocus=${(e) => e.currentTarget.select()} />
        <button type="button" onClick=${(e) => copy(line, e)}>Copy</button>
      </div>`,
    )}
    <p class="hint">Host as this page was opened; use the gateway's proxy address if it differs.</p>
    <div class="buttons"><button type="button" class="primary" onClick=${onClose}>Done, I have copied it</button></div>
  <//>`;
}

export function Keys() {
  const keys = useResource('/keys', 10_000);
  const devices = useResource('/devices');
  const pools = useResource('/pools');
  const [creating, setCreating] = useState(false);
  const [created, setCreated] = useState(null);
  return html`<${Title}>Keys<//>
    <div class="buttons"><button type="button" class="primary" onClick=${() => setCreating(true)}>Create key…</button></div>
    <${ErrorBox} error=${keys.error ?? devices.error ?? pools.error} />
    <div class="scroll">
      <table>
        <thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Target</th><th scope="col">Status</th><th scope="col">Limits</th><th scope="col">Quota</th><th scope="col">Created</th></tr></thead>
        <tbody>
          ${(keys.data ?? []).map(
            (k) => html`<tr>
              <td><a href=${`#/keys/${k.id}`}>${k.name ?? `key ${k.id}`}</a></td>
              <td><code>${k.keyPrefix}</code></td>
              <td><${TargetName} target=${k.target} devices=${devices.data} pools=${pools.data} /></td>
              <td><span class=${`state ${status(k) === 'active' ? 'up' : 'down'}`}>${status(k)}</span></td>
              <td>${limitsText(k.limits)}</td>
              <td>${k.quota ? html`<${UsageBar} used=${k.quota.used} limit=${k.quota.limit} label=${`Quota of ${k.name ?? k.id} used`} />` : html`<span class="hint">none</span>`}</td>
              <td>${when(k.createdAt)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
    ${creating &&
    html`<${Dialog} title="Create a key" onClose=${() => setCreating(false)}>
      <${KeyForm}
        devices=${devices.data}
        pools=${pools.data}
        submitLabel="Create key"
        onSubmit=${async (body) => {
          const answer = await call('POST', '/keys', body);
          setCreating(false);
          setCreated(answer);
          await keys.reload();
        }}
      />
      <div class="buttons"><button type="button" onClick=${() => setCreating(false)}>Cancel</button></div>
    <//>`}
    ${created && html`<${SecretDialog} created=${created} onClose=${() => setCreated(null)} />`}`;
}

export function KeyPage({ id }) {
  const key = useResource(`/keys/${id}`, 5_000);
  const devices = useResource('/devices');
  const pools = useResource('/pools');
  const [confirming, setConfirming] = useState(null);
  const [created, setCreated] = useState(null);
  const save = usePatch(`/keys/${id}`, key.reload);
  const k = key.data;
  if (!k) return html`<${Title}>Key ${id}<//><${ErrorBox} error=${key.error} />`;
  const name = k.name ?? `key ${id}`;
  return html`<${Title}>${name}<//>
    <${ErrorBox} error=${key.error} />
    <dl class="facts">
      <dt>Prefix</dt><dd><code>${k.keyPrefix}</code> <span class="hint">(the first hex digits of its SHA-256, as logs show it)</span></dd>
      <dt>Target</dt><dd><${TargetName} target=${k.target} devices=${devices.data} pools=${pools.data} /></dd>
      <dt>Status</dt><dd>${status(k)}</dd>
      <dt>Expires</dt><dd>${when(k.expiresAt) === '—' ? 'never' : when(k.expiresAt)}</dd>
      <dt>Created</dt><dd>${when(k.createdAt)}</dd>
      ${k.quota &&
      html`<dt>Quota (${k.limits.quota.period})</dt>
        <dd><${UsageBar} used=${k.quota.used} limit=${k.quota.limit} label="Quota used" />
          ${k.quota.resetsAt && html`<small class="hint">resets ${when(k.quota.resetsAt)}</small>`}</dd>`}
    </dl>
    <div class="buttons">
      <${ActionButton}
        action=${async () => {
          await call('PATCH', `/keys/${id}`, { disabled: !k.disabled });
          await key.reload();
        }}
        >${k.disabled ? 'Enable' : 'Disable'}<//
      >
      <button type="button" onClick=${() => setConfirming('rotate')}>Rotate…</button>
      <button type="button" class="danger" onClick=${() => setConfirming('delete')}>Delete…</button>
    </div>
    <${UsageChart} path=${`/keys/${id}/usage`} />
    <section aria-labelledby="key-settings">
      <h2 id="key-settings">Target and limits</h2>
      <${KeyForm}
        current=${k}
        devices=${devices.data}
        pools=${pools.data}
        submitLabel="Save"
        onSubmit=${save.patch}
      />
      ${save.saved}
    </section>
    ${confirming === 'rotate' &&
    html`<${Confirm}
      title=${`Rotate ${name}?`}
      confirm="Rotate"
      onClose=${() => setConfirming(null)}
      action=${async () => setCreated(await call('POST', `/keys/${id}/rotate`))}
    >
      <p>A new secret replaces the old one, which is refused from the next connection on. Tunnels already open stay open.</p>
    <//>`}
    ${confirming === 'delete' &&
    html`<${Confirm}
      title=${`Delete ${name}?`}
      confirm="Delete key"
      onClose=${() => setConfirming(null)}
      action=${async () => {
        await call('DELETE', `/keys/${id}`);
        location.hash = '#/keys';
      }}
    >
      <p>It is refused at once and its open tunnels are cut. Its usage stays, for billing.</p>
    <//>`}
    ${created && html`<${SecretDialog} created=${created} onClose=${() => setCreated(null)} />`}`;
}
