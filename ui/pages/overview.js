// Devices by state, open tunnels, the last minutes of traffic (refreshed every sample), and today's top users.
import { Chart, ErrorBox, Title, html, useResource } from '../components.js';
import { bytes, count, rate, startOfTodayUtc } from '../format.js';

function Stat({ label, value, note }) {
  return html`<div class="stat">
    <dt>${label}</dt>
    <dd>${value}${note && html`<small>${note}</small>`}</dd>
  </div>`;
}

function Top({ title, by, rows }) {
  const shown = (rows ?? []).slice(0, 5);
  return html`<section class="card" aria-labelledby=${`top-${by}`}>
    <h2 id=${`top-${by}`}>${title}</h2>
    ${shown.length === 0
      ? html`<p class="hint">No traffic yet today.</p>`
      : html`<table>
          <thead><tr><th scope="col">${by === 'key' ? 'Key' : 'Device'}</th><th scope="col" class="num">Bytes</th><th scope="col" class="num">Tunnels</th></tr></thead>
          <tbody>
            ${shown.map(
              (r) => html`<tr>
                <td><a href=${`#/${by}s/${r.id}`}>${r.name ?? `${by} ${r.id}`}</a></td>
                <td class="num">${bytes(r.bytesUp + r.bytesDown)}</td>
                <td class="num">${count(r.tunnels)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
  </section>`;
}

export function Overview() {
  const stats = useResource('/stats', 2_000);
  const today = startOfTodayUtc();
  const keys = useResource(`/usage?by=key&from=${encodeURIComponent(today)}`, 10_000);
  const devices = useResource(`/usage?by=device&from=${encodeURIComponent(today)}`, 10_000);
  const s = stats.data;
  const now = s?.series.at(-1);
  const data = s
    ? [s.series.map((p) => Date.parse(p.t) / 1000), s.series.map((p) => p.bytesDownPerSecond), s.series.map((p) => p.bytesUpPerSecond), s.series.map((p) => p.tunnelsPerSecond)]
    : [[], [], [], []];
  return html`<${Title}>Overview<//>
    <${ErrorBox} error=${stats.error} />
    ${s &&
    html`<dl class="stats" aria-live="polite">
      <${Stat} label="Devices up" value=${count(s.devices.up)} note=${`of ${count(s.devices.total)}`} />
      <${Stat} label="Devices down" value=${count(s.devices.down)} note=${s.devices.unknown > 0 ? `${count(s.devices.unknown)} unknown` : ''} />
      <${Stat} label="Relayed (DERP)" value=${count(s.devices.relayed)} />
      <${Stat} label="Open tunnels" value=${count(s.tunnelsOpen)} />
      <${Stat} label="Tunnels per second" value=${now ? now.tunnelsPerSecond.toFixed(1) : '—'} />
      <${Stat} label="Down / up now" value=${now ? rate(now.bytesDownPerSecond) : '—'} note=${now ? `${rate(now.bytesUpPerSecond)} up` : ''} />
    </dl>`}
    <section class="card" aria-labelledby="live-title">
      <h2 id="live-title">Traffic, last minutes${s ? html` <small class="hint">(this gateway, every ${s.intervalSeconds} s)</small>` : ''}</h2>
      <${Chart}
        data=${data}
        label="Bytes per second down and up, and tunnels per second, over the last minutes"
        series=${[
          { label: 'down', color: '#2563eb', unit: 'rate' },
          { label: 'up', color: '#16a34a', unit: 'rate' },
          { label: 'tunnels/s', color: '#d97706', unit: 'count', scale: 'n', fill: false },
        ]}
        windowSeconds=${600}
      />
    </section>
    <div class="grid2">
      <${Top} title="Top keys today" by="key" rows=${keys.data?.usage} />
      <${Top} title="Top devices today" by="device" rows=${devices.data?.usage} />
    </div>
    <${ErrorBox} error=${keys.error ?? devices.error} />`;
}
