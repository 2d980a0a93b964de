// The pieces every page uses: markup through htm, data loading with refresh, error boxes, dialogs, charts.
import { h } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import uPlot from 'uplot';
import { call } from './api.js';
import { bytes, count, rate } from './format.js';

export const html = htm.bind(h);

/**
 * GET `path` now and every `refreshMs` (0: once); `reload()` reads it again at once. A failed refresh keeps the last
 * data and shows the error.
 * @param {string | null} path
 */
export function useResource(path, refreshMs = 0) {
  const [state, setState] = useState({ data: undefined, error: undefined, loading: true });
  const generation = useRef(0);
  const reload = useCallback(async () => {
    if (path === null) return;
    const mine = ++generation.current;
    try {
      const data = await call('GET', path);
      if (mine === generation.current) setState({ data, error: undefined, loading: false });
    } catch (error) {
      if (mine === generation.current) setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, [path]);
  useEffect(() => {
    setState({ data: undefined, error: undefined, loading: true });
    void reload();
    if (refreshMs <= 0) return () => generation.current++;
    const timer = setInterval(() => void reload(), refreshMs);
    return () => {
      clearInterval(timer);
      generation.current++;
    };
  }, [reload, refreshMs]);
  return { ...state, reload };
}

/** An API error where it happened, read out by screen readers as it appears. */
export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message}</p>`;
}

/** A form's changes PATCHed to `path`, then what the page shows read again; `saved` until the next change. */
export function usePatch(path, reload) {
  const [saved, setSaved] = useState(false);
  const patch = async (body) => {
    setSaved(false);
    await call('PATCH', path, body);
    await reload();
    setSaved(true);
  };
  return { patch, saved: saved ? html`<p role="status">Saved.</p>` : null };
}

/** A button that runs `action`, shows it is busy and reports a failure next to itself. */
export function ActionButton({ action, children, kind = '', label }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(undefined);
  const run = async () => {
    setBusy(true);
    setError(undefined);
    try {
      await action();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return html`<span class="action">
    <button type="button" class=${kind} onClick=${run} disabled=${busy} aria-label=${label}>${children}</button>
    <${ErrorBox} error=${error} />
  </span>`;
}

/** A modal dialog (the browser's own: it keeps focus inside and closes on Escape). Rendered only while open. */
export function Dialog({ title, onClose, children }) {
  const ref = useRef(null);
  useEffect(() => {
    const dialog = ref.current;
    dialog.showModal();
    const closed = () => onClose();
    dialog.addEventListener('close', closed);
    return () => dialog.removeEventListener('close', closed);
  }, []);
  return html`<dialog ref=${ref} aria-labelledby="dialog-title">
    <h2 id="dialog-title">${title}</h2>
    ${children}
  </dialog>`;
}

/** Asks before a change that cannot be undone. */
export function Confirm({ title, children, confirm, action, onClose }) {
  const [error, setError] = useState(undefined);
  const [busy, setBusy] = useState(false);
  const go = async (event) => {
    event.preventDefault();
    setBusy(true);
    try {
      await action();
      onClose();
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <form onSubmit=${go}>
      ${children}
      <${ErrorBox} error=${error} />
      <div class="buttons">
        <button type="submit" class="danger" disabled=${busy}>${confirm}</button>
        <button type="button" onClick=${onClose}>Cancel</button>
      </div>
    </form>
  <//>`;
}

