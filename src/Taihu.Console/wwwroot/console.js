// The console's small scripts. Pages are rendered on the server; live numbers are fetched here and written into
// the DOM, so high-rate data never goes through a Blazor circuit.

// Times: the server writes UTC; the browser shows them in the user's time zone (their setting, else the browser's
// own), in the page's language.
const timeZone = document.documentElement.dataset.timeZone || undefined;
const timeFormat = (() => {
  try {
    return new Intl.DateTimeFormat(document.documentElement.lang || undefined, { dateStyle: 'medium', timeStyle: 'medium', timeZone });
  } catch {
    return new Intl.DateTimeFormat(document.documentElement.lang || undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  }
})();
const localTime = ms => timeFormat.format(new Date(ms));
const localizeTimes = root => {
  for (const element of root.querySelectorAll('time[data-local]')) {
    const ms = Date.parse(element.getAttribute('datetime'));
    if (!Number.isNaN(ms)) element.textContent = localTime(ms);
  }
};
localizeTimes(document);

// Numbers: a value that is a plain number (telemetry and attributes arrive as text) is shown in the page's
// language (digit grouping, decimal mark); anything else is shown as it is.
const numberFormat = new Intl.NumberFormat(document.documentElement.lang || undefined, { maximumFractionDigits: 20 });
const localValue = text => /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text) ? numberFormat.format(Number(text)) : text;
const localizeValues = root => {
  for (const element of root.querySelectorAll('[data-value]')) element.textContent = localValue(element.dataset.value);
};
localizeValues(document);

// Copy buttons: data-copy names the element whose text is copied.
for (const button of document.querySelectorAll('button[data-copy]')) {
  button.addEventListener('click', async () => {
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const label = button.textContent;
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      button.textContent = '\u2713 ' + label;
      button.dataset.copied = 'clipboard';
    } catch {
      // No clipboard (an insecure origin): select the text so that Ctrl+C copies it.
      const range = document.createRange();
      range.selectNodeContents(source);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.dataset.copied = 'selection';
    }
    setTimeout(() => { button.textContent = label; }, 1500);
  });
}

// Latest values of a device, live: pushed by the server (GET /console/devices/{id}/stream) as they are stored.
const latest = document.getElementById('latest');
if (latest) {
  const status = document.getElementById('latest-status');
  const body = latest.tBodies[0];
  const time = localTime;
  const render = points => {
    for (const point of points) {
      let row = body.querySelector(`tr[data-key="${CSS.escape(point.key)}"]`);
      if (!row) {
        row = document.createElement('tr');
        row.dataset.key = point.key;
        for (let i = 0; i < 3; i++) row.appendChild(document.createElement('td'));
        row.cells[0].textContent = point.key;
        row.cells[1].dataset.testid = 'value-' + point.key;
        body.appendChild(row);
      }
      row.cells[1].dataset.value = point.value;
      row.cells[1].textContent = localValue(point.value);
      row.cells[2].textContent = time(point.ts);
    }
    status.textContent = points.length === 0 ? latest.dataset.empty : '';
    // The chart (chart.js) appends what is new.
    document.dispatchEvent(new CustomEvent('taihu:latest', { detail: points }));
  };
  // Server-sent events: the latest values first, then each batch the server stores, as it is stored. The browser
  // reconnects by itself after a network error; a refusal (the session ended) is asked for its reason, shown,
  // and the stream tried again a little later.
  const connect = () => {
    const events = new EventSource(latest.dataset.stream);
    events.onmessage = event => render(JSON.parse(event.data));
    events.onerror = async () => {
      if (events.readyState !== EventSource.CLOSED) {
        status.textContent = latest.dataset.error;
        return;
      }
      try {
        const response = await fetch(latest.dataset.source, { headers: { Accept: 'application/json' } });
        const problem = response.ok ? null : await response.json().catch(() => null);
        status.textContent = (problem && problem.detail) || latest.dataset.error;
      } catch {
        status.textContent = latest.dataset.error;
      }
      setTimeout(connect, 5000);
    };
  };
  connect();
}

