// Lift panel: live floor and state over server-sent events, one button per floor, log out.
(function () {
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const floor = document.getElementById('floor');
  const state = document.getElementById('state');
  const status = document.getElementById('status');
  const fault = document.getElementById('fault');
  const resetFault = document.getElementById('reset-fault'); // administrators only
  const buttons = document.querySelectorAll('.floor-button');

  function say(text, isError) {
    status.textContent = text;
    status.className = isError ? 'error' : '';
  }

  const describe = {
    idle: () => 'idle',
    moving: (lift) => 'moving' + (lift.target !== null ? ' to ' + nameOf(lift, lift.target) : ''),
    fault: () => 'out of service',
    offline: () => 'offline (no contact with the lift controller)',
  };

  function nameOf(lift, number) {
    const found = lift.floors.find((f) => f.number === number);
    return found ? found.name : String(number);
  }

  function show(lift) {
    floor.textContent = lift.floor_name !== null ? lift.floor_name : '–';
    state.textContent = (describe[lift.state] || describe.offline)(lift);
    fault.hidden = !lift.fault;
    fault.textContent = lift.fault || '';
    if (resetFault) resetFault.hidden = lift.state !== 'fault';
    buttons.forEach((b) => {
      b.disabled = lift.state !== 'idle' || Number(b.dataset.floor) === lift.floor;
    });
  }

  const events = new EventSource('/api/v1/lift/events');
  events.addEventListener('lift', (event) => show(JSON.parse(event.data)));
  events.onerror = () => say('Live updates interrupted; reconnecting…', true);
  events.onopen = () => say('');

  function newRequestId() {
    const bytes = new Uint8Array(8);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function post(path, body) {
    const response = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': token },
      body: JSON.stringify(body || {}),
    });
    return { response, body: await response.json().catch(() => ({})) };
  }

  buttons.forEach((button) => button.addEventListener('click', async () => {
    // one id per press: a retried request cannot move the lift twice
    const request = { floor: Number(button.dataset.floor), request_id: newRequestId() };
    let result;
    try {
      result = await post('/api/v1/lift/move', request);
    } catch (e) {
      result = await post('/api/v1/lift/move', request).catch(() => null);
    }
    if (!result) { say('No answer from the server; check the connection.', true); return; }
    const { response, body } = result;
    if (response.status === 401) { window.location.assign('/'); return; }
    say(response.ok ? 'Going to floor ' + button.textContent + '.' : (body.message || 'The lift refused.'), !response.ok);
  }));

  if (resetFault) {
    resetFault.addEventListener('click', async () => {
      const { response, body } = await post('/api/v1/admin/lift/reset');
      say(response.ok ? 'Fault cleared.' : (body.message || 'Could not clear the fault.'), !response.ok);
    });
  }

  document.getElementById('logout').addEventListener('click', async () => {
    await post('/api/v1/logout');
    window.location.assign('/');
  });
})();