/** A small line of bytes per step, drawn as SVG (no chart library for hundreds of rows). */
export function Sparkline({ values, label }) {
  const w = 100;
  const hgt = 24;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 1 - (v / max) * (hgt - 2)).toFixed(1)}`).join(' ');
  return html`<svg class="spark" viewBox="0 0 ${w} ${hgt}" width=${w} height=${hgt} role="img" aria-label=${label}>
    <polyline points=${points} />
  </svg>`;
}

/** How much of a quota is used. */
export function UsageBar({ used, limit, label }) {
  const share = limit > 0 ? Math.min(1, used / limit) : 1;
  return html`<div class="usagebar">
    <progress max="1" value=${share} aria-label=${label}></progress>
    <span>${bytes(used)} of ${bytes(limit)} (${Math.round(share * 100)} %)</span>
  </div>`;
}

/**
 * A uPlot chart that follows its container's width. `data` is uPlot's columns: times in seconds, then one array per
 * series in `series`.
 */
export function Chart({ data, series, height = 220, label, bars = false, windowSeconds = 0, stepSeconds = 0 }) {
  const box = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const width = Math.max(240, box.current.clientWidth);
    const axisValues = (_u, ticks) => ticks.map((v) => (series[0].unit === 'count' ? count(v) : series[0].unit === 'rate' ? rate(v) : bytes(v)));
    plot.current = new uPlot(
      {
        width,
        height,
        series: [
          {},
          ...series.map((s) => ({
            label: s.label,
            stroke: s.color,
            fill: s.fill === false ? undefined : `${s.color}33`,
            width: 2,
            points: { show: false },
            scale: s.scale ?? 'y',
            paths: bars ? uPlot.paths.bars({ size: [0.6, 40] }) : undefined,
            value: (_u, v) => (v === null ? '—' : s.unit === 'count' ? count(v) : s.unit === 'rate' ? rate(v) : bytes(v)),
          })),
        ],
        axes: [
          { space: 90 },
          { values: axisValues, size: 90 },
          ...(series.some((s) => s.scale === 'n') ? [{ scale: 'n', side: 1, values: (_u, t) => t.map((v) => count(v)), grid: { show: false } }] : []),
        ],
        // From zero, and at least 1 kB (or 1 tunnel) tall, so an idle chart does not label its axis in fractions.
        // A live chart shows its whole window, so it scrolls as points arrive; bars get half a step at each end.
        scales: {
          x: {
            time: true,
            range: (_u, min, max) => {
              const now = Date.now() / 1000;
              if (windowSeconds > 0 || min === null) return [now - (windowSeconds || 86_400), now];
              return [min - stepSeconds / 2, max + stepSeconds / 2];
            },
          },
          y: { range: (_u, _min, max) => [0, Math.max(1000, max * 1.1)] },
          n: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] },
        },
      },
      data,
      box.current,
    );
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: Math.max(240, box.current.clientWidth), height }));
    resize.observe(box.current);
    return () => {
      resize.disconnect();
      plot.current.destroy();
      plot.current = null;
    };
  }, [bars, stepSeconds]);
  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);
  return html`<figure class="chart" role="img" aria-label=${label}><div ref=${box}></div></figure>`;
}

/** A key's or device's usage over time, by hour or by day, with its total. */
export function UsageChart({ path }) {
  const [step, setStep] = useState('hour');
  const usage = useResource(`${path}?step=${step}`, 30_000);
  const s = usage.data;
  const data = s ? [s.series.map((p) => Date.parse(p.t) / 1000), s.series.map((p) => p.bytesDown), s.series.map((p) => p.bytesUp)] : [[], [], []];
  return html`<section aria-labelledby="usage-title">
    <div class="row">
      <h2 id="usage-title">Usage</h2>
      <div class="toggle" role="group" aria-label="Step">
        ${['hour', 'day'].map((v) => html`<button type="button" aria-pressed=${step === v} onClick=${() => setStep(v)}>${v === 'hour' ? 'Hourly (24 h)' : 'Daily (30 d)'}</button>`)}
      </div>
    </div>
    <${ErrorBox} error=${usage.error} />
    ${s &&
    html`<p class="total" data-bytes=${s.total.bytesUp + s.total.bytesDown}>
      Total: ${bytes(s.total.bytesDown)} down · ${bytes(s.total.bytesUp)} up · ${count(s.total.tunnels)} tunnels · ${count(s.total.refused)} refused ·
      ${count(s.total.failures)} failures
    </p>`}
    <${Chart}
      data=${data}
      bars=${true}
      stepSeconds=${step === 'hour' ? 3600 : 86400}
      label=${`Bytes per ${step}, down and up`}
      series=${[
        { label: 'down', color: '#2563eb', unit: 'bytes' },
        { label: 'up', color: '#16a34a', unit: 'bytes' },
      ]}
    />
  </section>`;
}

/** Whether a page has been shown yet: the first one leaves the focus at the top, where the skip link is. */
let shownPage = false;

/** A page's heading, focused when the page changes so keyboard and screen-reader users start there. */
export function Title({ children }) {
  const ref = useRef(null);
  useEffect(() => {
    if (shownPage) ref.current?.focus();
    shownPage = true;
  }, []);
  return html`<h1 tabindex="-1" ref=${ref}>${children}</h1>`;
}