// Live sections of a page rendered on the server (alarms): the page is fetched again every two seconds while
// visible, and each section whose markup changed is replaced with the new one. Nothing else on the page moves.
const liveSections = document.querySelectorAll('[data-live-section]');
if (liveSections.length > 0) {
  // Each render carries a new antiforgery token, and times and numbers here are shown in the user's form while the
  // server writes UTC and plain numbers: none is a change (the instant and the value are compared through their
  // attributes).
  const markup = element => element.innerHTML
    .replace(/<input[^>]*__RequestVerificationToken[^>]*>/g, '')
    .replace(/(<time[^>]*>)[^<]*(<\/time>)/g, '$1$2')
    .replace(/(<td[^>]*data-value[^>]*>)[^<]*(<\/td>)/g, '$1$2');
  const refresh = async () => {
    if (document.visibilityState === 'visible') {
      try {
        const response = await fetch(location.href, { headers: { Accept: 'text/html' } });
        if (response.ok && !response.redirected) {
          const fresh = new DOMParser().parseFromString(await response.text(), 'text/html');
          for (const section of liveSections) {
            const next = fresh.querySelector(`[data-live-section="${CSS.escape(section.dataset.liveSection)}"]`);
            if (next && markup(next) !== markup(section)) {
              section.innerHTML = next.innerHTML;
              localizeTimes(section);
              localizeValues(section);
            }
          }
        }
      } catch {
        // The next round tries again; the section keeps what it showed.
      }
    }
    setTimeout(refresh, 2000);
  };
  setTimeout(refresh, 2000);
}

// Home: the figures, polled every two seconds while visible. Totals marked data-rate are shown as their change
// per second since the previous poll.
const homeStats = document.getElementById('home-stats');
if (homeStats) {
  const status = document.getElementById('home-status');
  const number = new Intl.NumberFormat(document.documentElement.lang || undefined, { maximumFractionDigits: 1 });
  let previous = null;
  const poll = async () => {
    if (document.visibilityState === 'visible') {
      try {
        const response = await fetch(homeStats.dataset.source, { headers: { Accept: 'application/json' } });
        if (response.ok) {
          const stats = await response.json();
          const now = performance.now();
          for (const element of homeStats.querySelectorAll('[data-stat]')) {
            const value = stats[element.dataset.stat];
            if (value === undefined) continue;
            if (element.dataset.rate) {
              if (previous && now > previous.at) {
                const rate = Math.max(0, value - previous.stats[element.dataset.stat]) * 1000 / (now - previous.at);
                element.textContent = number.format(rate);
              }
              element.dataset.total = String(value);
            } else {
              element.textContent = number.format(value);
            }
          }
          previous = { at: now, stats };
          status.textContent = '';
        } else {
          const problem = await response.json().catch(() => null);
          status.textContent = (problem && problem.detail) || homeStats.dataset.error;
        }
      } catch {
        status.textContent = homeStats.dataset.error;
      }
    }
    setTimeout(poll, 2000);
  };
  poll();
}

// Forms that delete ask first: data-confirm holds the question.
for (const form of document.querySelectorAll('form[data-confirm]')) {
  form.addEventListener('submit', event => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}

// The integration form: only the chosen type's fields are shown (both are in the page, for browsers without scripts).
for (const select of document.querySelectorAll('select[data-integration-type]')) {
  const form = select.form;
  const show = () => {
    for (const fieldset of form.querySelectorAll('[data-for-type]')) fieldset.hidden = fieldset.dataset.forType !== select.value;
  };
  select.addEventListener('change', show);
  show();
}

// The menu button (a phone's width): opens and closes the navigation; Escape or following a link closes it.
const menuButton = document.querySelector('[data-testid=menu]');
if (menuButton) {
  const setOpen = open => {
    document.body.classList.toggle('taihu-menu-open', open);
    menuButton.setAttribute('aria-expanded', String(open));
  };
  menuButton.addEventListener('click', () => {
    const open = !document.body.classList.contains('taihu-menu-open');
    setOpen(open);
    if (open) document.querySelector('#taihu-nav a')?.focus();
  });
  document.addEventListener('keydown', event => {
    if (event.key === 'Escape' && document.body.classList.contains('taihu-menu-open')) { setOpen(false); menuButton.focus(); }
  });
}

// Search as you type: a search form marked data-live-search fetches its results page as the text changes (a short
// pause after the last key) and puts the results in place; the address follows, so the results can be shared.
for (const form of document.querySelectorAll('form[data-live-search]')) {
  const results = document.getElementById(form.dataset.liveSearch);
  const input = form.querySelector('input[type=search]');
  if (!results || !input) continue;
  let timer = 0;
  let inflight = null;
  const search = async () => {
    const url = new URL(form.action, location.href);
    for (const [name, value] of new FormData(form)) url.searchParams.set(name, value);
    inflight?.abort();
    const controller = new AbortController();
    inflight = controller;
    try {
      const response = await fetch(url, { headers: { Accept: 'text/html' }, signal: controller.signal });
      if (!response.ok || response.redirected) return;
      const fresh = new DOMParser().parseFromString(await response.text(), 'text/html').getElementById(results.id);
      if (!fresh || controller.signal.aborted) return;
      results.innerHTML = fresh.innerHTML;
      localizeTimes(results);
      history.replaceState(null, '', url.pathname + url.search);
      results.dataset.search = input.value;
    } catch {
      // Aborted by the next key, or the network: the form still submits the ordinary way.
    }
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(search, 150);
  });
}
