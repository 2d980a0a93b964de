// The devices: a table with live state and a day of traffic per device, filtered by label and state; and a page per
// device with its usage, its keys and pools, and the changes an operator makes to it.
import { useMemo, useState } from 'preact/hooks';
import { call } from '../api.js';
import { ActionButton, Confirm, ErrorBox, Sparkline, Title, UsageChart, html, usePatch, useResource } from '../components.js';
import { ago, bytes, count, labelText, parseLabels, when } from '../format.js';

/** Up, down or unknown, with why and since when. */
export function Health({ health }) {
  return html`<span class=${`state ${health.state}`}>${health.state}</span>
    ${health.reason && html` <span class="hint">${health.reason}</span>`}
    ${health.since && html`<br /><small class="hint" title=${when(health.since)}>since ${ago(health.since)}</small>`}`;
}

export function Path({ relayed }) {
  return relayed === null ? html`<span class="hint">—</span>` : relayed ? 'DERP' : 'direct';
}

function Labels({ labels }) {
  const items = labelText(labels);
  return items.length === 0 ? html`<span class="hint">none</span>` : html`<ul class="labels">${items.map((l) => html`<li>${l}</li>`)}</ul>`;
}

/** Does the device carry every label of the selector? (The pools' own rule.) */
export function matches(labels, selector) {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

export function Devices() {
  const devices = useResource('/devices', 5_000);
  const from = useMemo(() => new Date(Date.now() - 23 * 3_600_000).toISOString(), []);
  const series = useResource(`/usage/series?by=device&step=hour&from=${encodeURIComponent(from)}`, 60_000);
  const [label, setLabel] = useState('');
  const [state, setState] = useState('');
  const list = devices.data ?? [];
  const allLabels = [...new Set(list.flatMap((d) => labelText(d.labels)))].sort();
  const traffic = new Map((series.data?.series ?? []).map((s) => [s.id, s.bytes]));
  const shown = list.filter((d) => (state === '' || d.health.state === state) && (label === '' || labelText(d.labels).includes(label)));
  return html`<${Title}>Devices<//>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>Label
        <select value=${label} onChange=${(e) => setLabel(e.currentTarget.value)}>
          <option value="">any</option>
          ${allLabels.map((l) => html`<option value=${l}>${l}</option>`)}
        </select>
      </label>
      <label>State
        <select value=${state} onChange=${(e) => setState(e.currentTarget.value)}>
          <option value="">any</option>
          <option value="up">up</option>
          <option value="down">down</option>
          <option value="unknown">unknown</option>
        </select>
      </label>
      <span class="hint" aria-live="polite">${shown.length} of ${list.length} devices</span>
    </form>
    <${ErrorBox} error=${devices.error ?? series.error} />
    <div class="scroll">
      <table class="devices">
        <thead>
          <tr>
            <th scope="col">Name</th><th scope="col">Labels</th><th scope="col">Tailnet IP</th><th scope="col">Health</th>
            <th scope="col">Path</th><th scope="col">Last handshake</th><th scope="col" class="num">Open tunnels</th><th scope="col">Traffic 24 h</th>
          </tr>
        </thead>
        <tbody>
          ${shown.map((d) => {
            const b = traffic.get(d.id) ?? [];
            const total = b.reduce((a, v) => a + v, 0);
            return html`<tr>
              <td><a href=${`#/devices/${d.id}`}>${d.name ?? `device ${d.id}`}</a>${!d.enabled && html` <span class="tag">disabled</span>`}</td>
              <td><${Labels} labels=${d.labels} /></td>
              <td><code>${d.ip}</code></td>
              <td><${Health} health=${d.health} /></td>
              <td><${Path} relayed=${d.relayed} /></td>
              <td title=${when(d.lastHandshake)}>${ago(d.lastHandshake)}</td>
              <td class="num">${count(d.openTunnels)}</td>
              <td class="traffic">${bytes(total)} <${Sparkline} values=${b} label=${`${d.name ?? d.id}: ${bytes(total)} in 24 hours`} /></td>
            </tr>`;
          })}
        </tbody>
      </table>
    </div>
    ${devices.data && list.length === 0 && html`<p class="hint">No devices yet: <a href="#/enroll">enroll one</a>.</p>`}`;
}

function LabelsForm({ device, onSaved }) {
  const [error, setError] = useState(undefined);
  const labels = usePatch(`/devices/${device.id}`, onSaved);
  const save = async (event) => {
    event.preventDefault();
    setError(undefined);
    try {
      await labels.patch({ labels: parseLabels(event.currentTarget.elements.namedItem('labels').value) });
    } catch (e) {
      setError(e);
    }
  };
  return html`<form onSubmit=${save} class="stack">
    <label for="labels">Labels <span class="hint">(one key=value a line)</span></label>
    <textarea id="labels" name="labels" rows="3">${labelText(device.labels).join('\n')}</textarea>
    <${ErrorBox} error=${error} />
    <div class="buttons"><button type="submit">Save labels</button></div>
    ${labels.saved}
  </form>`;
}

export function DevicePage({ id }) {
  const device = useResource(`/devices/${id}`, 5_000);
  const keys = useResource('/keys');
  const pools = useResource('/pools');
  const [deleting, setDeleting] = useState(false);
  const [purge, setPurge] = useState(false);
  const d = device.data;
  if (!d) return html`<${Title}>Device ${id}<//><${ErrorBox} error=${device.error} />`;
  const myKeys = (keys.data ?? []).filter((k) => k.target.device === id);
  const myPools = (pools.data ?? []).filter((p) => (p.selector === null ? p.devices.includes(id) : matches(d.labels, p.selector)));
  const toggle = async () => {
    await call('PATCH', `/devices/${id}`, { enabled: !d.enabled });
    await device.reload();
  };
  return html`<${Title}>${d.name ?? `Device ${id}`}<//>
    <${ErrorBox} error=${device.error} />
    <dl class="facts">
      <dt>Health</dt><dd><${Health} health=${d.health} /></dd>
      <dt>Tailnet IP</dt><dd><code>${d.ip}</code>${d.ipv6 && html` <code>${d.ipv6}</code>`}</dd>
      <dt>Proxy</dt><dd>${d.protocol} on port ${d.port}</dd>
      <dt>Path</dt><dd><${Path} relayed=${d.relayed} /></dd>
      <dt>Last handshake</dt><dd>${ago(d.lastHandshake)}</dd>
      <dt>Open tunnels</dt><dd>${count(d.openTunnels)}</dd>
      <dt>Headscale node</dt><dd>${d.headscaleNodeId ?? html`<span class="hint">none</span>`}</dd>
      <dt>Registered</dt><dd>${when(d.createdAt)}</dd>
    </dl>
    <div class="buttons">
      <${ActionButton} action=${toggle}>${d.enabled ? 'Disable' : 'Enable'}<//>
      <button type="button" class="danger" onClick=${() => setDeleting(true)}>Delete…</button>
    </div>
    <${UsageChart} path=${`/devices/${id}/usage`} />
    <section aria-labelledby="device-labels"><h2 id="device-labels">Labels</h2><${LabelsForm} device=${d} onSaved=${device.reload} /></section>
    <section aria-labelledby="device-keys">
      <h2 id="device-keys">Keys</h2>
      <${ErrorBox} error=${keys.error} />
      ${myKeys.length === 0
        ? html`<p class="hint">No key targets this device directly.</p>`
        : html`<ul>${myKeys.map((k) => html`<li><a href=${`#/keys/${k.id}`}>${k.name ?? k.keyPrefix}</a>${k.disabled && ' (disabled)'}</li>`)}</ul>`}
    </section>
    <section aria-labelledby="device-pools">
      <h2 id="device-pools">Pools</h2>
      <${ErrorBox} error=${pools.error} />
      ${myPools.length === 0
        ? html`<p class="hint">In no pool.</p>`
        : html`<ul>${myPools.map((p) => html`<li><a href=${`#/pools/${p.id}`}>${p.name}</a></li>`)}</ul>`}
    </section>
    ${deleting &&
    html`<${Confirm}
      title=${`Delete ${d.name ?? `device ${id}`}?`}
      confirm="Delete device"
      onClose=${() => setDeleting(false)}
      action=${async () => {
        await call('DELETE', `/devices/${id}${purge ? '?purge=true' : ''}`);
        location.hash = '#/devices';
      }}
    >
      <p>The keys that target it directly are deleted with it and their open tunnels cut.</p>
      <label class="check"><input type="checkbox" checked=${purge} onChange=${(e) => setPurge(e.currentTarget.checked)} /> Also delete it in Headscale (purge)</label>
    <//>`}`;
}
