// Pools: their members (listed devices, or every device whose labels match a selector), created and changed here.
import { useState } from 'preact/hooks';
import { call } from '../api.js';
import { Confirm, Dialog, ErrorBox, Title, html, usePatch, useResource } from '../components.js';
import { labelText, parseLabels, when } from '../format.js';
import { Health, matches } from './devices.js';

/** The devices in the pool now, by the store's rule, from the device list the page already has. */
function members(pool, devices) {
  return devices.filter((d) => (pool.selector === null ? pool.devices.includes(d.id) : matches(d.labels, pool.selector)));
}

function PoolForm({ current, devices, submitLabel, onSubmit }) {
  const [mode, setMode] = useState(current?.selector === null ? 'devices' : 'selector');
  const [error, setError] = useState(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const f = new FormData(event.currentTarget);
    setError(undefined);
    setBusy(true);
    try {
      const body = { name: String(f.get('name') ?? '').trim() };
      if (mode === 'devices') body.devices = f.getAll('devices').map(Number);
      else body.selector = parseLabels(String(f.get('selector') ?? ''));
      await onSubmit(body);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="stack" onSubmit=${submit}>
    <label>Name <input name="name" required maxlength="128" defaultValue=${current?.name ?? ''} /></label>
    <fieldset>
      <legend>Members</legend>
      <label class="check"><input type="radio" name="mode" checked=${mode === 'selector'} onChange=${() => setMode('selector')} /> Every device with these labels (devices that register later join by themselves)</label>
      <label class="check"><input type="radio" name="mode" checked=${mode === 'devices'} onChange=${() => setMode('devices')} /> These devices</label>
      ${mode === 'selector'
        ? html`<label>Selector <span class="hint">(one key=value a line; a device needs all of them)</span>
            <textarea name="selector" rows="3" required>${labelText(current?.selector ?? {}).join('\n')}</textarea></label>`
        : html`<div class="checks" role="group" aria-label="Devices">
            ${devices.map(
              (d) => html`<label class="check"><input type="checkbox" name="devices" value=${d.id} defaultChecked=${current?.devices.includes(d.id) ?? false} /> ${d.name ?? `device ${d.id}`}
                <span class="hint">${labelText(d.labels).join(' ')}</span></label>`,
            )}
          </div>`}
    </fieldset>
    <${ErrorBox} error=${error} />
    <div class="buttons"><button type="submit" class="primary" disabled=${busy}>${submitLabel}</button></div>
  </form>`;
}

export function Pools() {
  const pools = useResource('/pools', 10_000);
  const devices = useResource('/devices', 10_000);
  const [creating, setCreating] = useState(false);
  const all = devices.data ?? [];
  return html`<${Title}>Pools<//>
    <div class="buttons"><button type="button" class="primary" onClick=${() => setCreating(true)}>Create pool…</button></div>
    <${ErrorBox} error=${pools.error ?? devices.error} />
    <div class="scroll">
      <table>
        <thead><tr><th scope="col">Name</th><th scope="col">Selector</th><th scope="col">Members</th><th scope="col">Up</th><th scope="col">Changed</th></tr></thead>
        <tbody>
          ${(pools.data ?? []).map((p) => {
            const m = members(p, all);
            return html`<tr>
              <td><a href=${`#/pools/${p.id}`}>${p.name}</a></td>
              <td>${p.selector === null ? html`<span class="hint">listed devices</span>` : labelText(p.selector).join(', ')}</td>
              <td>${m.map((d) => d.name ?? d.id).join(', ') || html`<span class="hint">none</span>`}</td>
              <td>${m.filter((d) => d.health.state === 'up').length} of ${m.length}</td>
              <td>${when(p.updatedAt)}</td>
            </tr>`;
          })}
        </tbody>
      </table>
    </div>
    ${creating &&
    html`<${Dialog} title="Create a pool" onClose=${() => setCreating(false)}>
      <${PoolForm}
        devices=${all}
        submitLabel="Create pool"
        onSubmit=${async (body) => {
          const p = await call('POST', '/pools', body);
          setCreating(false);
          location.hash = `#/pools/${p.id}`;
        }}
      />
      <div class="buttons"><button type="button" onClick=${() => setCreating(false)}>Cancel</button></div>
    <//>`}`;
}

export function PoolPage({ id }) {
  const pool = useResource(`/pools/${id}`, 5_000);
  const devices = useResource('/devices');
  const [deleting, setDeleting] = useState(false);
  const save = usePatch(`/pools/${id}`, pool.reload);
  const p = pool.data;
  if (!p) return html`<${Title}>Pool ${id}<//><${ErrorBox} error=${pool.error} />`;
  return html`<${Title}>${p.name}<//>
    <${ErrorBox} error=${pool.error} />
    <p>${p.selector === null ? 'Listed devices.' : `Every device labelled ${labelText(p.selector).join(', ')}.`}</p>
    <div class="buttons"><button type="button" class="danger" onClick=${() => setDeleting(true)}>Delete…</button></div>
    <section aria-labelledby="pool-members">
      <h2 id="pool-members">Members</h2>
      <div class="scroll">
        <table>
          <thead><tr><th scope="col">Device</th><th scope="col">Health</th><th scope="col">Labels</th><th scope="col" class="num">Open tunnels</th></tr></thead>
          <tbody>
            ${p.members.map(
              (d) => html`<tr>
                <td><a href=${`#/devices/${d.id}`}>${d.name ?? `device ${d.id}`}</a>${!d.enabled && html` <span class="tag">disabled</span>`}</td>
                <td><${Health} health=${d.health} /></td>
                <td>${labelText(d.labels).join(', ')}</td>
                <td class="num">${d.openTunnels}</td>
              </tr>`,
            )}
          </tbody>
        </table>
      </div>
      ${p.members.length === 0 && html`<p class="hint">No device is in this pool now.</p>`}
    </section>
    <section aria-labelledby="pool-edit">
      <h2 id="pool-edit">Change</h2>
      ${devices.data &&
      html`<${PoolForm}
        current=${p}
        devices=${devices.data}
        submitLabel="Save"
        onSubmit=${save.patch}
      />`}
      ${save.saved}
    </section>
    ${deleting &&
    html`<${Confirm}
      title=${`Delete pool ${p.name}?`}
      confirm="Delete pool"
      onClose=${() => setDeleting(false)}
      action=${async () => {
        await call('DELETE', `/pools/${id}`);
        location.hash = '#/pools';
      }}
    >
      <p>Its devices stay. A pool that keys target cannot be deleted: move or delete those keys first.</p>
    <//>`}`;
}
