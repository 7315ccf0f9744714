// The device page's chart: uPlot over the telemetry REST API (same-origin, the console's cookie), never through a
// Blazor circuit. The last hour is drawn raw; a day or a week as one aggregate (AVG, MIN or MAX) per interval, so
// a week stays about a thousand points whatever the device sends; or every point (Raw), read page by page. New values come from the latest-values poll
// (console.js sends a 'taihu:latest' event) and are appended as raw points. Drag across the plot to zoom;
// double-click or "Reset zoom" to go back.
(() => {
  const root = document.getElementById('chart');
  if (!root || typeof uPlot === 'undefined') return;

  const ranges = {
    hour: { span: 3600e3, interval: 0 },
    day: { span: 86400e3, interval: 60e3 },        // 1,440 intervals of a minute
    week: { span: 7 * 86400e3, interval: 600e3 },  // 1,008 intervals of ten minutes
  };
  const colors = ['#594ae2', '#e65100', '#2e7d32', '#c2185b', '#00838f', '#6d4c41', '#455a64', '#f9a825'];
  const keysBox = document.getElementById('chart-keys');
  const rangeSelect = document.getElementById('chart-range');
  const aggSelect = document.getElementById('chart-agg');
  const resetButton = document.getElementById('chart-reset');
  const plotBox = document.getElementById('chart-plot');
  const status = document.getElementById('chart-status');
  const text = root.dataset;
  const format = (template, ...args) => template.replace(/\{(\d+)\}/g, (_, i) => String(args[Number(i)]));

  let plot = null;
  let series = new Map();   // key -> Map(ts -> number|null), the points on the chart
  let start = 0;
  let end = 0;
  let zoomed = false;
  let loading = 0;

  const numeric = value => {
    if (typeof value === 'number') return Number.isFinite(value) ? value : null;
    if (typeof value === 'boolean') return value ? 1 : 0;
    if (value === 'true') return 1;
    if (value === 'false') return 0;
    const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
    return Number.isFinite(number) ? number : null;
  };

  const chosenKeys = () => [...keysBox.querySelectorAll('input[type=checkbox]:checked')].map(box => box.value);

  const addKey = (key, checked) => {
    if (keysBox.querySelector(`input[value="${CSS.escape(key)}"]`)) return;
    const label = document.createElement('label');
    label.className = 'taihu-check';
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.value = key;
    box.checked = checked;
    box.addEventListener('change', load);
    label.append(box, ' ' + key);
    keysBox.querySelector('.taihu-chart-nokeys')?.remove();
    keysBox.appendChild(label);
  };

  // uPlot takes aligned columns: one x array (ms) and one y array per key, null where a key has no point.
  const columns = keys => {
    const stamps = new Set();
    for (const key of keys) for (const ts of (series.get(key) ?? new Map()).keys()) stamps.add(ts);
    const xs = [...stamps].sort((a, b) => a - b);
    return [xs, ...keys.map(key => { const points = series.get(key) ?? new Map(); return xs.map(ts => points.has(ts) ? points.get(ts) : null); })];
  };

  const pointCount = keys => keys.reduce((sum, key) => sum + (series.get(key)?.size ?? 0), 0);

  const describe = keys => {
    const count = pointCount(keys);
    root.dataset.points = String(count);
    if (keys.length === 0) { status.textContent = text.textChoose; return; }
    if (count === 0) { status.textContent = text.textEmpty; return; }
    const last = keys.map(key => {
      const points = series.get(key);
      if (!points || points.size === 0) return null;
      let ts = -Infinity;
      for (const t of points.keys()) if (t > ts) ts = t;
      return `${key} ${points.get(ts)}`;
    }).filter(Boolean).join(', ');
    status.textContent = format(text.textPoints, count) + ' ' + format(text.textLatest, last);
  };

  // uPlot's names of months and weekdays (its tables start in January and on Sunday), in the page's language.
  const lang = document.documentElement.lang || undefined;
  const names = (option, style, date) => Array.from({ length: option === 'month' ? 12 : 7 },
    (_, i) => new Intl.DateTimeFormat(lang, { [option]: style, timeZone: 'UTC' }).format(date(i)));
  const month = i => Date.UTC(2021, i, 15);
  const weekday = i => Date.UTC(2021, 7, 1 + i); // 1 August 2021 was a Sunday.
  const dateNames = {
    MMMM: names('month', 'long', month), MMM: names('month', 'short', month),
    WWWW: names('weekday', 'long', weekday), WWW: names('weekday', 'short', weekday),
  };

  const draw = () => {
    const keys = chosenKeys();
    const data = columns(keys);
    describe(keys);
    if (plot) { plot.destroy(); plot = null; }
    if (keys.length === 0) return;
    const width = Math.max(200, plotBox.clientWidth || root.clientWidth || 800);
    const range = ranges[rangeSelect.value] ?? ranges.hour;
    const view = `${rangeSelect.value}/${range.interval === 0 ? 'NONE' : aggSelect.value}`;
    plot = new uPlot({
      width,
      height: 320,
      ms: 1,
      // The axis in the user's time zone (their setting, else the browser's).
      ...(document.documentElement.dataset.timeZone ? { tzDate: ts => uPlot.tzDate(new Date(ts), document.documentElement.dataset.timeZone) } : {}),
      // Month and day names, and the values' axis, in the user's language (console.js's numberFormat).
      fmtDate: template => uPlot.fmtDate(template, dateNames),
      axes: [{}, { values: (u, splits) => splits.map(v => v == null ? '' : numberFormat.format(v)) }],
      cursor: { drag: { x: true, y: false, setScale: true } },
      scales: { x: { time: true } },
      series: [
        {},
        ...keys.map((key, i) => ({
          label: key,
          stroke: colors[i % colors.length],
          width: 2,
          spanGaps: true,
          // Points are drawn while there are few of them, so that a single value is visible.
          points: { show: u => u.data[0].length <= 200, size: 7, fill: colors[i % colors.length] },
        })),
      ],
      hooks: {
        setScale: [(u, scale) => {
          if (scale !== 'x') return;
          const { min, max } = u.scales.x;
          zoomed = min > start + 1 || max < end - 1;
          root.dataset.zoomed = String(zoomed);
          resetButton.disabled = !zoomed;
        }],
        // What the canvas shows now: how many points, of which range and aggregation (tests and benchmarks wait on it).
        draw: [() => { root.dataset.drawn = String(pointCount(keys)); root.dataset.view = view; }],
      },
    }, data, plotBox);
    plot.setScale('x', { min: start, max: end });
  };

  // At most this many raw points of a key are drawn (a day of one-second data is 86,400).
  const rawLimit = 200000;

  // One key's raw points over [start, end], page after page; returns the server's message if a page is refused.
  async function loadRaw(key, ticket) {
    const points = series.get(key);
    let cursor = null;
    do {
      const query = new URLSearchParams({ key, startTs: String(start), endTs: String(end), limit: '10000', useStrictDataTypes: 'true' });
      if (cursor) query.set('cursor', cursor);
      const response = await fetch(`${text.pages}?${query}`, { headers: { Accept: 'application/json' } });
      if (ticket !== loading) return null;
      if (!response.ok) {
        const problem = await response.json().catch(() => null);
        return (problem && problem.detail) || text.textError;
      }
      const page = await response.json();
      for (const point of page.data) points.set(point.ts, numeric(point.value));
      cursor = page.hasNext ? page.nextCursor : null;
    } while (cursor && points.size < rawLimit);
    return null;
  }

  async function load() {
    const keys = chosenKeys();
    const range = ranges[rangeSelect.value] ?? ranges.hour;
    aggSelect.disabled = range.interval === 0;
    end = Date.now();
    start = end - range.span;
    zoomed = false;
    const ticket = ++loading;
    series = new Map(keys.map(key => [key, new Map()]));
    if (keys.length > 0) {
      status.textContent = text.textLoading;
      try {
        if (range.interval > 0 && aggSelect.value === 'NONE') {
          // Every point of a day or a week: the paged history of each key (10,000 points a page, each page starting
          // where the last ended), the keys side by side.
          const failed = await Promise.all(keys.map(key => loadRaw(key, ticket)));
          if (ticket !== loading) return;
          const problem = failed.find(f => f);
          if (problem) { status.textContent = problem; return; }
        } else {
          const query = new URLSearchParams({ keys: keys.join(','), startTs: String(start), endTs: String(end), useStrictDataTypes: 'true' });
          if (range.interval === 0) {
            query.set('agg', 'NONE');
            query.set('limit', '10000');
            query.set('orderBy', 'ASC');
          } else {
            query.set('agg', aggSelect.value);
            query.set('interval', String(range.interval));
            query.set('limit', '10000');
          }
          const response = await fetch(`${text.source}?${query}`, { headers: { Accept: 'application/json' } });
          if (ticket !== loading) return;
          if (!response.ok) {
            const problem = await response.json().catch(() => null);
            status.textContent = (problem && problem.detail) || text.textError;
            return;
          }
          const body = await response.json();
          for (const key of keys) {
            const points = series.get(key);
            for (const point of body[key] ?? []) points.set(point.ts, numeric(point.value));
          }
        }
      } catch {
        if (ticket === loading) status.textContent = text.textError;
        return;
      }
    }
    if (ticket === loading) draw();
  }

  // Live append: each new latest value of a charted key becomes a point; the window slides unless zoomed.
  document.addEventListener('taihu:latest', event => {
    let changed = false;
    const keys = chosenKeys();
    for (const point of event.detail) {
      if (!keysBox.querySelector(`input[value="${CSS.escape(point.key)}"]`)) {
        // A key the device has just started to send; the first numeric one is charted at once.
        const first = keys.length === 0 && numeric(point.value) !== null && point.key !== 'active';
        addKey(point.key, first);
        if (first) { load(); return; }
        continue;
      }
      const points = series.get(point.key);
      if (!keys.includes(point.key) || !points || point.ts < start) continue;
      const value = numeric(point.value);
      if (points.get(point.ts) !== value) { points.set(point.ts, value); changed = true; }
    }
    if (!changed || !plot) return;
    end = Math.max(end, Date.now());
    start = end - (ranges[rangeSelect.value] ?? ranges.hour).span;
    // Points that slid out of the window are dropped, so that a page left open for hours keeps a bounded heap.
    // Every point is looked at: insertion order is not time order (a live value can arrive while the history is
    // still being fetched, and devices may send old timestamps).
    for (const points of series.values()) {
      for (const ts of points.keys()) {
        if (ts < start) points.delete(ts);
      }
    }
    const visible = zoomed ? { min: plot.scales.x.min, max: plot.scales.x.max } : { min: start, max: end };
    plot.setData(columns(keys), false);
    // Setting the x scale again ranges y over what is visible, new points included.
    plot.setScale('x', visible);
    describe(keys);
  });

  rangeSelect.addEventListener('change', load);
  aggSelect.addEventListener('change', load);
  resetButton.addEventListener('click', () => { if (plot) plot.setScale('x', { min: start, max: end }); });
  for (const box of keysBox.querySelectorAll('input[type=checkbox]')) box.addEventListener('change', load);
  window.addEventListener('resize', () => { if (plot) plot.setSize({ width: Math.max(200, plotBox.clientWidth), height: 320 }); });
  load();
})();
