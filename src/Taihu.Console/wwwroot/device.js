// The device page's actions, sent to the management API with the session cookie (same origin): a shared attribute
// written (the platform pushes it to the device) and an RPC sent, with the reply or, for a persistent call, its
// state until it ends. The server's own message is shown when it refuses.
(() => {
  const problemOf = async (response, fallback) => {
    const problem = await response.json().catch(() => null);
    return (problem && (problem.detail || problem.message)) || fallback;
  };
  const format = (template, ...args) => template.replace(/\{(\d+)\}/g, (_, i) => String(args[Number(i)]));
  // A value typed as JSON (22, true, "text", {"a":1}) is sent as that; anything else as the text itself.
  const parseValue = text => { try { return JSON.parse(text); } catch { return text; } };
  const display = value => typeof value === 'string' ? value : JSON.stringify(value);

  const shared = document.getElementById('shared-form');
  if (shared) {
    const status = document.getElementById('shared-status');
    const table = document.getElementById('attributes-SHARED_SCOPE');
    shared.addEventListener('submit', async event => {
      event.preventDefault();
      const key = shared.elements.key.value.trim();
      const value = parseValue(shared.elements.value.value);
      status.textContent = '';
      try {
        const response = await fetch(shared.dataset.source, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
          body: JSON.stringify({ [key]: value }),
        });
        if (!response.ok) { status.textContent = await problemOf(response, shared.dataset.textError); return; }
      } catch {
        status.textContent = shared.dataset.textError;
        return;
      }
      let row = table.tBodies[0].querySelector(`tr[data-key="${CSS.escape(key)}"]`);
      if (!row) {
        row = document.createElement('tr');
        row.dataset.key = key;
        for (let i = 0; i < 3; i++) row.appendChild(document.createElement('td'));
        row.cells[0].textContent = key;
        row.cells[1].dataset.testid = 'attribute-SHARED_SCOPE-' + key;
        table.tBodies[0].appendChild(row);
        table.nextElementSibling?.classList.contains('taihu-live-status') && table.nextElementSibling.remove();
      }
      row.cells[1].dataset.value = display(value);
      row.cells[1].textContent = localValue(display(value));
      // In the user's time zone and language, as every time on the page (console.js).
      row.cells[2].textContent = localTime(Date.now());
      status.textContent = shared.dataset.textSaved;
    });
  }

  const rpc = document.getElementById('rpc-form');
  if (rpc) {
    const status = document.getElementById('rpc-status');
    const reply = document.getElementById('rpc-reply');
    const text = rpc.dataset;
    const ended = new Set(['SUCCESSFUL', 'TIMEOUT', 'EXPIRED', 'FAILED']);
    const stateName = status => text['status' + status.charAt(0) + status.slice(1).toLowerCase()] ?? status;
    const show = body => { reply.hidden = false; reply.textContent = typeof body === 'string' ? body : JSON.stringify(body, null, 2); };

    const follow = async id => {
      for (;;) {
        let call;
        try {
          const response = await fetch(text.persistent + encodeURIComponent(id), { headers: { Accept: 'application/json' } });
          if (!response.ok) { status.textContent = await problemOf(response, text.textError); return; }
          call = await response.json();
        } catch {
          status.textContent = text.textError;
          return;
        }
        status.textContent = format(text.textState, id, stateName(call.status));
        rpc.dataset.rpcStatus = call.status;
        if (call.response !== null && call.response !== undefined) show(call.response);
        if (ended.has(call.status)) return;
        await new Promise(resolve => setTimeout(resolve, 1000));
      }
    };

    rpc.addEventListener('submit', async event => {
      event.preventDefault();
      let params;
      try { params = JSON.parse(rpc.elements.params.value.trim() || '{}'); } catch { status.textContent = text.textBadJson; return; }
      const twoWay = rpc.elements.kind.value === 'twoway';
      const persistent = rpc.elements.persistent.checked;
      const body = { method: rpc.elements.method.value.trim(), params, timeout: Math.round(Number(rpc.elements.timeout.value || 10) * 1000), persistent };
      reply.hidden = true;
      delete rpc.dataset.rpcStatus;
      status.textContent = text.textSending;
      const submit = rpc.querySelector('button[type=submit]');
      submit.disabled = true;
      try {
        const response = await fetch(twoWay ? text.twoway : text.oneway, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
          body: JSON.stringify(body),
        });
        if (!response.ok) { status.textContent = await problemOf(response, text.textError); return; }
        const answer = await response.text();
        if (persistent) {
          const id = JSON.parse(answer).rpcId;
          status.textContent = format(text.textQueued, id, stateName('QUEUED'));
          submit.disabled = false;
          await follow(id);
        } else if (twoWay) {
          status.textContent = text.textReplied;
          try { show(JSON.parse(answer)); } catch { show(answer); }
        } else {
          status.textContent = text.textDelivered;
        }
      } catch {
        status.textContent = text.textError;
      } finally {
        submit.disabled = false;
      }
    });
  }
})();
